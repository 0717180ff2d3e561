"""Names people read: members' (`member.about`) and ledgers' (the rules' `name`).

A name is a label, not an identity, but it must not be a way to impersonate: it is
NFC text without control, bidi-control or line-separator characters and not made only
of invisible characters (`bad_name`, a validity rule every node applies). Whether a
name reads as another member's is a question of the whole ledger, not of one entry's
causal past, so it is not a validity rule: a node refuses to *write* one
(`confusable_name`) and shows the did:key beside any name another resembles. Both use
the confusable skeleton of Unicode TR39 §4 over the generated table in confusables.py.
SPEC.md §16.1 ("Names") specifies them.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Mapping
from functools import lru_cache
from typing import Final

from .confusables import prototypes
from .errors import InvalidData

#: C0 and C1 controls, DEL.
_CONTROLS: Final = frozenset(chr(c) for c in (*range(0x00, 0x20), *range(0x7F, 0xA0)))
#: Bidi controls (embeddings, overrides, isolates, marks) and the line and paragraph separators.
_BIDI_AND_BREAKS: Final = frozenset("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
                                    "\u2028\u2029")
#: Characters that draw nothing (Unicode's Default_Ignorable_Code_Point, listed so every node agrees).
_INVISIBLE_RANGES: Final = (
    (0x00AD, 0x00AD), (0x034F, 0x034F), (0x061C, 0x061C), (0x115F, 0x1160), (0x17B4, 0x17B5),
    (0x180B, 0x180F), (0x200B, 0x200F), (0x202A, 0x202E), (0x2060, 0x206F), (0x3164, 0x3164),
    (0xFE00, 0xFE0F), (0xFEFF, 0xFEFF), (0xFFA0, 0xFFA0), (0xFFF0, 0xFFF8), (0x1BCA0, 0x1BCA3),
    (0x1D173, 0x1D17A), (0xE0000, 0xE0FFF),
)


def _invisible(c: str) -> bool:
    point = ord(c)
    return c.isspace() or any(low <= point <= high for low, high in _INVISIBLE_RANGES)


def check_name(name: str, what: str) -> str:
    """`name` if people can read it as written; `bad_name` otherwise (length and trimming are the caller's)."""
    bad = next((c for c in name if c in _CONTROLS or c in _BIDI_AND_BREAKS), None)
    if bad is not None:
        raise InvalidData("bad_name", f"{what} holds U+{ord(bad):04X}, a control, bidi-control or line-separator "
                          "character")
    if all(_invisible(c) for c in name):
        raise InvalidData("bad_name", f"{what} has only invisible characters")
    if not unicodedata.is_normalized("NFC", name):
        raise InvalidData("bad_name", f"{what} is not in Unicode NFC form")
    return name


def normalize(name: str) -> str:
    """What a node writes for a name someone typed: NFC, without white space at either end."""
    return unicodedata.normalize("NFC", name).strip()


@lru_cache(maxsize=4096)  # pages ask for the same few names again and again
def skeleton(name: str) -> str:
    """TR39's skeleton: NFD, each character mapped to its prototype, NFD again. Two names are confusable
    when their skeletons are equal."""
    decomposed = unicodedata.normalize("NFD", name)
    table = prototypes()
    return unicodedata.normalize("NFD", "".join(table.get(c, c) for c in decomposed))


def resembles(name: str, me: str, names: Mapping[str, str]) -> str | None:
    """Another member (did:key) whose name `name` reads as, or None. `names` is did:key -> name."""
    mine = skeleton(name)
    return next((did for did, other in sorted(names.items()) if did != me and skeleton(other) == mine), None)


def check_not_confusable(name: str, me: str, names: Mapping[str, str]) -> None:
    """`confusable_name` when `name` reads as another member's name in the ledger (a node refuses to write it)."""
    other = resembles(name, me, names)
    if other is not None:
        raise InvalidData("confusable_name", f"{name!r} reads as the name of another member, {other}")
