"""Strict DAG-CBOR: the IPLD codec every Tally block and message uses.

Decoding is strict and checked by re-encoding: the canonical encoding of what
was decoded must equal the input byte for byte. So two encodings of one value
can never both be accepted, and anything cbor2 tolerates but DAG-CBOR does not
(non-shortest integers or lengths, unsorted maps, trailing bytes, bignums …)
is refused as `bad_encoding`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Final

import cbor2

from .cid import CID
from .errors import InvalidData

LINK_TAG: Final = 42
MAX_DEPTH: Final = 64  # containers nested in one block
MIN_INT: Final = -(2**64)
MAX_INT: Final = 2**64 - 1

#: The Python values a DAG-CBOR block may hold.
Value = None | bool | int | str | bytes | CID | list[Any] | dict[str, Any]


def _refuse_tag(*_: object) -> object:
    raise ValueError("only tag 42 (link) is allowed")


# cbor2 decodes these tags itself (dates, bignums, shared values, sets …);
# DAG-CBOR allows none of them, so each is routed to a refusal.
_BUILTIN_TAGS: Final = (
    *range(0, 6), *range(21, 38), 100, 256, 258, 260, 261, 262, 263, 1004, 55799,
)
_REFUSED_SEMANTICS: Final[Mapping[int, Callable[..., object]]] = {t: _refuse_tag for t in _BUILTIN_TAGS}


def _tag_hook(tag: cbor2.CBORTag, _immutable: bool) -> CID:
    if tag.tag != LINK_TAG:
        raise ValueError(f"tag {tag.tag} is not allowed (only 42)")
    value = tag.value
    if not isinstance(value, bytes) or not value.startswith(b"\0"):
        raise ValueError("a link (tag 42) must be bytes starting with the 0x00 multibase prefix")
    return CID(value[1:])


def _encode_link(encoder: cbor2.CBOREncoder, value: object) -> None:
    if isinstance(value, CID):
        encoder.encode(cbor2.CBORTag(LINK_TAG, b"\0" + value.raw))
        return
    raise InvalidData("bad_encoding", f"{type(value).__name__} cannot be encoded as DAG-CBOR")


def check_value(value: object, depth: int = 0) -> None:
    """Raise `bad_encoding` unless `value` is a DAG-CBOR data model value."""
    if depth > MAX_DEPTH:
        raise InvalidData("bad_encoding", f"nested deeper than {MAX_DEPTH}")
    if value is None or isinstance(value, (bool, str, bytes, CID)):
        return
    if isinstance(value, int):
        if not MIN_INT <= value <= MAX_INT:
            raise InvalidData("bad_encoding", "integer outside the 64-bit range")
        return
    if isinstance(value, list):
        for item in value:
            check_value(item, depth + 1)
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise InvalidData("bad_encoding", "map keys must be strings")
            check_value(item, depth + 1)
        return
    if isinstance(value, float):
        raise InvalidData("bad_encoding", "floats are not allowed; use integers or decimal strings")
    raise InvalidData("bad_encoding", f"{type(value).__name__} is not a DAG-CBOR value")


def _dumps(value: object) -> bytes:
    return cbor2.dumps(value, canonical=True, default=_encode_link)


def encode(value: object) -> bytes:
    """The canonical DAG-CBOR bytes of `value`."""
    check_value(value)
    return _dumps(value)


def decode(data: bytes, *, max_bytes: int) -> Any:
    """Decode one strict DAG-CBOR block of at most `max_bytes` bytes."""
    if len(data) > max_bytes:
        raise InvalidData("oversize", f"block of {len(data)} bytes exceeds {max_bytes}")
    try:
        value = cbor2.loads(
            data,
            tag_hook=_tag_hook,
            semantic_decoders=_REFUSED_SEMANTICS,
            max_depth=MAX_DEPTH,
            allow_indefinite=False,
            allow_duplicate_keys=False,
            strict_hashable_types=True,
        )
    except (cbor2.CBORDecodeError, ValueError, InvalidData) as exc:
        raise InvalidData("bad_encoding", f"not DAG-CBOR: {_cause(exc)}") from None
    check_value(value)
    if _dumps(value) != data:
        raise InvalidData(
            "bad_encoding", "not canonical DAG-CBOR (trailing bytes, non-shortest form or key order)"
        )
    return value


def _cause(exc: BaseException) -> str:
    # cbor2 wraps the hook's own error; its message is the useful one.
    inner = exc.__cause__ or exc.__context__
    return str(inner) if inner is not None else str(exc)
