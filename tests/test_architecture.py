"""The import graph of protocol/ and node/ (read with ast, nothing imported): no cycle, no module importing
another module's `_private` name, no function-local import of a protocol/ or node/ module (the usual way to
dodge a cycle), and protocol/ never importing node/ (the protocol is sans-IO and knows no node).

Imports by name (`importlib.import_module`) hide an edge from this graph, so they are allowed in two places only:
`tally`'s command dispatch (node/cli/parsing.py `CommandRef`: node/cli/parser.py names each command's module
under node/cli/ and node/cli/main.py loads only the one it runs, so `tally --help` and `tally id` load no store,
client or node; every reference is checked below) and reading a snapshot back (node/store/snapshots.py, which
names only protocol/ modules)."""

from __future__ import annotations

import argparse
import ast
import inspect
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

from node.cli.parser import build_parser

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


IMPORTS_BY_NAME = {"node.cli.parsing", "node.store.snapshots"}


def test_imports_by_name_only_where_the_rule_allows() -> None:
    bad = []
    for name, path in modules().items():
        for call in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if (isinstance(call, ast.Call) and name not in IMPORTS_BY_NAME
                    and ((isinstance(call.func, ast.Attribute) and call.func.attr in ("import_module", "__import__"))
                         or (isinstance(call.func, ast.Name) and call.func.id in ("import_module", "__import__")))):
                bad.append(f"{name}:{call.lineno}")
    assert not bad, bad


def parsers(parser: argparse.ArgumentParser) -> Iterator[argparse.ArgumentParser]:
    yield parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                yield from parsers(sub)


def test_every_command_reference_resolves() -> None:
    refs = {p.get_default("func") for p in parsers(build_parser()) if p.get_default("func") is not None}
    assert len(refs) > 40, refs
    for ref in refs:
        assert f"node.cli.{ref.module}" in modules(), ref
        assert inspect.iscoroutinefunction(ref.load()), ref


def test_the_parser_loads_no_command_module() -> None:
    """What `tally --help` and `tally id` import: no store, HTTP client or server, sync, dashboard or mDNS."""
    code = ("import sys; import node.cli.main, node.cli.identity; node.cli.main.build_parser();"
            " print('\\n'.join(sorted(sys.modules)))")
    loaded = set(subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True,
                                timeout=120).stdout.split())
    heavy = {"aiohttp", "aiosqlite", "zeroconf", "segno", "babel", "node.store.store", "node.http.client",
             "node.run", "node.app", "node.cli.context", "node.cli.commands"}
    assert "node.cli.parser" in loaded and not heavy & loaded, sorted(heavy & loaded)
