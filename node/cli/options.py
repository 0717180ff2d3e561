"""The CLI's options of a declared write request (protocol/requests.py), and the request its arguments ask for.

Each declared field is an argument: a positional one, or the option its spec names (`--action`), with the
spec's metavar and help; a list is a repeatable option, a switch a flag (`--reject`), an object a TOML file
(`--amend RULES_FILE`), scores one `--score OPTION=N` each. Options of one group exclude each other.
"""

from __future__ import annotations

import argparse
from typing import Any, TypeVar

from node.cli.parsing import parse_cid, read_toml
from protocol import LocalError, parse_body
from protocol.request_fields import Kind, WriteRequest

R = TypeVar("R", bound=WriteRequest)
_LISTS = (Kind.CIDS, Kind.TEXTS, Kind.SCORES)
_NUMBERS = {Kind.INT: int, Kind.NUMBER: float}


def add_request_options(parser: argparse.ArgumentParser, declared: type[WriteRequest]) -> None:
    """Add an argument for each of `declared`'s fields to `parser`, in the declared order."""
    groups: dict[str, Any] = {}
    for f in declared.fields():
        spec = f.spec
        target: Any = parser
        if spec.group:
            if spec.group not in groups:
                groups[spec.group] = parser.add_mutually_exclusive_group()
            target = groups[spec.group]
        more: dict[str, Any] = {"help": spec.help.replace("%", "%%")} if spec.help else {}  # argparse formats it
        if spec.metavar:
            more["metavar"] = spec.metavar
        if not spec.cli:
            target.add_argument(f.name, **more)
        elif spec.switch is not None or spec.kind is Kind.BOOL:
            target.add_argument(spec.cli, dest=f.name, action="store_true", **more)
        elif spec.kind in _LISTS:
            target.add_argument(spec.cli, dest=f.name, action="append", default=[], **more)
        else:
            if spec.choices:
                more["choices"] = spec.choices
            if spec.kind in _NUMBERS:
                more["type"] = _NUMBERS[spec.kind]
            target.add_argument(spec.cli, dest=f.name, required=spec.required and not declared.MODE, **more)


def request_of(declared: type[R], args: argparse.Namespace) -> R:
    """The request the command line's `args` ask for (ids parsed, files read: refused before anything is sent
    or written)."""
    values: dict[str, object] = {}
    for f in declared.fields():
        spec = f.spec
        given = getattr(args, f.name)
        if spec.switch is not None:
            given = spec.switch[0] if given else spec.switch[1]
        if spec.kind is Kind.SCORES:
            values[f.name] = scores(given, spec.cli)
        elif given is None or (given == [] and not spec.required):
            continue
        elif spec.kind is Kind.CID:
            values[f.name] = parse_cid(given)
        elif spec.kind is Kind.CIDS:
            values[f.name] = tuple(parse_cid(c) for c in given)
        elif spec.kind is Kind.TEXTS:
            values[f.name] = tuple(given)
        elif spec.kind is Kind.BODY:
            values[f.name] = parse_body(given)
        elif spec.kind is Kind.OBJECT:
            values[f.name] = read_toml(given, spec.code or "bad_request")
        else:
            values[f.name] = given
    return declared(**values)


def scores(given: list[str], option: str) -> dict[str, int]:
    """`OPTION=N` items as a ballot's scores."""
    out: dict[str, int] = {}
    for item in given:
        name, sep, value = item.rpartition("=")
        if not sep or not name.strip():
            raise LocalError("unknown_option", f"{option} {item!r}: write OPTION=SCORE, e.g. solar=5")
        try:
            out[name.strip()] = int(value.strip())
        except ValueError:
            raise LocalError("vote_out_of_range", f"{option} {item!r}: {value!r} is not a whole score") from None
    return out
