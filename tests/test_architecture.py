"""The shape of the house (ARCHITECTURE.md, README "Map of the repository"): the core's wings import one way.

Every import inside `image_classification` is read with `ast` (function-level imports included: a lazy import is
still a dependency, and so is a builder the data backends' registry names for importlib). A new circle or an import
that runs up the layers fails here; the arrows that already run up are listed in KNOWN_UPWARD as debt to remove
(issue 18), and the test also fails when one of them is gone, so the list only shrinks.
"""
from __future__ import annotations

import ast
import importlib.util
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGE = "image_classification"

# What each wing may import; preprocessing.py and runtime/ (process groups, reductions) are beneath every wing.
BASE = {"preprocessing", "runtime"}
ALLOWED = {
    "preprocessing": set(),
    "runtime": set(),
    "models": BASE,
    "data": BASE,
    "kernels": BASE,
    "inference": BASE | {"models", "data", "kernels"},
    "training": BASE | {"models", "data", "inference", "kernels"},
    "quantization": BASE | {"models", "data", "inference", "training"},
    "export": BASE | {"models", "inference", "quantization"},
    "serving": BASE | {"models", "data", "inference", "export"},
    "cli": BASE | {"models", "data", "inference", "training", "quantization", "export"},
    "benchmark": BASE | {"models", "data", "inference", "export"},
}

# Arrows that run up today, module -> module: the debt issue 18 removed, one per commit. Empty: any such arrow is new.
KNOWN_UPWARD: set[tuple[str, str]] = set()

# Circles today (issue 18 broke them, one per commit); a circle inside one of these is not new. Empty: any circle is.
KNOWN_CIRCLES: list[frozenset[str]] = []


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path, modules: set[str], source: str | None = None) -> set[str]:
    """The package's modules that `path` imports (a `from x import name` of a submodule counts as that module)."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8") if source is None else source)):
        targets = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            targets = [module] + [f"{module}.{alias.name}" for alias in node.names]
        for target in targets:
            while target and target not in modules:
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


def wing(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def declared_imports(modules: set[str]) -> dict[str, set[str]]:
    """The builders the data backends' registry names by string, which data.loader imports with importlib: the
    ast walk cannot read them, and they are dependencies as much as a lazy import is."""
    from image_classification.data.choices import BACKENDS

    data = f"{PACKAGE}.data"
    named = {importlib.util.resolve_name(builder.module, data) for builder in BACKENDS.values()}
    return {f"{data}.loader": {m for m in named if m in modules} - {f"{data}.loader"}}


def import_graph() -> dict[str, set[str]]:
    files = sorted((REPO / PACKAGE).rglob("*.py"))
    modules = {module_name(p) for p in files}
    graph = {module_name(p): imports_of(p, modules) for p in files}
    for source, targets in declared_imports(modules).items():
        graph[source] |= targets
    return graph


def upward_arrows(graph: dict[str, set[str]]) -> set[tuple[str, str]]:
    out = set()
    for source, targets in graph.items():
        for target in targets:
            a, b = wing(source), wing(target)
            if a and b and a != b and b not in ALLOWED.get(a, set()):
                out.add((source, target))
    return out


def test_every_wing_has_a_place_in_the_layers():
    wings = {wing(m) for m in import_graph() if wing(m)}
    assert wings <= set(ALLOWED), f"a new wing of the core needs its place in ALLOWED: {sorted(wings - set(ALLOWED))}"


def test_no_new_upward_import():
    found = upward_arrows(import_graph())
    new = sorted(found - KNOWN_UPWARD)
    assert not new, "imports that run up the layers (ARCHITECTURE.md): " + "; ".join(f"{a} -> {b}" for a, b in new)
    gone = sorted(KNOWN_UPWARD - found)
    assert not gone, "remove from KNOWN_UPWARD, the debt is paid: " + "; ".join(f"{a} -> {b}" for a, b in gone)


def circles(graph: dict[str, set[str]]) -> set[frozenset[str]]:
    """Groups of modules that import each other, directly or round a loop (Tarjan's strongly connected components)."""
    index, low, stack, on_stack, out = {}, {}, [], set(), set()

    def visit(node):
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in graph.get(node, ()):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = set()
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.add(member)
                if member == node:
                    break
            if len(group) > 1:
                out.add(frozenset(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return out


def test_no_new_import_circle():
    found = circles(import_graph())
    new = [sorted(c) for c in found if not any(c <= known for known in KNOWN_CIRCLES)]
    assert not new, f"modules that import each other: {new}"
    gone = [sorted(known) for known in KNOWN_CIRCLES if not any(len(c & known) > 1 for c in found)]
    assert not gone, f"remove from KNOWN_CIRCLES, the circle is broken: {gone}"


def test_the_checker_sees_planted_faults():
    """The walk must resolve relative and lazy imports, or the tests above would pass on anything."""
    modules = {"image_classification.training.trainer", "image_classification.models.registry",
               "image_classification.training", "image_classification.models.x"}
    fake = REPO / PACKAGE / "models" / "x.py"
    source = "def f():\n    from ..training import trainer\n    from . import registry\n"
    found = imports_of(fake, modules, source)
    assert {"image_classification.training.trainer", "image_classification.models.registry"} <= found
    assert ("image_classification.models.x", "image_classification.training.trainer") in upward_arrows(
        {"image_classification.models.x": found})
    assert circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == {frozenset("abc")}


def test_the_checker_sees_declared_builders(monkeypatch):
    """A backend's builder is imported by name; one outside the data wing is an upward import all the same."""
    from image_classification.data.choices import BACKENDS, Builder

    graph = import_graph()
    assert {f"{PACKAGE}.data.dali", f"{PACKAGE}.data.gpu_decode"} <= graph[f"{PACKAGE}.data.loader"]
    monkeypatch.setitem(BACKENDS, "planted", Builder("..training.trainer", "build"))
    assert (f"{PACKAGE}.data.loader", f"{PACKAGE}.training.trainer") in upward_arrows(import_graph())
