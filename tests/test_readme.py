"""README.md against the code: its CLI reference against the real parser, its config reference
against node/config.py, its examples against the parser, and its links against the headings.

Every failure says what to add to README.md or remove from it (or what the code lacks).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import io
import re
import shlex
from collections.abc import Iterator
from pathlib import Path

import pytest

from node import config as node_config
from node.cli.parser import build_parser

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")
SPEC = (ROOT / "SPEC.md").read_text(encoding="utf-8")

#: The options every command has, which the reference states once instead of on every row.
COMMON_OPTIONS = frozenset({"-h", "--help", "--home"})
#: The two commands README.md opens with; .ci/run runs the second one verbatim.
RUN_COMMAND = (
    "python3 -m venv .venv && .venv/bin/pip install -q . && .venv/bin/tally init && .venv/bin/tally run"
)
TEST_COMMAND = "python3 -m venv .venv && .venv/bin/pip install -q -e '.[test]' && .venv/bin/python -m pytest -q"


# ---- the parser ----------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Command:
    path: str  # "ledger create"
    parser: argparse.ArgumentParser
    group: bool  # has subcommands of its own (`tally ledger`)

    def options(self) -> list[argparse.Action]:
        return [a for a in self.parser._actions
                if a.option_strings and not set(a.option_strings) <= COMMON_OPTIONS]

    def positionals(self) -> list[argparse.Action]:
        return [a for a in self.parser._actions
                if not a.option_strings and not isinstance(a, argparse._SubParsersAction)]


def _walk(parser: argparse.ArgumentParser, prefix: tuple[str, ...] = ()) -> Iterator[Command]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                path = (*prefix, name)
                group = any(isinstance(a, argparse._SubParsersAction) for a in sub._actions)
                yield Command(" ".join(path), sub, group)
                yield from _walk(sub, path)


PARSER = build_parser()
COMMANDS = {c.path: c for c in _walk(PARSER)}
LEAVES = sorted(path for path, c in COMMANDS.items() if not c.group)


def _usage(command: Command) -> str:
    """The usage line `--help` prints, without `[-h] [--home DIR]`, for failure messages."""
    text = " ".join(command.parser.format_usage().split())
    return text.removeprefix("usage: ").replace(" [-h]", "").replace(" [--home DIR]", "")


# ---- the README ----------------------------------------------------------------------------------


def _section(heading: str) -> str:
    """From `heading` (a whole line) to the next heading of the same or a higher level (a `#` line in a
    fenced code block, a TOML comment say, is no heading)."""
    level = len(heading) - len(heading.lstrip("#"))
    lines = README.splitlines(keepends=True)
    assert heading + "\n" in lines, f"README.md has no heading {heading!r}: add it"
    start = lines.index(heading + "\n")
    fenced = False
    for end in range(start + 1, len(lines)):
        line = lines[end]
        if line.startswith("```"):
            fenced = not fenced
        elif not fenced and re.match(rf"#{{1,{level}}} ", line):
            return "".join(lines[start:end])
    return "".join(lines[start:])


CLI_REFERENCE = _section("## CLI reference")


@dataclasses.dataclass(frozen=True)
class Row:
    usage: str  # the first cell: "tally ledger create NAME [--rules FILE] [--public]"
    path: str  # "ledger create"
    line: str


def _cells(line: str) -> list[str]:
    return [c.strip().replace("\\|", "|") for c in re.split(r"(?<!\\)\|", line.strip())[1:-1]]


def _path(words: list[str]) -> str:
    """The command words of a usage (`ledger create`), before its metavars and options."""
    path = []
    for word in words:
        if not re.fullmatch(r"[a-z][a-z0-9-]*", word):
            break
        path.append(word)
    return " ".join(path)


def _rows(text: str) -> list[Row]:
    """Table rows whose first cell is a `tally …` usage."""
    rows = []
    for line in text.splitlines():
        if not line.startswith("| `tally "):
            continue
        usage = _cells(line)[0].strip("`").strip()
        rows.append(Row(usage, _path(usage.split()[1:]), line))
    return rows


REFERENCE_ROWS = _rows(CLI_REFERENCE)


def _has_token(text: str, token: str) -> bool:
    return re.search(rf"(?<![\w-]){re.escape(token)}(?![\w-])", text) is not None


def _options_in(text: str) -> set[str]:
    return set(re.findall(r"(?<![\w-])(--?[a-zA-Z][\w-]*)", text))


def _known_options(command: Command) -> set[str]:
    return {s for a in command.parser._actions for s in a.option_strings} | COMMON_OPTIONS


# ---- the opening ---------------------------------------------------------------------------------


def test_the_readme_opens_with_the_two_commands() -> None:
    blocks = re.findall(r"^    (\S.*)$", README, flags=re.M)
    assert blocks[:2] == [RUN_COMMAND, TEST_COMMAND], (
        "README.md must open with the two commands, exactly: first `" + RUN_COMMAND + "` (set up and run a"
        " node), then `" + TEST_COMMAND + "` (set up and pass the tests; .ci/run runs it verbatim)"
    )
    assert README.index(RUN_COMMAND) < README.index(TEST_COMMAND) < README.index("\n## "), (
        "the two commands come before the first section"
    )


# ---- the CLI reference ---------------------------------------------------------------------------


def test_the_reference_has_a_row_for_every_command() -> None:
    documented = {row.path for row in REFERENCE_ROWS}
    missing = [path for path in LEAVES if path not in documented]
    assert not missing, "README.md's CLI reference lacks these commands; add a row for each:\n" + "\n".join(
        f"  | `{_usage(COMMANDS[path])}` | {COMMANDS[path].parser.description} |" for path in missing
    )


@pytest.mark.parametrize("path", LEAVES)
def test_the_reference_row_gives_every_option(path: str) -> None:
    command = COMMANDS[path]
    rows = [row for row in REFERENCE_ROWS if row.path == path]
    if not rows:
        pytest.skip(f"no row for `tally {path}` (test_the_reference_has_a_row_for_every_command says what to add)")
    usage = " ".join(row.usage for row in rows)
    problems = []
    for action in command.options():
        for option in action.option_strings:
            if not _has_token(usage, option):
                problems.append(f"add `{option}` to the usage of `tally {path}`")
        takes_value = action.nargs != 0
        if takes_value and isinstance(action.metavar, str) and not _has_token(usage, action.metavar):
            problems.append(f"write `{action.option_strings[-1]} {action.metavar}` (its --help metavar)"
                            f" in the usage of `tally {path}`")
    for action in command.positionals():
        name = action.metavar if isinstance(action.metavar, str) else action.dest.upper()
        if not _has_token(usage, name):
            problems.append(f"add the argument `{name}` to the usage of `tally {path}`")
    assert not problems, (
        f"README.md's CLI reference row for `tally {path}` does not match its --help"
        f" (`{_usage(command)}`):\n  " + "\n  ".join(problems)
    )


def test_the_reference_documents_no_command_the_parser_lacks() -> None:
    unknown = sorted({row.path for row in REFERENCE_ROWS if row.path not in COMMANDS or COMMANDS[row.path].group})
    assert not unknown, (
        "README.md's CLI reference documents commands the parser (node/cli/parser.py build_parser) lacks;"
        " remove their rows, or add the commands to the parser:\n"
        + "\n".join(f"  tally {path}" for path in unknown)
    )


def test_the_reference_documents_no_option_the_parser_lacks() -> None:
    problems = []
    for row in REFERENCE_ROWS:
        command = COMMANDS.get(row.path)
        if command is None:
            continue  # reported by test_the_reference_documents_no_command_the_parser_lacks
        for option in sorted(_options_in(row.usage) - _known_options(command)):
            problems.append(f"remove `{option}` from the usage of `tally {row.path}` (`{_usage(command)}`)")
    assert not problems, "README.md's CLI reference gives options the parser lacks:\n  " + "\n  ".join(problems)


def test_the_reference_names_only_real_commands_in_its_text() -> None:
    """`tally X` anywhere in the reference's prose is a real top-level command."""
    tops = {path for path in COMMANDS if " " not in path}
    named = set(re.findall(r"`tally ([a-z][a-z0-9-]*)", CLI_REFERENCE))
    unknown = sorted(named - tops)
    assert not unknown, (
        "README.md's CLI reference mentions commands the parser lacks; remove them (or add them to the parser): "
        + ", ".join(f"`tally {name}`" for name in unknown)
    )


def test_the_reference_states_the_common_option() -> None:
    assert "`--home DIR`" in CLI_REFERENCE, "README.md's CLI reference must say that every command takes `--home DIR`"


def test_usage_rows_elsewhere_name_real_commands_and_options() -> None:
    """The detailed sections (ledger, governance, distributions) keep their own tables: they must not drift."""
    problems = []
    for row in _rows(README):
        if row in REFERENCE_ROWS:
            continue
        command = COMMANDS.get(row.path)
        if command is None or command.group:
            problems.append(f"`tally {row.path}` is not a command: fix or remove the row {row.line[:80]!r}")
            continue
        for option in sorted(_options_in(row.usage) - _known_options(command)):
            problems.append(f"`tally {row.path}` has no option `{option}`: remove it from {row.usage!r}")
    assert not problems, "README.md tables outside the CLI reference:\n  " + "\n  ".join(problems)


# ---- the examples --------------------------------------------------------------------------------


def _example_commands() -> Iterator[str]:
    """Every `tally …` command line in README.md's code blocks (fenced or indented), prompts stripped."""
    blocks = re.findall(r"```[a-z]*\n(.*?)```", README, flags=re.S)
    blocks.append("\n".join(re.findall(r"^    (.*)$", README, flags=re.M)))
    for block in blocks:
        text = block.replace("\\\n", " ")
        for line in text.splitlines():
            for segment in re.split(r";|&&|\|\|", line):
                segment = re.sub(r"^\s*[\w-]+\$\s+", "", segment)  # a prompt: `ana$  tally …`
                segment = re.sub(r"<[^<>]*>", "X", segment)  # a placeholder: `<ledger id>`
                try:
                    words = shlex.split(segment, comments=True)
                except ValueError:
                    continue
                for i, word in enumerate(words):
                    if (word == "tally" or word.endswith("bin/tally")) and (i == 0 or words[i - 1] not in {"-u", "cd"}):
                        args = []
                        for arg in words[i + 1:]:
                            if arg in {">", ">>", "|", "<"}:
                                break
                            args.append(arg)
                        if args:
                            yield shlex.join(args)
                        break


EXAMPLES = sorted(set(_example_commands()))


def test_there_are_examples() -> None:
    assert len(EXAMPLES) > 20, EXAMPLES


@pytest.mark.parametrize("example", EXAMPLES)
def test_every_example_parses(example: str) -> None:
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.suppress(SystemExit):
        build_parser().parse_args(shlex.split(example))
        return
    pytest.fail(f"README.md's example `tally {example}` does not parse; fix it:\n{err.getvalue()}")


# ---- the config reference ------------------------------------------------------------------------


def _config_keys() -> list[str]:
    """Every key of tally.toml, from node/config.py: the fields of Config, and of its tables."""
    keys = []
    for f in dataclasses.fields(node_config.Config):
        default = getattr(node_config.Config(), f.name)
        if dataclasses.is_dataclass(default):
            keys.append(f"[{f.name}]")
            keys += [g.name for g in dataclasses.fields(default)]
        else:
            keys.append(f.name)
    return keys


def test_the_config_reference_documents_every_key() -> None:
    section = _section("### The config file: `tally.toml`")
    missing = [key for key in _config_keys() if f"`{key}`" not in section]
    assert not missing, (
        "README.md's config reference (### The config file: `tally.toml`) lacks these keys of node/config.py;"
        " add a row for each: " + ", ".join(f"`{key}`" for key in missing)
    )


def test_the_config_reference_documents_no_key_the_code_lacks() -> None:
    section = _section("### The config file: `tally.toml`")
    table = [line for line in section.splitlines() if line.startswith("| `")]
    documented = {_cells(line)[0].strip("`") for line in table}
    unknown = sorted(documented - set(_config_keys()))
    assert not unknown, f"README.md's config reference documents keys node/config.py lacks; remove: {unknown}"


# ---- links ---------------------------------------------------------------------------------------


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def _anchors(markdown: str) -> set[str]:
    text = re.sub(r"```.*?```", "", markdown, flags=re.S)
    return {_slug(h) for h in re.findall(r"^#{1,6} (.+)$", text, flags=re.M)}


def test_the_readme_links_the_spec() -> None:
    assert "](SPEC.md)" in README or "](SPEC.md#" in README, "README.md must link SPEC.md: add [SPEC.md](SPEC.md)"
    sections = re.findall(r"\]\(SPEC\.md#", README)
    assert len(sections) >= 5, "README.md should link the SPEC.md sections it summarizes, e.g. (SPEC.md#7-forks)"


def test_every_link_into_the_spec_resolves() -> None:
    anchors = _anchors(SPEC)
    broken = sorted({a for a in re.findall(r"\]\(SPEC\.md#([^)\s]+)\)", README) if a not in anchors})
    assert not broken, f"README.md links SPEC.md sections that do not exist; fix: {broken} (have: {sorted(anchors)})"


def test_every_link_within_the_readme_resolves() -> None:
    anchors = _anchors(README)
    broken = sorted({a for a in re.findall(r"\]\(#([^)\s]+)\)", README) if a not in anchors})
    assert not broken, f"README.md links headings it does not have; fix: {broken}"


def test_every_file_the_readme_links_exists() -> None:
    targets = {t.split("#")[0] for t in re.findall(r"\]\(([^)#\s:]+(?:#[^)\s]*)?)\)", README)}
    missing = sorted(t for t in targets if t and not (ROOT / t).exists())
    assert not missing, f"README.md links files that do not exist: {missing}"
