"""The layering rule (docs/architecture.md), checked on the source.

Between packages: a package imports only from packages listed before it in ``ORDER``. Every
``import layerprof.x`` that runs counts, at module level or inside a function; only imports under
``TYPE_CHECKING`` are exempt. A package or top-level module missing from the table fails too, so a new
one has to be placed deliberately. Inside a package: no import cycle among its modules at runtime
(module-level imports, the ones that run when the package loads).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "layerprof"
DOC = Path(__file__).resolve().parents[1] / "docs" / "architecture.md"

# Bottom first. errors and version sit under everything; the faces sit on top; __init__ (the lazy
# facade), the two public-spelling shims and __main__ above them all.
ORDER: list[str] = [
    "errors",
    "version",
    "core",
    "formulas",
    "hardware",
    "roofline",
    "walk",
    "timing",
    "report",
    "distributed",
    "api",
    "analysis",
    "cli",
    "integrations",
    "models",
    "budgets",
    "pytest_plugin",
    "__main__",
    "__init__",
]
LAYERS: dict[str, int] = {name: layer for layer, name in enumerate(ORDER)}
# models/ holds the demo CNN and imports nothing from layerprof; the CLI's demo command uses it. It
# is listed above cli only so that the table keeps DESIGN.md's order; cli may import it.
ALLOWED_UPWARD: set[tuple[str, str]] = {("cli", "models")}


def _top(path: Path) -> str:
    """``formulas`` for layerprof/formulas/conv.py, ``errors`` for layerprof/errors.py."""
    return path.relative_to(SRC).parts[0].removesuffix(".py")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(["layerprof", *parts])


def _package(path: Path) -> list[str]:
    """The package a file's relative imports start from."""
    return ["layerprof", *path.relative_to(SRC).parts[:-1]]


def _imports(tree: ast.Module, path: Path, *, module_level_only: bool) -> list[tuple[int, str]]:
    """(line, dotted layerprof module or module.name) of every import that runs, TYPE_CHECKING excepted."""
    skipped = {
        id(inner)
        for node in ast.walk(tree)
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
        for inner in ast.walk(node)
    }
    if module_level_only:
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                skipped |= {id(inner) for inner in ast.walk(node)}
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = _package(path)[: len(_package(path)) - node.level + 1] if node.level else []
            module = ".".join([*base, node.module] if node.module else base)
            found += [(node.lineno, f"{module}.{alias.name}") for alias in node.names]
    return [(line, name) for line, name in found if name.split(".")[0] == "layerprof"]


def _target_top(dotted: str) -> str:
    parts = dotted.split(".")
    if len(parts) == 2:  # from layerprof import X: a package or module, else a name from __init__
        return parts[1] if parts[1] in LAYERS else "__init__"
    return parts[1]


SOURCES = sorted(SRC.rglob("*.py"))


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(SRC)))
def test_imports_go_down_the_layers(path: Path) -> None:
    own = _top(path)
    assert own in LAYERS, f"{own} has no layer in tests/test_layering.py"
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for lineno, dotted in _imports(tree, path, module_level_only=False):
        target = _target_top(dotted)
        if target == own or (own, target) in ALLOWED_UPWARD:
            continue
        assert LAYERS[target] < LAYERS[own], (
            f"{path.relative_to(SRC)}:{lineno} imports layerprof.{target} (layer {LAYERS[target]}) "
            f"from layer {LAYERS[own]}"
        )


def _module_graph() -> dict[str, set[str]]:
    """Module -> the layerprof modules it imports at module level (runtime edges only)."""
    modules = {_module_name(p): p for p in SOURCES}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        edges: set[str] = set()
        for _, dotted in _imports(ast.parse(path.read_text(encoding="utf-8")), path, module_level_only=True):
            # "from a.b import c" is module a.b.c when that is a module, else a name of a.b
            edges.add(dotted if dotted in modules else dotted.rsplit(".", 1)[0])
        graph[name] = {e for e in edges if e in modules and e != name}
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every elementary cycle found by a depth-first walk (one representative per back edge)."""
    found: list[list[str]] = []
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                found.append([*stack[stack.index(nxt) :], nxt])
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)
    return found


def _without_package_inits(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    # A submodule's import of its own package's __init__ is how Python loads it, not a dependency.
    return {n: {e for e in edges if not n.startswith(e + ".")} for n, edges in graph.items()}


def test_no_import_cycle_at_runtime() -> None:
    cycles = _cycles(_without_package_inits(_module_graph()))
    assert not cycles, " ; ".join(" -> ".join(c) for c in cycles)


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == [["a", "b", "c", "a"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_every_package_has_a_layer() -> None:
    tops = {_top(p) for p in SOURCES}
    assert tops <= set(LAYERS), sorted(tops - set(LAYERS))
    assert set(LAYERS) <= tops, sorted(set(LAYERS) - tops)


def test_the_top_level_keeps_six_modules_at_most() -> None:
    modules = sorted(p.name for p in SRC.glob("*.py"))
    assert len(modules) <= 6, modules


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(SRC)))
def test_no_source_file_is_over_450_lines(path: Path) -> None:
    lines = len(path.read_text(encoding="utf-8").splitlines())
    assert lines <= 450, f"{path.relative_to(SRC)} has {lines} lines"


def test_the_architecture_doc_lists_the_same_order() -> None:
    # docs/architecture.md's table names each package, bottom first, as `name/`
    text = DOC.read_text(encoding="utf-8")
    packages = [name for name in ORDER if (SRC / name).is_dir()]
    positions = [text.find(f"`{name}/`") for name in packages]
    assert all(p >= 0 for p in positions), dict(zip(packages, positions, strict=True))
    assert positions == sorted(positions), "docs/architecture.md lists the packages in another order"


def test_the_package_exports_every_public_name_lazily() -> None:
    import layerprof

    assert set(layerprof.__all__) == {*layerprof._EXPORTS, "__version__"}
    for name in layerprof.__all__:
        assert getattr(layerprof, name) is not None, name


def test_no_public_name_is_shadowed_by_a_submodule() -> None:
    # Importing layerprof/x (a module or package) sets the attribute layerprof.x to it, which would
    # hide a public function of the same name served by the lazy __getattr__.
    import layerprof

    assert not set(layerprof.__all__) & {_top(p) for p in SOURCES}


def test_the_public_spellings_keep_working() -> None:
    import layerprof.analysis.budgets
    import layerprof.budgets
    import layerprof.integrations.pytest_plugin
    import layerprof.pytest_plugin

    assert layerprof.budgets.assert_within is layerprof.analysis.budgets.assert_within
    assert layerprof.pytest_plugin.layerprof_audit is layerprof.integrations.pytest_plugin.layerprof_audit
