"""``python -m layerprof``: the same as the ``layerprof`` command."""

from __future__ import annotations

import sys

from layerprof.cli import main

if __name__ == "__main__":
    sys.exit(main())
