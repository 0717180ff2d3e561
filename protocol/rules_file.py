"""Reading a rules file: its TOML text parsed within bounds, and typed reads of its values.

Every read names the dotted key at fault as the file spells it (`validation.acept`,
`rates."work:engineering".hour`, `buckets[1].percent`), so a refusal says where to look. Genesis bodies and
amendments are read with the same functions.
"""

from __future__ import annotations

import json
import re
import tomllib
from collections.abc import Iterable, Mapping
from typing import Any, Final

from .errors import InvalidData
from .identity import public_key_from_did

MAX_RULES_DEPTH: Final = 16  # rules nest 4 deep; anything deeper is refused before it is parsed or walked
MAX_RULES_TOML_CHARS: Final = 65536  # a rules file: four times what a genesis payload can hold
_BARE_KEY: Final = re.compile(r"[A-Za-z0-9_-]+")


def parse_rules_toml(text: str) -> dict[str, Any]:
    """A rules (or amendment) TOML text as a table; `bad_rules` when too long, nested deeper than
    MAX_RULES_DEPTH (checked before parsing: the parser recurses once per level) or not TOML."""
    if len(text) > MAX_RULES_TOML_CHARS:
        raise InvalidData("bad_rules", f"the rules file has more than {MAX_RULES_TOML_CHARS} characters")
    if _toml_depth(text) > MAX_RULES_DEPTH:
        raise InvalidData("bad_rules", f"the rules nest arrays or inline tables more than {MAX_RULES_DEPTH} deep")
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise InvalidData("bad_rules", f"not TOML: {exc}") from None
    except RecursionError:  # unreachable after the depth check; kept so no input can crash a caller
        raise InvalidData("bad_rules", "the rules nest too deeply") from None


def _toml_depth(text: str) -> int:
    """The deepest nesting of `[` and `{` outside strings and comments (table headers count as 1)."""
    depth = deepest = i = 0
    while i < len(text):
        c = text[i]
        if c in "\"'":
            quote = text[i:i + 3] if text[i:i + 3] in ('"""', "'''") else c
            i += len(quote)
            while i < len(text) and not text.startswith(quote, i):
                i += 2 if c == '"' and text[i] == "\\" else 1
            i += len(quote)
            continue
        if c == "#":
            while i < len(text) and text[i] != "\n":
                i += 1
        elif c in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif c in "]}":
            depth = max(0, depth - 1)
        i += 1
    return deepest


# ---- typed reads, each naming its key ---------------------------------------------


def key_path(path: str, key: object) -> str:
    """`path.key`, with the key quoted as TOML would when it is not a bare key."""
    text = str(key)
    part = text if _BARE_KEY.fullmatch(text) else json.dumps(text, ensure_ascii=False)
    return f"{path}.{part}" if path else part


def _where(path: str) -> str:
    return path or "the rules"


def refuse_floats(value: object, path: str, depth: int = 0) -> None:
    """Floats anywhere are `bad_quantity`, named by key, before any other check."""
    if depth > MAX_RULES_DEPTH:
        raise InvalidData("bad_rules", f"{_where(path)}: nested too deeply")
    if isinstance(value, float):
        raise InvalidData(
            "bad_quantity", f"{_where(path)}: {value!r} is a float; write decimals as strings, e.g. \"2.5\""
        )
    if isinstance(value, Mapping):
        for k, v in value.items():
            refuse_floats(v, key_path(path, k), depth + 1)
    elif isinstance(value, list | tuple):
        for i, v in enumerate(value):
            refuse_floats(v, f"{path}[{i}]", depth + 1)


def read_table(value: object, path: str, known: frozenset[str] | None = None) -> Mapping[str, Any]:
    """A table with text keys, all of them in `known` (any key when None)."""
    if not isinstance(value, Mapping):
        raise InvalidData("bad_rules", f"{_where(path)}: expected a table, got {kind_of(value)}")
    for k in value:
        if not isinstance(k, str):
            raise InvalidData("bad_rules", f"{_where(path)}: key {k!r} is not text")
    unknown = [] if known is None else sorted(set(value) - known)
    if known is not None and unknown:
        raise InvalidData(
            "unknown_rule_key", f"{key_path(path, unknown[0])}: unknown key (known here: {', '.join(sorted(known))})"
        )
    return value


def required(table: Mapping[str, Any], key: str, path: str) -> Any:
    if key not in table:
        raise InvalidData("bad_rules", f"{key_path(path, key)}: required")
    return table[key]


def read_text(value: object, path: str) -> str:
    if not isinstance(value, str):
        raise InvalidData("bad_rules", f"{path}: expected text, got {kind_of(value)}")
    return value


def read_int(value: object, path: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidData("bad_rules", f"{path}: expected a whole number, got {kind_of(value)}")
    if not low <= value <= high:
        raise InvalidData("bad_rules", f"{path}: {value} is outside {low}..{high}")
    return value


def read_bool(value: object, path: str) -> bool:
    if not isinstance(value, bool):
        raise InvalidData("bad_rules", f"{path}: expected true or false, got {kind_of(value)}")
    return value


def read_list(value: object, path: str) -> list[Any]:
    if not isinstance(value, list | tuple):
        raise InvalidData("bad_rules", f"{path}: expected a list, got {kind_of(value)}")
    return list(value)


def read_choice(value: object, path: str, choices: tuple[str, ...]) -> str:
    if not isinstance(value, str) or value not in choices:
        raise InvalidData("bad_rules", f"{path}: {value!r} is not one of {', '.join(choices)}")
    return value


def kind_of(value: object) -> str:
    if value is None:
        return "nothing (null)"
    if isinstance(value, bool):
        return "a boolean"
    return {
        int: "a whole number", str: "text", list: "a list", tuple: "a list", dict: "a table",
    }.get(type(value), type(value).__name__)


def read_did(value: object, path: str) -> str:
    did = read_text(value, path)
    try:
        public_key_from_did(did)
    except InvalidData as exc:
        raise InvalidData("bad_did", f"{path}: {exc.message}") from None
    return did


def check_unique(values: Iterable[str], path: str) -> None:
    seen: set[str] = set()
    for i, value in enumerate(values):
        if value in seen:
            raise InvalidData("bad_rules", f"{path}[{i}]: {value!r} is listed twice")
        seen.add(value)


def check_sorted(values: list[str], path: str) -> None:
    """Genesis bodies hold sets as sorted lists (one encoding per rule set)."""
    if values != sorted(values):
        raise InvalidData("bad_rules", f"{path}: must be sorted (one encoding per rule set)")
