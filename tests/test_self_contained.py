"""The repository stands on its own: a clone with nothing beside it has everything its code and tests read.

Two checks over tests/, scripts/, node/, protocol/ and .ci/: no text names a path outside the repository
(a sibling folder, a machine's own directories, a home directory), and every file path the Python code
builds from its own location (`Path(__file__)…/ "name"`, or a module constant made that way) lies inside
the repository and is a file of it (tracked by git, so a clone has it).
"""

from __future__ import annotations

import ast
import fnmatch
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCANNED = ("tests", "scripts", "node", "protocol", ".ci")
NOT_SOURCE = {"__pycache__", ".venv", ".mypy_cache", ".pytest_cache", ".ruff_cache", "node_modules"}

# Written so that this file does not match itself: `[k]`, `[.]` and `[/]` stand for the plain characters.
OUTSIDE = re.compile(
    r"[.][.][/]shared\b"  # the sibling folder the project once read
    r"|(?<![\w.-])/wor[k]/"  # the machine it was first written on
    r"|(?<![\w.-])/home/[a-z_][\w.-]*/|(?<![\w.-])/Users/\w+/"  # someone's home
    r"|\b(?:ROOT|REPO)\.parent\b"  # a constant for the repository's root, then out of it
    r"|\$\{?(?:ROOT|REPO)\}?/[.][.](?![\w.])"  # the same in shell
)


def source_files() -> Iterator[Path]:
    for top in SCANNED:
        for path in sorted((ROOT / top).rglob("*")):
            if path.is_file() and not NOT_SOURCE.intersection(path.relative_to(ROOT).parts):
                yield path


def outside_references(text: str) -> list[tuple[int, str]]:
    """(line number, line) of each line naming a path outside the repository."""
    return [(n, line.strip()) for n, line in enumerate(text.splitlines(), 1) if OUTSIDE.search(line)]


def test_no_file_names_a_path_outside_the_repository() -> None:
    found = []
    for path in source_files():
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue  # binary: names no path
        found += [f"{path.relative_to(ROOT)}:{n}: {line}" for n, line in outside_references(text)]
    assert not found, "paths outside the repository:\n" + "\n".join(found)


def test_the_scan_knows_an_outside_path_when_it_sees_one() -> None:
    # pieces joined here, so that this file itself names no such path
    up, work, repo, home, sib = "..", "/wo" + "rk/", "REPO" + ".", "/ho" + "me/", "sha" + "red"
    bad = [
        f'VF = Path(__file__).parents[3] / "{sib}"  # {up}/{sib}/valueflows',
        f"PI_CHECK=${{PI_CHECK:-$ROOT/{up}/{sib}/pi-emu/pi-check.sh}}",
        f"cp {work}shared/netlab/lab.sh .",
        f"LAB_SH = {repo}parent / 'netlab' / 'lab.sh'",
        f"key = open('{home}alice/.ssh/id_ed25519')",
        f'here=$(cd "$ROOT/{up}/{up}" && pwd)',
    ]
    good = [
        'LAB_SH = REPO / "scripts" / "lab.sh"',
        'ROOT=$(cd "$(dirname "$0")/.." && pwd)',
        '"@vocab": "https://w3id.org/valueflows/ont/vf#"',
        "mkdir -p /opt/pi/project /root/.cache/pip",
        "the dashboard's shared helpers",
        "GET /api/v1/../../etc/passwd answers 404",
    ]
    assert [n for n, _ in outside_references("\n".join(bad))] == list(range(1, len(bad) + 1))
    assert outside_references("\n".join(good)) == []


# ---- the files the code builds paths to -----------------------------------------------------------------------


def built_paths(source: str, file: Path) -> Iterator[tuple[int, Path]]:
    """Each path `source` (the text of `file`) builds from `__file__` with constant names: (line, path).

    Follows `Path(__file__)`, `.resolve()`, `.absolute()`, `.parent`, `.parents[N]`, `/ "name"` and module-level
    names bound to such a path; anything else (tmp_path, the environment) is not a path of the repository."""
    tree = ast.parse(source)
    names: dict[str, Path] = {}

    def evaluate(node: ast.expr) -> Path | None:
        match node:
            case ast.Call(func=ast.Name(id="Path"), args=[ast.Name(id="__file__")]):
                return file
            case ast.Call(func=ast.Attribute(value=inner, attr="resolve" | "absolute"), args=[]):
                return evaluate(inner)
            case ast.Attribute(value=inner, attr="parent"):
                base = evaluate(inner)
                return base.parent if base else None
            case ast.Subscript(value=ast.Attribute(value=inner, attr="parents"), slice=ast.Constant(value=int() as n)):
                base = evaluate(inner)
                return base.parents[n] if base and n < len(base.parents) else None
            case ast.BinOp(left=left, op=ast.Div(), right=ast.Constant(value=str() as name)):
                base = evaluate(left)
                return base / name if base else None
            case ast.Name(id=name):
                return names.get(name)
        return None

    for statement in tree.body:
        if isinstance(statement, ast.Assign | ast.AnnAssign) and statement.value is not None:
            targets = statement.targets if isinstance(statement, ast.Assign) else [statement.target]
            value = evaluate(statement.value)
            for target in targets:
                if isinstance(target, ast.Name) and value is not None:
                    names[target.id] = value
    # only the whole expression: `ROOT / "data" / "x.json"`, not also its prefix `ROOT / "data"`
    prefixes = {id(node.left) for node in ast.walk(tree) if isinstance(node, ast.BinOp)}
    for node in ast.walk(tree):
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div) and id(node) not in prefixes:
            path = evaluate(node)
            if path is not None:
                yield node.lineno, Path(str(path))


def tracked_files() -> set[Path] | None:
    """The files git tracks (what a clone has), or None outside a git checkout."""
    try:
        r = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, timeout=60)
    except FileNotFoundError:
        return None
    if r.returncode != 0:
        return None
    return {ROOT / name for name in r.stdout.decode().split("\0") if name}


def ignored(path: Path) -> bool:
    """Whether .gitignore names the path (or a folder of it): what the code writes, such as test-artifacts/."""
    patterns = [line.strip().rstrip("/") for line in (ROOT / ".gitignore").read_text().splitlines()]
    parts = path.relative_to(ROOT).parts
    return any(fnmatch.fnmatch(part, pattern) for pattern in patterns if pattern for part in parts)


def test_every_file_the_code_builds_a_path_to_is_in_the_repository() -> None:
    tracked = tracked_files()
    problems, seen = [], 0
    for path in source_files():
        if path.suffix != ".py":
            continue
        for line, target in built_paths(path.read_text(encoding="utf-8"), path):
            seen += 1
            where = f"{path.relative_to(ROOT)}:{line}: {target}"
            if not target.is_relative_to(ROOT):
                problems.append(f"{where} is outside the repository")
            elif ignored(target):
                continue  # an output, made when the code runs
            elif not target.exists():
                problems.append(f"{where} does not exist")
            elif tracked is not None and target.is_file() and target not in tracked:
                problems.append(f"{where} is not tracked by git (a clone would not have it)")
    assert not problems, "\n".join(problems)
    assert seen >= 10, f"only {seen} paths found: the resolver no longer sees how the tests name their files"


def test_the_resolver_follows_the_ways_the_tests_name_files() -> None:
    file = Path("/r/tests/node/test_x.py")
    source = """
ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "tests" / "data"
VF = Path(__file__).resolve().parents[3] / "sibling" / "all_vf.TTL"
def test(tmp_path):
    (Path(__file__).parent / "vectors" / "v.json").read_text()
    (DATA / "valueflows" / "all_vf.TTL").read_text()
    (tmp_path / "home").mkdir()
"""
    assert sorted(str(p) for _, p in built_paths(source, file)) == [
        "/r/tests/data",
        "/r/tests/data/valueflows/all_vf.TTL",
        "/r/tests/node/vectors/v.json",
        "/sibling/all_vf.TTL",
    ]


def test_the_data_folder_says_where_each_file_comes_from() -> None:
    readme = (ROOT / "tests" / "data" / "README.md").read_text()
    for path in (ROOT / "tests" / "data").rglob("*"):
        if path.is_file() and path.name != "README.md":
            assert f"`{path.relative_to(ROOT / 'tests' / 'data')}`" in readme, f"tests/data/README.md: {path.name}"
