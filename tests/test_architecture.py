"""The import graph of protocol/ and node/ (read with ast, nothing imported): no cycle, no module importing
another module's `_private` name, no function-local import of a protocol/ or node/ module (the usual way to
dodge a cycle), and protocol/ never importing node/ (the protocol is sans-IO and knows no node)."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("protocol", "node")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for pkg in PACKAGES for p in sorted((ROOT / pkg).rglob("*.py"))}


class Import:
    """One `import` or `from … import` of a protocol/ or node/ module, with the names it takes."""

    def __init__(self, target: str, names: tuple[str, ...], line: int, local: bool) -> None:
        self.target, self.names, self.line, self.local = target, names, line, local


def resolve(module: str, path: Path, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    base = package[: len(package) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def imports(module: str, path: Path, known: dict[str, Path]) -> Iterator[Import]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    local_lines = {
        inner.lineno
        for fn in ast.walk(tree)
        if isinstance(fn, ast.FunctionDef | ast.AsyncFunctionDef)
        for inner in ast.walk(fn)
        if isinstance(inner, ast.Import | ast.ImportFrom)
    }
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] in PACKAGES:
                    yield Import(alias.name, (), node.lineno, node.lineno in local_lines)
        elif isinstance(node, ast.ImportFrom):
            target = resolve(module, path, node)
            if target.split(".")[0] not in PACKAGES:
                continue
            names = tuple(a.name for a in node.names)
            submodules = [n for n in names if f"{target}.{n}" in known]
            for n in submodules:  # `from node import store` imports the module node.store
                yield Import(f"{target}.{n}", (), node.lineno, node.lineno in local_lines)
            rest = tuple(n for n in names if n not in submodules)
            if rest or not submodules:
                yield Import(target, rest, node.lineno, node.lineno in local_lines)


def graph() -> dict[str, list[Import]]:
    known = modules()
    return {name: list(imports(name, path, known)) for name, path in known.items()}


def test_modules_are_found() -> None:
    names = modules()
    assert "protocol.state" in names and "node.run" in names, sorted(names)


def test_protocol_never_imports_node() -> None:
    bad = [f"{m}:{i.line} imports {i.target}" for m, imps in graph().items() if m.startswith("protocol")
           for i in imps if i.target.split(".")[0] == "node"]
    assert not bad, bad


def test_no_private_name_imported_across_modules() -> None:
    bad = [f"{m}:{i.line} imports {n} from {i.target}" for m, imps in graph().items() for i in imps
           for n in i.names if n.startswith("_") and not n.startswith("__") and i.target != m
           and n != "_"]  # `_`: gettext's name for "this text, translated" (node/web/i18n.py), public by convention
    assert not bad, "\n".join(bad)


def test_no_function_local_import_of_our_modules() -> None:
    bad = [f"{m}:{i.line} imports {i.target} inside a function" for m, imps in graph().items() for i in imps
           if i.local]
    assert not bad, "\n".join(bad)


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    """A cycle in `edges` as a list of modules (first == last), or None: depth-first with three colours."""
    state: dict[str, int] = {}  # 1 on the current path, 2 done
    path: list[str] = []

    def visit(n: str) -> list[str] | None:
        state[n] = 1
        path.append(n)
        for m in sorted(edges.get(n, ())):
            if state.get(m) == 1:
                return [*path[path.index(m):], m]
            if m not in state and (found := visit(m)) is not None:
                return found
        path.pop()
        state[n] = 2
        return None

    for n in sorted(edges):
        if n not in state and (found := visit(n)) is not None:
            return found
    return None


def edges_of(g: dict[str, list[Import]]) -> dict[str, set[str]]:
    known = set(g)
    edges: dict[str, set[str]] = {}
    for m, imps in g.items():
        for i in imps:
            # importing a package runs its __init__; a module's own package is not an edge back to itself
            if i.target in known and i.target != m and not m.startswith(i.target + "."):
                edges.setdefault(m, set()).add(i.target)
    return edges


def test_no_import_cycle() -> None:
    cycle = find_cycle(edges_of(graph()))
    assert cycle is None, " -> ".join(cycle or [])


def test_the_cycle_finder_finds_cycles() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b", "c"}, "b": {"c"}}) is None


#: Each part of the code and the parts it may import (README.md, "Development": the package map). A module of
#: node/ outside the packages below is a part of its own, named by its module.
VIEWS = {"node.views", "node.ledger_views", "node.governance_views", "node.exports"}
SHARED = {"node.config", "node.home", "node.listen", "node.logs", "node.runtime"}
MAY_IMPORT: dict[str, set[str]] = {
    "protocol": set(),
    "node.store": {"protocol"},
    "node.sync": {"node.store", "protocol"},
    **{v: VIEWS | {"node.store", "protocol"} for v in VIEWS},
    **{s: SHARED | {"protocol"} for s in SHARED},
    "node.http": VIEWS | {"node.store", "protocol"},
    "node.web": VIEWS | {"node.http", "node.store", "protocol"},
    "node.app": {"node.http", "node.web", "node.store", "protocol"},
    "node.nodefile": {"node.http", "protocol"},
    "node.run": SHARED | {"node.app", "node.http", "node.nodefile", "node.store", "node.sync", "protocol"},
    "node.cli": VIEWS | SHARED | {"node.http", "node.nodefile", "node.run", "node.store", "node.sync", "protocol"},
}


def part(module: str) -> str:
    top = module.split(".")
    if top[0] == "protocol":
        return "protocol"
    return ".".join(top[:2]) if len(top) > 1 else module


def test_each_part_imports_only_what_it_may() -> None:
    g = graph()
    bad = []
    for m, imps in g.items():
        if m == "node":
            continue
        assert part(m) in MAY_IMPORT, f"{m} is in no part of the package map (tests/test_architecture.py)"
        for i in imps:
            target = part(i.target)
            if target != part(m) and i.target != "node" and target not in MAY_IMPORT[part(m)]:
                bad.append(f"{m}:{i.line} imports {i.target}")
    assert not bad, "\n".join(bad)
