"""docs/ stays true: the contract lists every public name, row field and error, and the README links it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import layerprof
from layerprof import errors
from layerprof.core.records import ROW_FIELDS, LayerRow

ROOT = Path(__file__).resolve().parents[1]
DESIGN = (ROOT / "docs" / "design.md").read_text(encoding="utf-8")
README = (ROOT / "README.md").read_text(encoding="utf-8")


@pytest.mark.parametrize("name", sorted(set(layerprof.__all__) - {"__version__"}))
def test_every_public_name_is_in_the_contract(name: str) -> None:
    assert re.search(rf"\b{re.escape(name)}\b", DESIGN), f"docs/design.md does not mention {name}"


@pytest.mark.parametrize("field", ROW_FIELDS)
def test_every_row_field_is_in_the_rows_table(field: str) -> None:
    assert re.search(rf"^\| [^|]*`{field}`", DESIGN, re.M), f"docs/design.md's rows table lacks {field}"


def test_the_rows_table_names_no_field_that_does_not_exist() -> None:
    section = DESIGN.split("## Rows", 1)[1].split("\n\n", 2)[1]
    named = set(re.findall(r"`(\w+)`", "\n".join(ln.split("|")[1] for ln in section.splitlines()[2:])))
    row = LayerRow("x", "X")
    assert {n for n in named if not hasattr(row, n)} == set()


@pytest.mark.parametrize(
    "error", sorted(n for n, v in vars(errors).items() if isinstance(v, type) and issubclass(v, Exception))
)
def test_every_error_is_in_the_contract(error: str) -> None:
    assert f"`{error}`" in DESIGN


@pytest.mark.parametrize("doc", ["docs/design.md", "docs/architecture.md"])
def test_the_readme_links_the_docs(doc: str) -> None:
    assert f"]({doc})" in README
    assert (ROOT / doc).is_file()
