"""The import graph of ``src/slipstream`` runs one way: down the layers, with no cycle.

Every module is parsed with ``ast`` (nothing is imported), and every ``import`` counts: at
module level, inside functions (a deferred import is still a dependency) and under
``TYPE_CHECKING`` (a type from a higher layer ties the lower one to it just the same; a
lower layer that needs such a type should own it). The layer order is the one
``slipstream/__init__.py`` describes.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src"
PACKAGE = SRC / "slipstream"

# Gateway layers, lowest first. A unit may import its own unit and any unit of a lower layer;
# never one of a higher layer, nor another unit of its own layer.
GATEWAY = [
    {"slipstream", "errors", "cpu", "observability"},
    {"protocol"},
    {"catalog"},
    {"config"},
    {"store"},
    {"auth", "ledger"},
    {"upstream"},
    {"runners"},
    {"providers", "testing"},
    {"serving"},
    {"services", "diagnostics"},
    {"http"},
    {"cli"},
]
# The runner process: its stages, lowest first, on top of the gateway's two lowest layers.
ENGINE = ["engine.errors", "engine.core", "engine.prepare", "engine.deliver", "engine.runner"]
ENGINE_MAY_USE = GATEWAY[0] | GATEWAY[1]


def unit(module: str) -> str:
    """``slipstream.engine.core.jobs`` → ``engine.core``; ``slipstream.http.app`` → ``http``."""
    parts = module.split(".")[1:]
    if not parts:
        return "slipstream"
    if parts[0] == "engine" and len(parts) > 1:
        return ".".join(parts[:2])
    return parts[0]


def rank(u: str) -> tuple[str, int]:
    if u.startswith("engine."):
        return "engine", ENGINE.index(u)
    if u == "engine":
        return "engine", len(ENGINE)  # the package's own __init__
    return "gateway", next(i for i, layer in enumerate(GATEWAY) if u in layer)


def modules() -> Iterator[tuple[str, Path]]:
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(SRC).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        yield ".".join(parts), path


def imports(module: str, path: Path) -> Iterator[tuple[str, int]]:
    """Every slipstream module this one imports, wherever the import statement stands."""
    is_package = path.name == "__init__.py"
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "slipstream":
                    yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against this module's package
                base = module.split(".")
                base = base[: len(base) - node.level + (1 if is_package else 0)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] != "slipstream":
                continue
            yield target, node.lineno
            for alias in node.names:  # ``from slipstream.engine.core import jobs`` imports a module too
                candidate = f"{target}.{alias.name}"
                if (SRC / candidate.replace(".", "/")).with_suffix(".py").is_file():
                    yield candidate, node.lineno


def graph() -> dict[str, set[str]]:
    known = dict(modules())
    edges: dict[str, set[str]] = {m: set() for m in known}
    for module, path in known.items():
        for target, _ in imports(module, path):
            if target in known and target != module:
                edges[module].add(target)
    return edges


def test_every_unit_has_a_layer() -> None:
    for module, _ in modules():
        rank(unit(module))  # StopIteration names a package missing from GATEWAY


def test_no_import_runs_up_the_layers() -> None:
    wrong = []
    for module, path in modules():
        here = unit(module)
        side, level = rank(here)
        for target, line in imports(module, path):
            there = unit(target)
            if there == here:
                continue
            t_side, t_level = rank(there)
            if side == "engine":
                ok = (t_side == "engine" and t_level < level) or there in ENGINE_MAY_USE
            else:
                ok = t_side == "gateway" and t_level < level  # nothing of the gateway imports the runner
            if not ok:
                wrong.append(f"{path.relative_to(SRC)}:{line}: {module} ({here}) imports {target} ({there})")
    assert not wrong, "imports that run up the layers:\n" + "\n".join(wrong)


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one node (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(edges.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def test_no_import_cycle_between_packages_or_modules() -> None:
    edges = graph()
    packages: dict[str, set[str]] = {}
    for module, targets in edges.items():
        packages.setdefault(unit(module), set()).update(unit(t) for t in targets if unit(t) != unit(module))
    assert not _cycles(packages), f"package cycles: {_cycles(packages)}"
    assert not _cycles(edges), f"module cycles: {_cycles(edges)}"


def test_the_checker_sees_what_it_must() -> None:
    """The graph is not vacuous: known edges, a deferred import and a TYPE_CHECKING one are in it."""
    edges = graph()
    assert "slipstream.protocol.sse" in edges["slipstream.serving.chat"]
    assert "slipstream.http.app" in edges["slipstream.cli.serve"]  # imported inside a function
    assert "slipstream.services" in edges["slipstream.http.control_routes"]  # under TYPE_CHECKING
    assert "slipstream.engine.core.self_check" in edges["slipstream.engine.runner"]  # ``from pkg import mod``
    assert _cycles({"a": {"b"}, "b": {"a"}, "c": {"a"}}) == [["a", "b"]]
