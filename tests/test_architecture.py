"""The layers hold: no import circle between files, and the core imports neither ``converters``
nor ``neuromorphic_targets``.

Every ``.py`` file of the three packages is parsed with :mod:`ast` (nothing is imported), and
every import statement counts, wherever it stands: at the top, inside a function (a lazy
import is still a dependency), or under ``if TYPE_CHECKING:``. An import of a submodule
(``from .network import Node``, ``import snnedge.plots``, ``from . import plots``) is an edge
to that file; an import of a name from a package (``from snnedge import simulate``,
``import converters``) is an edge to the package's ``__init__.py``.

The layers (``DESIGN.md``): the core is ``snnedge/`` outside ``snnedge/cli/``;
``converters`` and ``neuromorphic_targets`` sit on it; ``snnedge/cli/`` is the top and may
import everything. Nothing below ``snnedge/cli/`` imports it. ``snnedge/__main__.py``
(``python -m snnedge``) is an entry point that only hands over to ``snnedge.cli``: it counts
as the app layer.
"""
from __future__ import annotations

import ast
import re
from pathlib import Path


ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("snnedge", "converters", "neuromorphic_targets")
HIGHER = ("converters", "neuromorphic_targets")
APP = "snnedge.cli"
ENTRY_POINTS = {"snnedge.__main__"}  # `python -m snnedge`: nothing imports it

# Longest a source file of the three packages may be (issue 14: files with one job).
MAX_LINES = 600

# "converters.maxpool:SpikingMaxPool2d": a class named for importlib, an import all the same
IMPORT_SPEC = re.compile(r"^(%s)(\.\w+)*:\w+$" % "|".join(HIGHER))


def _modules() -> dict[str, Path]:
    """Dotted module name -> file, for every ``.py`` file of the three packages."""
    out = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join(parts)] = path
    return out


MODULES = _modules()


def _known(name: str) -> str | None:
    """The longest prefix of dotted ``name`` that is one of our modules (``None``: outside)."""
    parts = name.split(".")
    for k in range(len(parts), 0, -1):
        prefix = ".".join(parts[:k])
        if prefix in MODULES:
            return prefix
    return None


def _compiled(package: str, name: str) -> bool:
    """Whether ``package.name`` is a compiled extension (``_event_kernels``: built from its
    ``.c`` source beside it), a leaf outside the graph."""
    folder = ROOT.joinpath(*package.split("."))
    return f"{package}.{name}" not in MODULES and folder.is_dir() and \
        any(p.suffix != ".py" for p in folder.glob(f"{name}.*"))


def _imports(module: str) -> list[tuple[str, int]]:
    """(imported module, line) for every import in ``module``'s file that names one of ours."""
    path = MODULES[module]
    tree = ast.parse(path.read_text(), filename=str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [_known(alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                up = package.split(".")
                up = up[:len(up) - (node.level - 1)]
                base = ".".join(up + ([node.module] if node.module else []))
            else:
                base = node.module
            # `from pkg import sub` imports the file pkg/sub.py; `from pkg import name`, pkg
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES
                       else None if _compiled(base, a.name) else _known(base)
                       for a in node.names]
        else:
            continue
        out += [(t, node.lineno) for t in targets if t is not None and t != module]
    return out


def _import_specs(module: str) -> list[tuple[str, int]]:
    """String constants of ``module`` that name a higher package's class for importlib."""
    tree = ast.parse(MODULES[module].read_text())
    return [(node.value, node.lineno) for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and isinstance(node.value, str)
            and IMPORT_SPEC.match(node.value)]


GRAPH = {m: _imports(m) for m in MODULES}


def _circles() -> list[list[str]]:
    """One shortest circle through each strongly connected group of files (Tarjan), as
    ``[a, b, ..., a]``, over the import graph."""
    edges = {m: sorted({t for t, _ in GRAPH[m]}) for m in MODULES}
    index, low, stack, on_stack, groups = {}, {}, [], set(), []

    def visit(v):  # recursion depth is bounded by the number of files (about a hundred)
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in edges[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                groups.append(set(group))

    for v in MODULES:
        if v not in index:
            visit(v)
    return [_shortest_circle(min(g), edges, g) for g in groups]


def _shortest_circle(start: str, edges: dict, group: set) -> list[str]:
    """Breadth-first search from ``start`` back to itself inside ``group``."""
    parent, frontier = {start: None}, [start]
    while frontier:
        nxt = []
        for v in frontier:
            for w in edges[v]:
                if w == start:
                    path = [v]
                    while parent[path[-1]] is not None:
                        path.append(parent[path[-1]])
                    return path[::-1] + [start]
                if w in group and w not in parent:
                    parent[w] = v
                    nxt.append(w)
        frontier = nxt
    raise AssertionError(f"no circle through {start}")  # a strongly connected group has one


def _show(circle: list[str]) -> str:
    steps = []
    for a, b in zip(circle, circle[1:]):
        line = min(n for t, n in GRAPH[a] if t == b)
        steps.append(f"{MODULES[a].relative_to(ROOT)}:{line} imports {b}")
    return " -> ".join(steps)


def _layer_problems(module: str) -> list[str]:
    """Imports of ``module`` that point upwards: the core into converters or
    neuromorphic_targets, anything outside the app layer into ``snnedge.cli``."""
    where = MODULES[module].relative_to(ROOT)
    in_app = module == APP or module.startswith(APP + ".") or module in ENTRY_POINTS
    core = module.split(".")[0] == "snnedge" and not in_app
    out = []
    for target, line in GRAPH[module]:
        top = target.split(".")[0]
        if core and top in HIGHER:
            out.append(f"{where}:{line} (core) imports {target}")
        if not in_app and (target == APP or target.startswith(APP + ".")):
            out.append(f"{where}:{line} imports the app layer {target}")
    if core:
        out += [f"{where}:{line} (core) names {spec!r} for importlib" for spec, line in
                _import_specs(module)]
    return out


def test_the_parser_sees_every_kind_of_import():
    # the graph would be silently empty if paths or relative imports were resolved wrongly
    assert {"snnedge", "snnedge.network", "snnedge.cli", "converters", "neuromorphic_targets"} \
        <= set(MODULES)
    net = {t for t, _ in GRAPH["snnedge.network"]}
    assert "snnedge.layers" in net  # `from .layers import ...` at the top
    lazy = {t for t, _ in GRAPH["neuromorphic_targets.compare"]}  # inside Comparison.plot
    assert "neuromorphic_targets.plots" in lazy
    assert "snnedge" in {t for t, _ in GRAPH["converters.pipeline"]}  # `import snnedge`
    assert "converters" in {t for t, _ in GRAPH["snnedge.cli.commands"]}


def test_no_import_circle():
    circles = _circles()
    assert not circles, "import circles between files:\n" + "\n".join(map(_show, circles))


def test_core_imports_neither_converters_nor_neuromorphic_targets():
    problems = [p for m in MODULES for p in _layer_problems(m)]
    assert not problems, "imports across the layers:\n" + "\n".join(problems)


def test_no_source_file_is_longer_than_the_limit():
    sources = [f for pkg in PACKAGES for f in (ROOT / pkg).rglob("*") if f.suffix in (".py", ".c", ".h")]
    assert len(sources) > 20  # the walk found the packages
    long = {str(f.relative_to(ROOT)): n for f in sources
            if (n := len(f.read_text().splitlines())) > MAX_LINES}
    assert not long, f"files over {MAX_LINES} lines (split them by job): {long}"
