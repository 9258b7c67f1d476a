"""The package's shape: imports flow one way between its folders, and the folders say what they hold.

    cli  ->  bench  ->  training  ->  generate, metrics, identity  ->  gan  ->  runs  ->  config  ->  data  ->  basics
             (the features: what a command does)              (the core: the GAN, its runs, its data)

The basics are the modules at dcgan_cli/'s top level (errors, fsutil, pixels,
images, progress, tfutil); config and resources sit just above data, whose rules they read. `ALLOWED` is the rule as a table
of package -> the packages it may import; `TO_SETTLE` lists, module by module,
the imports that still break it, so none can be added unseen.

Read with `ast`, so imports inside functions (which hide cycles at run time)
count as much as those at the top of a file.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "dcgan_cli"

BASICS = frozenset({"errors", "fsutil", "pixels", "images", "progress", "tfutil"})
SETTINGS = frozenset({"config", "resources"})  # the frozen config and what it costs; they read data's rules
CORE = frozenset({"gan", "runs", "data"})
FEATURES = frozenset({"bench", "generate", "metrics", "identity", "training"})

# package -> the packages its modules may import (its own always allowed). A top-level module is its own package.
ALLOWED: dict[str, frozenset[str]] = {
    "__main__": frozenset({"cli"}),  # `python -m dcgan_cli`
    "cli": frozenset({"studio"}) | FEATURES | CORE | SETTINGS | BASICS,
    # The studio (a Gradio app) is a front end beside cli: it calls the features the commands call.
    "studio": frozenset({"generate", "metrics", "identity"}) | CORE | SETTINGS | BASICS,
    "bench": frozenset({"training", "generate", "metrics", "identity"}) | CORE | SETTINGS | BASICS,  # it measures them
    # The loop draws its grids with generate.sampling and scores with metrics, as stylegan2-ada's does.
    "training": frozenset({"generate", "metrics"}) | CORE | SETTINGS | BASICS,
    # generate.sampling runs a trained generator; evaluating and auditing one go through it.
    "metrics": frozenset({"generate"}) | CORE | SETTINGS | BASICS,
    "identity": frozenset({"generate"}) | CORE | SETTINGS | BASICS,
    "generate": CORE | SETTINGS | BASICS,
    "gan": frozenset({"runs", "data"}) | SETTINGS | BASICS,  # the step's state lives in a run's checkpoints
    "runs": frozenset({"data"}) | SETTINGS | BASICS,
    "resources": frozenset({"config", "data"}) | BASICS,  # what a config costs in memory
    "config": frozenset({"data"}) | BASICS,  # it checks data directories with data's own rules
    "data": BASICS,
    **{basic: BASICS for basic in BASICS},
}

# Imports that break ALLOWED, each with the reason it is still there: none today. Add a line only with a reason
# and a plan to remove it; the test fails on a listed import that no longer exists.
TO_SETTLE: set[tuple[str, str]] = set()

MAX_TOP_LEVEL_MODULES = 12


def _module_name(path: Path, package: Path) -> str:
    parts = list(path.relative_to(package.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules(package: Path = PACKAGE) -> dict[str, Path]:
    return {_module_name(p, package): p for p in sorted(package.rglob("*.py"))}


def _imports(path: Path) -> list[ast.ImportFrom | ast.Import]:
    return [n for n in ast.walk(ast.parse(path.read_text(), str(path))) if isinstance(n, (ast.Import, ast.ImportFrom))]


def _absolute(name: str, path: Path, node: ast.ImportFrom) -> str:
    """The module an ImportFrom reads from, relative imports resolved."""
    if not node.level:
        return node.module or ""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
    return f"{base}.{node.module}" if node.module else base


def import_graph(package: Path = PACKAGE) -> dict[str, set[str]]:
    """module -> the package modules it imports, anywhere in its file."""
    modules = _modules(package)
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        targets: set[str] = set()
        for node in _imports(path):
            if isinstance(node, ast.Import):
                targets.update(a.name for a in node.names)
            else:
                base = _absolute(name, path, node)
                targets.add(base)
                targets.update(f"{base}.{a.name}" for a in node.names)  # `from pkg import module`
        # Keep the package's own modules. A module's own parent packages are left out: Python has
        # started them before the module runs, so reading their names is not a layering edge.
        parents = {name.rsplit(".", k)[0] for k in range(1, name.count(".") + 1)}
        graph[name] = {t for t in targets if t in modules and t != name and t not in parents}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle as [a, b, ..., a], or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def layer(module: str) -> str:
    """The package a module belongs to for ALLOWED: dcgan_cli.data.shards -> "data", dcgan_cli.config -> "config"."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def breaches(graph: dict[str, set[str]]) -> set[tuple[str, str]]:
    """Every (importer, imported) module pair that ALLOWED does not permit."""
    return {(m, t) for m, targets in graph.items() for t in targets
            if layer(m) and layer(t) != layer(m) and layer(t) not in ALLOWED.get(layer(m), frozenset())}


def test_the_reader_sees_every_kind_of_import_including_those_inside_functions(tmp_path):
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("from . import leaf\n")
    (pkg / "sub" / "leaf.py").write_text("import os\n")
    (pkg / "base.py").write_text("")
    (pkg / "other.py").write_text("")
    (pkg / "top.py").write_text("import pkg.base\n\ndef later():\n    from pkg.sub import leaf\n    from .other import x\n")
    graph = import_graph(pkg)
    assert graph == {"pkg": set(), "pkg.base": set(), "pkg.other": set(), "pkg.sub": {"pkg.sub.leaf"},
                     "pkg.sub.leaf": set(), "pkg.top": {"pkg.base", "pkg.sub", "pkg.sub.leaf", "pkg.other"}}


def test_the_checker_finds_a_cycle_when_there_is_one():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_package_imports_have_no_cycle():
    graph = import_graph()
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_every_module_belongs_to_a_package_of_the_table():
    unknown = sorted({layer(m) for m in import_graph() if layer(m)} - set(ALLOWED))
    assert unknown == [], f"{unknown}: add them to ALLOWED, at the layer they belong to"


def test_the_table_is_one_way():
    # cli on top, nothing imports it; then features, core, basics; data imports no other package.
    for package, allowed in ALLOWED.items():
        assert "cli" not in allowed or package == "__main__", package
    for lower in CORE | BASICS:
        assert not ALLOWED[lower] & FEATURES, lower
    for basic in BASICS:
        assert not ALLOWED[basic] & CORE, basic
    assert ALLOWED["data"] == BASICS
    def node(p):  # the basics are one layer: among them, the module graph's own acyclicity is the rule
        return "basics" if p in BASICS else p

    assert set().union(*ALLOWED.values()) <= set(ALLOWED)
    graph = {node(p): set() for p in ALLOWED}
    for package, allowed in ALLOWED.items():
        graph[node(package)] |= {node(a) for a in allowed} - {node(package)}
    assert find_cycle(graph) is None, "ALLOWED lets two packages import each other"


def test_imports_flow_one_way_between_the_packages():
    found = breaches(import_graph())
    new = sorted(found - TO_SETTLE)
    assert new == [], ("imports against the layering (cli -> features -> gan/runs/data -> basics): "
                       + "; ".join(f"{a} -> {b}" for a, b in new))
    settled = sorted(TO_SETTLE - found)
    assert settled == [], f"{settled} no longer break the layering: delete them from TO_SETTLE"


def _private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def test_no_module_uses_another_modules_private_names():
    modules = _modules()
    found = []
    for name, path in modules.items():
        bound = {}  # local name -> the package module it is bound to
        for node in _imports(path):
            if isinstance(node, ast.Import):
                bound.update({a.asname: a.name for a in node.names if a.asname and a.name in modules})
                continue
            source = _absolute(name, path, node)
            if source in modules:
                found += [f"{name}: {a.name} from {source}" for a in node.names if _private(a.name)]
                bound.update({a.asname or a.name: f"{source}.{a.name}" for a in node.names
                              if f"{source}.{a.name}" in modules})
        for node in ast.walk(ast.parse(path.read_text())):  # `shards._problem` after `from dcgan_cli.data import shards`
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and _private(node.attr) \
                    and bound.get(node.value.id, name) != name:
                found.append(f"{name}: {node.value.id}.{node.attr}")
    assert found == [], "make these public (and documented) in their owner, or move them there: " + "; ".join(found)


def test_the_top_level_holds_at_most_twelve_modules_and_each_folder_says_what_it_holds():
    top = sorted(p.stem for p in PACKAGE.glob("*.py"))  # __init__ and __main__ included
    assert len(top) <= MAX_TOP_LEVEL_MODULES, f"{len(top)} modules at dcgan_cli/'s top level: {top}"
    for init in sorted(PACKAGE.rglob("__init__.py")):
        if init.parent == PACKAGE:
            continue
        doc = ast.get_docstring(ast.parse(init.read_text())) or ""
        held = sorted(p.stem if p.is_file() else p.name for p in init.parent.iterdir()
                      if (p.suffix == ".py" and p.stem != "__init__") or (p / "__init__.py").exists())
        unnamed = [m for m in held if m not in doc]
        assert doc and unnamed == [], f"{init.relative_to(PACKAGE.parent)}'s docstring should name {unnamed}"
