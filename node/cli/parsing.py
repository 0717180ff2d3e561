"""What `tally`'s argument parser needs and nothing more, so `tally --help` (and a command that needs no store
or node, such as `tally id`) loads neither the store, the HTTP client nor the node: the parser's way of
failing, the usage error (exit 2), the home a command works on, a command's reference (node/cli/parser.py
names each command's module and function; node/cli/main.py loads only the one it runs), and the options'
readers."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

from node.home import Home, default_home
from protocol import CID, LocalError, TallyError
from protocol.rules_file import MAX_RULES_TOML_CHARS, parse_rules_toml

Command = Callable[[argparse.Namespace], Coroutine[Any, Any, int]]
#: node/cli/parser.py's `add(name, "module.function", help[, subparsers])`: declares one command
AddCommand = Callable[..., argparse.ArgumentParser]


@dataclass(frozen=True, slots=True)
class CommandRef:
    """A command by its module under node/cli/ and its function's name: loaded only when it is the one run."""

    module: str
    name: str

    def load(self) -> Command:
        # An import by name: tests/test_architecture.py allows it here and checks that every reference resolves
        command: Command = getattr(importlib.import_module(f"node.cli.{self.module}"), self.name)
        return command


class UsageError(TallyError):
    """Exit 2: the command line itself is wrong (`usage`)."""

    def __init__(self, message: str) -> None:
        super().__init__("usage", message)


class Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(2, f"error: usage: {message}\n")


def home_of(args: argparse.Namespace) -> Home:
    given = getattr(args, "home", None)  # SUPPRESS default: absent unless given
    return Home(Path(given).expanduser() if given else default_home())


def parse_cid(text: str) -> CID:
    return CID.parse(text.strip())


def read_toml(path: str, code: str) -> dict[str, Any]:
    """A TOML file (`--rules`, `--amend`); refused with `code` if unreadable, not TOML or beyond the limits of
    `parse_rules_toml` (read no further than them, so a huge file costs nothing)."""
    try:
        with open(path, "rb") as f:
            data = f.read(4 * MAX_RULES_TOML_CHARS + 1)
    except OSError as exc:
        raise LocalError(code, f"cannot read {path}: {exc.strerror}") from None
    try:
        return parse_rules_toml(data.decode("utf-8"))
    except UnicodeDecodeError:
        raise LocalError(code, f"{path} is not UTF-8 text") from None
    except TallyError as exc:  # bad_rules, or bad_amendment for --amend
        raise LocalError(code, f"{path}: {exc.message}") from None


async def missing_subcommand(args: argparse.Namespace) -> int:
    raise UsageError("a subcommand is required")
