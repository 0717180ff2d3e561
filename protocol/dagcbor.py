"""Strict DAG-CBOR: the IPLD codec every Tally block and message uses.

Decoding is strict and checked by re-encoding: the canonical encoding of what
was decoded must equal the input byte for byte. So two encodings of one value
can never both be accepted, and anything cbor2 tolerates but DAG-CBOR does not
(non-shortest integers or lengths, unsorted maps, trailing bytes, bignums …)
is refused as `bad_encoding`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from functools import lru_cache
from typing import Any, Final

import cbor2

from .cid import CID, DAG_CBOR_PREFIX
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
    return _link(value[1:])


#: Links decoded lately, shared: a ledger's entries name the same few (each author's admission as
#: `member`, recent contributions) over and over, and a fold keeps what they name (protocol/fold.py).
_link: Final = lru_cache(maxsize=8192)(CID)


def _encode_link(encoder: cbor2.CBOREncoder, value: object) -> None:
    if isinstance(value, CID):
        if len(value.raw) == 36:  # the one form Tally makes: written at once, the bytes `link` makes
            encoder.write(_LINK_36 + value.raw)
        else:
            encoder.encode(cbor2.CBORTag(LINK_TAG, b"\0" + value.raw))
        return
    raise InvalidData("bad_encoding", f"{type(value).__name__} cannot be encoded as DAG-CBOR")


_SCALARS: Final = frozenset({type(None), bool, bytes, CID})


def check_value(value: object, depth: int = 0) -> None:
    """Raise `bad_encoding` unless `value` is a DAG-CBOR data model value."""
    # Dispatch on the exact type first: this runs on every body a node encodes.
    kind = type(value)
    if kind in _SCALARS:
        return
    if kind is str:
        _check_text(value)  # type: ignore[arg-type]
        return
    if kind is int:
        if not MIN_INT <= value <= MAX_INT:  # type: ignore[operator]
            raise InvalidData("bad_encoding", "integer outside the 64-bit range")
        return
    if depth >= MAX_DEPTH:
        raise InvalidData("bad_encoding", f"nested deeper than {MAX_DEPTH}")
    if kind is list:
        for item in value:  # type: ignore[attr-defined]
            check_value(item, depth + 1)
        return
    if kind is dict:
        for key, item in value.items():  # type: ignore[attr-defined]
            if type(key) is not str:
                raise InvalidData("bad_encoding", "map keys must be strings")
            _check_text(key)
            check_value(item, depth + 1)
        return
    _check_other(value, depth)


def _check_other(value: object, depth: int) -> None:
    # Subclasses of the allowed types (an IntEnum, a str subclass …) are values too.
    if isinstance(value, (bool, bytes, CID)):
        return
    if isinstance(value, str):
        check_value(str(value), depth)
        return
    if isinstance(value, int):
        check_value(int(value), depth)
        return
    if isinstance(value, list):
        check_value(list(value), depth)
        return
    if isinstance(value, dict):
        check_value(dict(value), depth)
        return
    if isinstance(value, float):
        raise InvalidData("bad_encoding", "floats are not allowed; use integers or decimal strings")
    raise InvalidData("bad_encoding", f"{type(value).__name__} is not a DAG-CBOR value")


_DECODED_SCALARS: Final = frozenset({type(None), bool, bytes, CID, int, str})


def _check_decoded(value: object, depth: int = 0) -> None:
    """What cbor2 returns that DAG-CBOR forbids: floats, simple values, bytes keys, depth.

    Text is valid UTF-8 and integers fit 64 bits (bignum tags are refused).
    cbor2's max_depth bounds the recursion but lets an empty container sit one
    level deeper than check_value does, so depth is counted here as there.
    """
    kind = type(value)
    if kind in _DECODED_SCALARS:
        return
    if depth >= MAX_DEPTH and kind in (list, dict):
        raise InvalidData("bad_encoding", f"nested deeper than {MAX_DEPTH}")
    if kind is list:
        for item in value:  # type: ignore[attr-defined]
            if type(item) not in _DECODED_SCALARS:
                _check_decoded(item, depth + 1)
        return
    if kind is dict:
        for key, item in value.items():  # type: ignore[attr-defined]
            if type(key) is not str:
                raise InvalidData("bad_encoding", "map keys must be text strings")
            if type(item) not in _DECODED_SCALARS:
                _check_decoded(item, depth + 1)
        return
    if kind is float:
        raise InvalidData("bad_encoding", "floats are not allowed")
    raise InvalidData("bad_encoding", f"{kind.__name__} is not a DAG-CBOR value")


def _check_text(text: str) -> None:
    # A str can hold lone surrogates (JSON "\ud800" parses to one); CBOR text is UTF-8 and cannot.
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            raise InvalidData("bad_encoding", "text holds a lone surrogate, which UTF-8 cannot encode") from None


def _dumps(value: object) -> bytes:
    return cbor2.dumps(value, canonical=True, default=_encode_link)


def encode(value: object) -> bytes:
    """The canonical DAG-CBOR bytes of `value`."""
    if type(value) is dict:
        flat = _encode_flat_map(value)
        if flat is not None:
            return flat
    check_value(value)
    return _dumps(value)


#: Values a flat map (most entry bodies) holds that need no check beyond their type, or a cheap one.
_FLAT_VALUES: Final = frozenset({type(None), bool, bytes, CID, int, str})


@lru_cache(maxsize=1024)  # bodies of one kind share a few shapes
def _key_order(keys: tuple[str, ...]) -> tuple[str, ...]:
    """ASCII keys in DAG-CBOR order (encoded length, then bytewise): for ASCII, length then text."""
    return tuple(sorted(keys, key=lambda k: (len(k), k)))


def _encode_flat_map(value: dict[str, Any]) -> bytes | None:
    """The canonical bytes of a map of ASCII keys to scalars, or None for any other map (`encode` takes it).

    cbor2 sorts a map's keys itself (canonical=True) at about three times the cost of encoding it as it is; for
    ASCII keys, DAG-CBOR's order is worked out once per shape of map and kept, and the map is then encoded in
    that order as it is (`decode` relies on the same: sorted keys and cbor2's shortest forms are the canonical
    bytes). It refuses what `check_value` refuses, with the same error, or leaves the map to it."""
    for key, item in value.items():
        kind = type(item)
        if kind not in _FLAT_VALUES or type(key) is not str or not key.isascii():
            return None
        if kind is str:
            if not item.isascii():
                _check_text(item)
        elif kind is int and not MIN_INT <= item <= MAX_INT:
            return None
    keys = tuple(value)
    order = _key_order(keys)
    if order != keys:
        value = {k: value[k] for k in order}
    return _dumps_as_is(value)


def decode(data: bytes, *, max_bytes: int) -> Any:
    """Decode one strict DAG-CBOR block of at most `max_bytes` bytes.

    Canonical form is checked in two halves: map keys in DAG-CBOR order (walked here), and
    everything else by re-encoding in the decoded order, which cbor2 does five times faster
    than a canonical (key-sorting) encode. With the keys already sorted the two encodings
    are the same bytes, so the same blocks are refused.
    """
    value = decode_unchecked(data, max_bytes=max_bytes)
    if not _keys_sorted(value) or _dumps_as_is(value) != data:
        raise InvalidData(
            "bad_encoding", "not canonical DAG-CBOR (trailing bytes, non-shortest form or key order)"
        )
    return value


def _dumps_as_is(value: object) -> bytes:
    return cbor2.dumps(value, default=_encode_link)


def _keys_sorted(value: object) -> bool:
    """Every map's keys strictly ascending in DAG-CBOR order: encoded length first, then bytewise."""
    kind = type(value)
    if kind is dict:
        last: bytes | None = None
        for key, item in value.items():  # type: ignore[attr-defined]
            raw = key.encode("utf-8", "surrogatepass")
            if last is not None and (len(raw) < len(last) or (len(raw) == len(last) and raw <= last)):
                return False
            last = raw
            if type(item) in (dict, list) and not _keys_sorted(item):
                return False
        return True
    if kind is list:
        return all(_keys_sorted(item) for item in value if type(item) in (dict, list))  # type: ignore[attr-defined]
    return True


def decode_unchecked(data: bytes, *, max_bytes: int) -> Any:
    """Decode without the canonical-form check: the caller re-encodes and compares.

    For blocks of a fixed shape (headers) whose own encoder is canonical by
    construction, that comparison is cheaper than a generic re-encode.
    """
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
    # Types still count: a float or undefined in any field is bad_encoding (SPEC §5.4 step 1),
    # not bad_field or unknown_field.
    _check_decoded(value)
    return value


#: Links of trusted blocks decoded lately, by their tag's value (the multibase 0 and the CID's bytes): a store reads a
#: ledger back a link or two per payload, and a dict's look-up costs half of `_link`'s (the slice and the lru_cache's
#: bookkeeping). Emptied when full: a ledger's reads name the same few (each member) and many once (the events).
_TRUSTED_LINKS: Final[dict[bytes, CID]] = {}
_TRUSTED_KEPT: Final = 8192


def trusted_link(tag: cbor2.CBORTag, _immutable: bool) -> CID:
    """cbor2's tag hook for blocks `decode_trusted` reads: a link, made once for many reads."""
    value = tag.value
    cid = _TRUSTED_LINKS.get(value)
    return _trusted_cid(value) if cid is None else cid


def trusted_cid(value: bytes) -> CID:
    """`trusted_link` of a link tag's value (the multibase 0, then the CID's bytes), for a reader of trusted blocks
    that finds their links itself (protocol/entry.py: a stored endorsement's payload)."""
    cid = _TRUSTED_LINKS.get(value)
    return _trusted_cid(value) if cid is None else cid


def _trusted_cid(value: bytes) -> CID:
    """A link first read, made and kept."""
    if len(_TRUSTED_LINKS) >= _TRUSTED_KEPT:
        _TRUSTED_LINKS.clear()
    if type(value) is bytes and len(value) == 37 and value.startswith(_LINK_36_VALUE):
        # The one form CID's own check lets through at once, made through its slot: most links a ledger's read
        # finds first here are named once (an endorsed event), so `_link`'s cache only cost its upkeep.
        cid: CID = _new(CID)
        _SET_CID_RAW(cid, value[1:])
    else:
        cid = _link(value[1:])
    _TRUSTED_LINKS[value] = cid
    return cid


_new: Final = object.__new__
_SET_CID_RAW: Final = vars(CID)["raw"].__set__
_LINK_36_VALUE: Final = b"\0" + DAG_CBOR_PREFIX  # a link tag's value: the multibase 0, then the CID's bytes


def decode_trusted(data: bytes) -> Any:
    """Decode a block that passed `decode` before: the caller has proved these are those very bytes (they hash to
    what was checked, as a stored payload does to its header's CID). Nothing is checked again, so a store's
    reads cost cbor2's decode alone (a third less than `decode_unchecked`); its only tag is a link."""
    return cbor2.loads(data, tag_hook=trusted_link)


#: A vf.endorse payload as the node writes it, canonical: {note?, event, member, verdict} (keys by length), its links
#: 36-byte CIDs, its verdict accept or reject. Half of a coop's entries: read off this layout (`trusted_endorsement`)
#: rather than by cbor2, item by item (2.4 -> 0.9 us each). The note is matched lazily up to the next key and then
#: checked against its head's length, so a note holding those very bytes is never cut short.
_ENDORSEMENT: Final = re.compile(
    rb"(?:\xa4\x64note([\x60-\x77]|\x78[\x18-\xff])(.*?)|\xa3)\x65event\xd8\x2a\x58\x25(\x00\x01\x71\x12\x20.{32})"
    rb"\x66member\xd8\x2a\x58\x25(\x00\x01\x71\x12\x20.{32})\x67verdict\x66(accept|reject)",
    re.S,
)
ENDORSEMENT_ENDS: Final = (b"\x67verdict\x66accept", b"\x67verdict\x66reject")  # how such a payload ends


def trusted_endorsement(data: bytes) -> dict[str, Any] | None:
    """A trusted block (as `decode_trusted`) laid out as an endorsement's payload: the map cbor2 makes of it, keys in
    the same order; None for any other block (`decode_trusted` reads it)."""
    m = _ENDORSEMENT.fullmatch(data)
    if m is None:
        return None
    head, note, event, member, verdict = m.groups()
    body: dict[str, Any] = {}
    if head is not None:
        if len(note) != (head[1] if len(head) == 2 else head[0] - 0x60):
            return None
        try:
            body["note"] = note.decode()
        except UnicodeDecodeError:
            return None
    body["event"] = trusted_cid(event)
    body["member"] = trusted_cid(member)
    body["verdict"] = "accept" if verdict == b"accept" else "reject"
    return body


# Minimal writers for fixed-shape blocks. Each emits the shortest form.


def head(major: int, n: int) -> bytes:
    """A CBOR initial byte (and argument) for major type `major` and count/value `n`."""
    if n < 24:
        return bytes((major << 5 | n,))
    if n < 0x100:
        return bytes((major << 5 | 24, n))
    if n < 0x10000:
        return bytes((major << 5 | 25,)) + n.to_bytes(2, "big")
    if n < 0x100000000:
        return bytes((major << 5 | 26,)) + n.to_bytes(4, "big")
    return bytes((major << 5 | 27,)) + n.to_bytes(8, "big")


_SMALL_UINTS: Final = tuple(bytes((n,)) for n in range(24))


def uint(n: int) -> bytes:
    return _SMALL_UINTS[n] if 0 <= n < 24 else head(0, n)


def byte_string(data: bytes) -> bytes:
    return head(2, len(data)) + data


def text_string(text: str) -> bytes:
    raw = text.encode("utf-8")
    return head(3, len(raw)) + raw


_LINK_36: Final = b"\xd8\x2a\x58\x25\x00"  # tag 42, bytes(37), multibase 0x00: a 36-byte CID


def link(cid: CID) -> bytes:
    if len(cid.raw) == 36:
        return _LINK_36 + cid.raw
    return b"\xd8\x2a" + byte_string(b"\0" + cid.raw)


NULL: Final = b"\xf6"


def _cause(exc: BaseException) -> str:
    # cbor2 wraps the hook's own error; its message is the useful one.
    inner = exc.__cause__ or exc.__context__
    return str(inner) if inner is not None else str(exc)
