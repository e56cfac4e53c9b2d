"""Integrations with training frameworks; each module imports its framework, which stays optional.

* :mod:`layerprof.integrations.lightning`: ``LayerProfCallback`` for Lightning (``pip install lightning``).
"""

from __future__ import annotations
