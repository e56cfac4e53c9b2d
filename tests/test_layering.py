"""DESIGN.md's layering rule, checked on the source: each module imports only from layers below it.

Every ``import layerprof.x`` (at module level or inside a function, except under ``TYPE_CHECKING``)
must point to a lower layer than the importing module. A module missing from the table fails too,
so a new file has to be placed deliberately.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "layerprof"

# DESIGN.md's layers, refined: a module may import only from a strictly lower line. Two
# deviations from the suggested table, both deliberate: render/export/plot sit below the profiler,
# because Report (which the profiler returns) offers them as methods (report.table(),
# report.to_json(), report.plot_roofline()); and the Report facade itself sits between them and the
# profiler. None of them walks a model.
ORDER: list[tuple[str, ...]] = [
    ("errors", "records", "version", "hooks"),  # results, exceptions, taking hooks off
    ("dtypes", "units"),  # dtype names, human units
    ("formulas", "devices", "inputs"),  # pure formulas, device data, input specs
    ("roofline", "totals", "whatif", "fast_meta", "twin"),  # roofline maths, pure row arithmetic
    ("verdicts", "collect", "measure"),  # verdicts per target; walking a model; measuring a device
    ("rollup", "timing", "backward_timing", "crosscheck", "device_table", "demonet", "plot"),
    ("render", "export"),  # a report as text and files
    ("report", "targets"),  # the Report facade; resolving target arguments
    ("assemble", "sinks"),  # building a report from rows; where watch() sends its reports
    ("distributed",),  # gathering ranks' samples to rank 0, timing DDP's all-reduce
    ("profiler", "training", "scaling"),  # analyze / profile / Profiler / watch
    ("budgets", "loader", "compare", "config", "html", "progress"),  # audits
    ("cli", "pytest_plugin", "integrations"),  # faces for users
    ("__main__", "__init__"),
]
LAYERS: dict[str, int] = {name: layer for layer, names in enumerate(ORDER) for name in names}


def _top(path: Path) -> str:
    """``formulas`` for layerprof/formulas/conv.py, ``report`` for layerprof/report.py."""
    return path.relative_to(SRC).parts[0].removesuffix(".py")


def _package(path: Path) -> list[str]:
    """The package a file's relative imports start from."""
    return ["layerprof", *path.relative_to(SRC).parts[:-1]]


def _imported(tree: ast.Module, path: Path) -> list[tuple[int, str]]:
    """(line, top-level layerprof module) of every import that runs, TYPE_CHECKING blocks excepted."""
    skipped = {
        id(inner)
        for node in ast.walk(tree)
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
        for inner in ast.walk(node)
    }
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            targets = [(alias.name, ()) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = _package(path)[: len(_package(path)) - node.level + 1] if node.level else []
            module = ".".join([*base, node.module] if node.module else base)
            targets = [(module, tuple(alias.name for alias in node.names))]
        else:
            continue
        for module, names in targets:
            parts = module.split(".")
            if parts[0] != "layerprof":
                continue
            if len(parts) > 1:
                found.append((node.lineno, parts[1]))
            else:  # from layerprof import x: a submodule, or a name defined in __init__
                found += [(node.lineno, name if name in LAYERS else "__init__") for name in names]
    return found


SOURCES = sorted(SRC.rglob("*.py"))


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(SRC)))
def test_imports_go_down_the_layers(path: Path) -> None:
    own = _top(path)
    assert own in LAYERS, f"{own} has no layer in tests/test_layering.py"
    for lineno, target in _imported(ast.parse(path.read_text(encoding="utf-8")), path):
        if target == own:
            continue  # the files of one package (formulas/, cli/) share its layer
        assert LAYERS[target] < LAYERS[own], (
            f"{path.relative_to(SRC)}:{lineno} imports layerprof.{target} (layer {LAYERS[target]}) "
            f"from layer {LAYERS[own]}"
        )


def test_every_module_has_a_layer() -> None:
    tops = {_top(p) for p in SOURCES}
    assert tops <= set(LAYERS), sorted(tops - set(LAYERS))


def test_the_package_exports_every_public_name_lazily() -> None:
    import layerprof

    assert set(layerprof.__all__) == {*layerprof._EXPORTS, "__version__"}
    for name in layerprof.__all__:
        assert getattr(layerprof, name) is not None, name


def test_no_public_name_is_shadowed_by_a_submodule() -> None:
    # Importing layerprof/x.py sets the attribute layerprof.x to the module, which would hide a
    # public function of the same name served by the lazy __getattr__.
    import layerprof

    assert not set(layerprof.__all__) & {_top(p) for p in SOURCES}
