"""Entries: a signed header block plus its payload block, both DAG-CBOR.

The header commits to the payload by CID and size, so a header verifies on its
own and a payload can later be erased without breaking the chain. An entry's
id is the CID of its header block (signature included).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import lru_cache
from hashlib import sha256
from typing import Any, Final

import cbor2

from . import dagcbor
from .cid import CID, CODEC_DAG_CBOR, DAG_CBOR_PREFIX
from .errors import InvalidData
from .identity import (
    PUBLIC_KEY_BYTES,
    SIGNATURE_BYTES,
    AgentId,
    SigningKey,
    did_from_public_key,
    verify_signature,
)

FORMAT_VERSION: Final = 1
#: Domain separation: these bytes are never a valid signature target anywhere else.
SIGNING_PREFIX: Final = b"tally-entry-v1\x00"
MAX_HEADER_BYTES: Final = 1024
MAX_PAYLOAD_BYTES: Final = 16 * 1024
MAX_SAFE_INT: Final = 2**53 - 1  # seq and ts stay exact in JSON and JavaScript
MAX_KIND_CHARS: Final = 64
GENESIS_KIND: Final = "ledger.genesis"
KIND_PATTERN: Final = re.compile(r"[a-z][a-z0-9]*(\.[a-zA-Z][a-zA-Z0-9_-]*)+")

# Header field names on the wire.
F_VERSION: Final = "v"
F_AUTHOR: Final = "author"
F_LEDGER: Final = "ledger"
F_SEQ: Final = "seq"
F_PREV: Final = "prev"
F_TS: Final = "ts"
F_KIND: Final = "kind"
F_PAYLOAD: Final = "payload"
F_SIZE: Final = "size"
F_SIG: Final = "sig"
# Pre-encoded keys for Header.encode.
_K_VERSION, _K_TS, _K_SEQ, _K_SIG, _K_KIND, _K_PREV, _K_SIZE, _K_AUTHOR, _K_LEDGER, _K_PAYLOAD = (
    dagcbor.text_string(k)
    for k in (F_VERSION, F_TS, F_SEQ, F_SIG, F_KIND, F_PREV, F_SIZE, F_AUTHOR, F_LEDGER, F_PAYLOAD)
)
_MAP_HEADS: Final = {n: dagcbor.head(5, n) for n in (8, 9, 10)}
_SIG_PREFIX: Final = dagcbor.head(2, SIGNATURE_BYTES)
_AUTHOR_PREFIX: Final = dagcbor.head(2, PUBLIC_KEY_BYTES)
_REQUIRED: Final = frozenset({F_VERSION, F_AUTHOR, F_SEQ, F_PREV, F_TS, F_KIND, F_PAYLOAD, F_SIZE, F_SIG})
_KNOWN: Final = _REQUIRED | {F_LEDGER}


@dataclass(frozen=True, slots=True)
class Header:
    """A decoded header. `ledger` is None only in a genesis entry."""

    author: bytes
    ledger: CID | None
    seq: int
    prev: CID | None
    ts: int
    kind: str
    payload: CID
    size: int
    sig: bytes = field(repr=False)
    version: int = FORMAT_VERSION

    def encode(self, *, signed: bool = True) -> bytes:
        """The header block (or, unsigned, the map that is signed), canonical by construction."""
        front, back = self._halves()
        if signed:
            return _MAP_HEADS[self._items() + 1] + front + _K_SIG + _SIG_PREFIX + self.sig + back
        return _MAP_HEADS[self._items()] + front + back

    def _items(self) -> int:
        return 8 if self.ledger is None else 9

    def _halves(self) -> tuple[bytes, bytes]:
        return _halves(self.version, self.ts, self.seq, self.kind, self.prev, self.size, self.author, self.ledger,
                       self.payload)

    def signing_bytes(self) -> bytes:
        return SIGNING_PREFIX + self.encode(signed=False)


def _halves(
    version: int, ts: int, seq: int, kind: str, prev: CID | None, size: int, author: bytes, ledger: CID | None,
    payload: CID,
) -> tuple[bytes, bytes]:
    """A header's encoded items before and after `sig`, without the map head.

    Keys in DAG-CBOR order (length first, then bytewise):
    v, ts, seq, | sig, | kind, prev, size, author, ledger, payload.
    """
    front = b"".join((_K_VERSION, dagcbor.uint(version), _K_TS, dagcbor.uint(ts), _K_SEQ, dagcbor.uint(seq)))
    back = b"".join((
        _kind_item(kind),
        _K_PREV, dagcbor.NULL if prev is None else dagcbor.link(prev),
        _K_SIZE, dagcbor.uint(size),
        _K_AUTHOR, _AUTHOR_PREFIX, author,
        b"" if ledger is None else _K_LEDGER + dagcbor.link(ledger),
        _K_PAYLOAD, dagcbor.link(payload),
    ))
    return front, back


@dataclass(frozen=True, slots=True)
class Entry:
    """A decoded, structurally valid entry. `payload_raw` is None once erased."""

    id: CID
    header: Header
    header_raw: bytes = field(repr=False)
    payload_raw: bytes | None = field(repr=False)
    body: dict[str, Any] | None = field(repr=False)

    @property
    def author(self) -> AgentId:
        return did_from_public_key(self.header.author)

    @property
    def seq(self) -> int:
        return self.header.seq

    @property
    def kind(self) -> str:
        return self.header.kind

    @property
    def is_genesis(self) -> bool:
        return self.header.ledger is None

    @property
    def ledger_id(self) -> CID:
        """The ledger this entry belongs to: a genesis entry founds its own."""
        return self.id if self.header.ledger is None else self.header.ledger


def encode_payload(body: dict[str, Any]) -> bytes:
    if not isinstance(body, dict):
        raise InvalidData("bad_payload", "an entry body must be a map")
    raw = dagcbor.encode(body)
    if len(raw) > MAX_PAYLOAD_BYTES:
        raise InvalidData("oversize", f"payload of {len(raw)} bytes exceeds {MAX_PAYLOAD_BYTES}")
    return raw


@dataclass(frozen=True, slots=True)
class Payload:
    """An entry's body as its payload block, encoded and named: what of an entry does not depend on its place in
    its chain, so a writer of many entries can make it ahead, on another thread than the one that signs."""

    body: dict[str, Any] = field(repr=False)
    raw: bytes = field(repr=False)
    cid: CID

    @classmethod
    def of(cls, body: dict[str, Any]) -> Payload:
        """`body`'s payload; raises like `create_entry` would for it."""
        raw = encode_payload(body)
        return cls(body, raw, CID.for_block(raw))


def create_entry(
    key: SigningKey,
    *,
    ledger: CID | None,
    seq: int,
    prev: CID | None,
    ts: int,
    kind: str,
    body: dict[str, Any],
) -> Entry:
    """Build and sign an entry. Raises like `decode_entry` would for the result."""
    return create_entry_with(key, ledger=ledger, seq=seq, prev=prev, ts=ts, kind=kind, payload=Payload.of(body))


def create_entry_with(
    key: SigningKey, *, ledger: CID | None, seq: int, prev: CID | None, ts: int, kind: str, payload: Payload
) -> Entry:
    """`create_entry` with its payload made already (`Payload.of`)."""
    payload_raw = payload.raw
    author = key.public_key
    size = len(payload_raw)
    _check_values(author, ledger, seq, prev, ts, kind, payload.cid, size)
    # Encode once: the signed bytes and the block share both halves around `sig`.
    front, back = _halves(FORMAT_VERSION, ts, seq, kind, prev, size, author, ledger, payload.cid)
    n = 8 if ledger is None else 9
    sig = key.sign(SIGNING_PREFIX + _MAP_HEADS[n] + front + back)
    header_raw = _MAP_HEADS[n + 1] + front + _K_SIG + _SIG_PREFIX + sig + back
    header = Header(author, ledger, seq, prev, ts, kind, payload.cid, size, sig)
    return Entry(CID.for_block(header_raw), header, header_raw, payload_raw, payload.body)


def decode_header(header_raw: bytes) -> Header:
    """Decode and check a header's structure (not its signature)."""
    fast = _canonical_header(header_raw)
    if fast is not None:
        _check_fields(fast)
        return fast
    header = _header_fields(header_raw)
    # Every field is typed and known, so the canonical encoding is ours to make:
    # any other byte sequence for the same header is refused.
    if header.encode() != header_raw:
        raise InvalidData(
            "bad_encoding", "header is not canonical DAG-CBOR (non-shortest form, key order or trailing bytes)"
        )
    return header


# The canonical header's layout (what `Header.encode` writes), as one pattern. Keys in DAG-CBOR
# order; a uint is any of its heads (the shortest form is checked after: `_uint`); links are
# 36-byte DAG-CBOR CIDs; kind is at most 64 bytes (MAX_KIND_CHARS of ASCII), matched lazily up to
# the next key and then checked against its length, so the pattern never backtracks far.
_UINT: Final = rb"([\x00-\x17]|\x18[\x18-\xff]|\x19..|\x1a....|\x1b........)"
_LINK: Final = rb"\xd8\x2a\x58\x25\x00(" + re.escape(DAG_CBOR_PREFIX) + rb".{32})"
_LAYOUT: Final = re.compile(
    rb"([\xa9\xaa])\x61v\x01\x62ts" + _UINT + rb"\x63seq" + _UINT + rb"\x63sig\x58\x40(.{64})"
    rb"\x64kind([\x60-\x77]|\x78[\x18-\x40])(.{0,64}?)\x64prev(?:\xf6|" + _LINK + rb")\x64size" + _UINT
    + rb"\x66author\x58\x20(.{32})(?:\x66ledger" + _LINK + rb")?\x67payload" + _LINK,
    re.S,
)
#: A uint item's value is its bytes read whole less this, by the item's length (its head's bits, shifted past the
#: value's bytes): one int.from_bytes, no slice nor branch (`decode_stored_entries`).
_UINT_BIAS: Final = (0, 0, 0x18 << 8, 0x19 << 16, 0, 0x1A << 32, 0, 0, 0, 0x1B << 64)
_UINT_MIN: Final = {0x18: 24, 0x19: 1 << 8, 0x1A: 1 << 16, 0x1B: 1 << 32}  # below these, a shorter head fits


def _uint(item: bytes) -> int:
    """A uint item matched by _UINT: its value, or -1 if a shorter head would hold it."""
    first = item[0]
    if first < 24:
        return first
    value = int.from_bytes(item[1:], "big")
    return value if value >= _UINT_MIN[first] else -1


def _canonical_header(raw: bytes) -> Header | None:
    """The header, read straight from bytes laid out exactly as `Header.encode` writes them.

    The canonical form is unique: keys in DAG-CBOR order, shortest heads, 36-byte links.
    Any byte off that layout returns None and the general decoder (which names the right
    error, or accepts a form this reader does not) takes over. Several times faster than
    a cbor2 decode plus a canonical re-encode, and it refuses nothing itself.
    """
    if len(raw) > MAX_HEADER_BYTES:
        return None
    m = _LAYOUT.fullmatch(raw)
    if m is None:
        return None
    head, ts_item, seq_item, sig, kind_head, kind, prev, size_item, author, ledger, payload = m.groups()
    if (head == b"\xaa") != (ledger is not None):
        return None
    ts, seq, size = _uint(ts_item), _uint(seq_item), _uint(size_item)
    if ts < 0 or seq < 0 or size < 0 or len(kind) != (kind_head[-1] if len(kind_head) == 2 else kind_head[0] - 0x60):
        return None
    text = _kind_text(kind)
    if text is None:
        return None
    # Made through the slots (as `_stored_header`): the links matched are 36-byte DAG-CBOR CIDs, the one form
    # CID's own check lets through at once; the caller checks the fields (`_check_fields`).
    header: Header = _new(Header)
    _H_AUTHOR(header, author)
    _H_LEDGER(header, None if ledger is None else _new_cid(ledger))
    _H_SEQ(header, seq)
    _H_PREV(header, None if prev is None else _new_cid(prev))
    _H_TS(header, ts)
    _H_KIND(header, text)
    _H_PAYLOAD(header, _new_cid(payload))
    _H_SIZE(header, size)
    _H_SIG(header, sig)
    _H_VERSION(header, FORMAT_VERSION)
    return header


def _header_fields(header_raw: bytes) -> Header:
    """The header's typed fields, checked; not yet that `header_raw` is their canonical encoding."""
    value = dagcbor.decode_unchecked(header_raw, max_bytes=MAX_HEADER_BYTES)
    if not isinstance(value, dict):
        raise InvalidData("bad_encoding", "a header must be a map")
    version = value.get(F_VERSION)
    if version != FORMAT_VERSION or type(version) is not int:
        raise InvalidData("unknown_version", f"header version {version!r:.20} is not {FORMAT_VERSION}")
    missing = _REQUIRED - value.keys()
    if missing:
        raise InvalidData("missing_field", f"header lacks {', '.join(sorted(missing))}")
    unknown = value.keys() - _KNOWN
    if unknown:
        raise InvalidData("unknown_field", f"header has unknown field(s) {', '.join(sorted(unknown))}")
    header = Header(
        author=_typed(value, F_AUTHOR, bytes),
        ledger=_typed(value, F_LEDGER, CID) if F_LEDGER in value else None,
        seq=_typed(value, F_SEQ, int),
        prev=None if value[F_PREV] is None else _typed(value, F_PREV, CID),
        ts=_typed(value, F_TS, int),
        kind=_typed(value, F_KIND, str),
        payload=_typed(value, F_PAYLOAD, CID),
        size=_typed(value, F_SIZE, int),
        sig=_typed(value, F_SIG, bytes),
        version=version,
    )
    _check_fields(header)
    if len(header.sig) != SIGNATURE_BYTES:
        raise InvalidData("bad_field", f"sig must be {SIGNATURE_BYTES} bytes")
    return header


def decode_entry(
    header_raw: bytes, payload_raw: bytes | None, *, check_signature: bool = True, check_payload_form: bool = True
) -> Entry:
    """Decode and fully check one entry from its exact bytes.

    `payload_raw` None means the payload is absent (erased); the header alone
    still verifies. With `check_signature=False` the caller must call
    `check_entry_signature` itself (e.g. in a worker thread); with
    `check_payload_form=False`, `payload_is_canonical_map` (then, where it is
    False, `decode_entry` with the check for the error), since the payload is
    only decoded, not checked for its canonical form.
    """
    header = decode_header(header_raw)
    body: dict[str, Any] | None = None
    if payload_raw is not None:
        if len(payload_raw) != header.size:
            raise InvalidData(
                "payload_mismatch", f"payload has {len(payload_raw)} bytes, header says {header.size}"
            )
        if DAG_CBOR_PREFIX + sha256(payload_raw).digest() != header.payload.raw:  # CID.for_block's bytes
            raise InvalidData("payload_mismatch", "payload does not hash to the header's payload CID")
        if check_payload_form:
            decoded = dagcbor.decode(payload_raw, max_bytes=MAX_PAYLOAD_BYTES)
        else:
            decoded = dagcbor.decode_unchecked(payload_raw, max_bytes=MAX_PAYLOAD_BYTES)
        if not isinstance(decoded, dict):
            raise InvalidData("bad_payload", "a payload must be a map")
        body = decoded
    entry = _new(Entry)  # through the slots: a frozen dataclass's __init__ costs twice as much
    _ENTRY_ID(entry, _new_cid(DAG_CBOR_PREFIX + sha256(header_raw).digest()))
    _ENTRY_HEADER(entry, header)
    _ENTRY_HEADER_RAW(entry, header_raw)
    _ENTRY_PAYLOAD_RAW(entry, payload_raw)
    _ENTRY_BODY(entry, body)
    if check_signature:
        check_entry_signature(entry)
    return entry


def payload_is_canonical_map(payload_raw: bytes) -> bool:
    """Whether a payload passes `decode_entry`'s check of its form: a canonical DAG-CBOR map."""
    try:
        return isinstance(dagcbor.decode(payload_raw, max_bytes=MAX_PAYLOAD_BYTES), dict)
    except InvalidData:
        return False


def decode_stored_entry(entry_id: bytes, header_raw: bytes, payload_raw: bytes | None) -> Entry:
    """Decode an entry read back from a store that checked it with `decode_entry` (and its
    signature) when it was stored under `entry_id`.

    The hashes prove these are the very bytes that passed: the header hashes to `entry_id`,
    the payload to the header's payload CID (else `store_corrupt`). So nothing that only bytes
    never seen before need is checked again (the canonical form, each field, the signature):
    the header is read off its canonical layout, the payload decoded by cbor2 alone, and the
    objects made without their constructors' checks. A store reads whole ledgers back this way.
    """
    if entry_id != DAG_CBOR_PREFIX + sha256(header_raw).digest():
        raise InvalidData("store_corrupt", f"stored entry {CID(entry_id)} does not hash to its id")
    entry_cid = _new_cid(entry_id)
    header = _stored_header(header_raw) or _header_fields(header_raw)
    body: dict[str, Any] | None = None
    if payload_raw is not None:
        if len(payload_raw) != header.size or DAG_CBOR_PREFIX + sha256(payload_raw).digest() != header.payload.raw:
            raise InvalidData("store_corrupt", f"stored payload of {entry_cid} differs from what its header commits to")
        try:
            decoded = dagcbor.decode_trusted(payload_raw)
        except Exception:  # bytes no check ever passed: the strict decoder names what is wrong
            decoded = dagcbor.decode_unchecked(payload_raw, max_bytes=MAX_PAYLOAD_BYTES)
        if type(decoded) is not dict:
            raise InvalidData("store_corrupt", f"stored payload of {entry_cid} is not a map")
        body = decoded
    entry = _new(Entry)
    _ENTRY_ID(entry, entry_cid)
    _ENTRY_HEADER(entry, header)
    _ENTRY_HEADER_RAW(entry, header_raw)
    _ENTRY_PAYLOAD_RAW(entry, payload_raw)
    _ENTRY_BODY(entry, body)
    return entry


def decode_stored_entries(
    rows: Iterable[tuple[bytes, bytes, bytes | None]],
) -> tuple[list[Entry], list[tuple[bytes, InvalidData]]]:
    """`decode_stored_entry` over many stored (id, header, payload) rows, in one pass: the entries, and each damaged
    row's id with its error (left out). What a store reads a whole ledger back with, for a fold.

    The same checks and the same entries, made inline: the id and the payload's digest compared with the hashes of
    the bytes (the payload's digest is the header's last 32 bytes: its CID ends the canonical layout), the header
    read off that layout (an endorsement's payload off its own: `dagcbor.trusted_endorsement`), the ledger's CID made
    once per batch. A row off that path (erased, or damaged) goes
    through `decode_stored_entry`, which names what is wrong.
    """
    entries: list[Entry] = []
    damaged: list[tuple[bytes, InvalidData]] = []
    append = entries.append
    match, digest, prefix, loads, link = _LAYOUT.fullmatch, sha256, DAG_CBOR_PREFIX, cbor2.loads, dagcbor.trusted_link
    endorsement, endorsement_ends = dagcbor.trusted_endorsement, dagcbor.ENDORSEMENT_ENDS
    new, from_bytes, set_raw, version, bias = _new, _from_bytes, _CID_RAW, FORMAT_VERSION, _UINT_BIAS
    kinds: dict[bytes, str] = {}
    ledgers: dict[bytes, CID] = {}
    for rid, header_raw, payload_raw in rows:
        m = match(header_raw)
        if (m is None or payload_raw is None or prefix + digest(header_raw).digest() != rid
                or not header_raw.endswith(digest(payload_raw).digest())):
            _decode_one(rid, header_raw, payload_raw, entries, damaged)
            continue
        _, ts, seq, sig, _, kind, prev, size, author, ledger, payload = m.groups()
        text = kinds.get(kind)
        if text is None:
            text = _stored_kind(kind)
            if text is not None:
                kinds[kind] = text
        body = endorsement(payload_raw) if payload_raw.endswith(endorsement_ends) else None
        if body is None:
            try:
                body = loads(payload_raw, tag_hook=link)
            except Exception:  # bytes no check ever passed: decode_stored_entry names what is wrong
                body = None
        if text is None or type(body) is not dict or len(payload_raw) != from_bytes(size, "big") - bias[len(size)]:
            _decode_one(rid, header_raw, payload_raw, entries, damaged)
            continue
        header: Header = new(Header)
        _H_AUTHOR(header, author)
        if ledger is None:
            _H_LEDGER(header, None)
        else:
            cid = ledgers.get(ledger)
            if cid is None:
                cid = ledgers[ledger] = _new_cid(ledger)
            _H_LEDGER(header, cid)
        _H_SEQ(header, from_bytes(seq, "big") - bias[len(seq)])
        if prev is None:
            _H_PREV(header, None)
        else:
            cid = new(CID)
            set_raw(cid, prev)
            _H_PREV(header, cid)
        _H_TS(header, from_bytes(ts, "big") - bias[len(ts)])
        _H_KIND(header, text)
        cid = new(CID)
        set_raw(cid, payload)
        _H_PAYLOAD(header, cid)
        _H_SIZE(header, len(payload_raw))
        _H_SIG(header, sig)
        _H_VERSION(header, version)
        entry: Entry = new(Entry)
        cid = new(CID)
        set_raw(cid, rid)
        _ENTRY_ID(entry, cid)
        _ENTRY_HEADER(entry, header)
        _ENTRY_HEADER_RAW(entry, header_raw)
        _ENTRY_PAYLOAD_RAW(entry, payload_raw)
        _ENTRY_BODY(entry, body)
        append(entry)
    return entries, damaged


def _decode_one(rid: bytes, header_raw: bytes, payload_raw: bytes | None, entries: list[Entry],
                damaged: list[tuple[bytes, InvalidData]]) -> None:
    try:
        entries.append(decode_stored_entry(rid, header_raw, payload_raw))
    except InvalidData as exc:
        damaged.append((bytes(rid), exc))


# Stored entries are made field by field through their slots: a frozen dataclass's __init__ sets each field with
# object.__setattr__, twice the cost, and a CID's checks its one stored form passes anyway. Only for values whose
# bytes hash to what was checked.
_new: Final = object.__new__
_from_bytes: Final = int.from_bytes
_CID_RAW: Final = vars(CID)["raw"].__set__
_ENTRY_ID, _ENTRY_HEADER, _ENTRY_HEADER_RAW, _ENTRY_PAYLOAD_RAW, _ENTRY_BODY = (
    vars(Entry)[name].__set__ for name in ("id", "header", "header_raw", "payload_raw", "body"))
_H_AUTHOR, _H_LEDGER, _H_SEQ, _H_PREV, _H_TS, _H_KIND, _H_PAYLOAD, _H_SIZE, _H_SIG, _H_VERSION = (
    vars(Header)[name].__set__
    for name in ("author", "ledger", "seq", "prev", "ts", "kind", "payload", "size", "sig", "version"))


def _new_cid(raw: bytes) -> CID:
    """A CID of the one form a stored header links (36 bytes, DAG-CBOR, sha2-256), made without its checks."""
    cid: CID = _new(CID)
    _CID_RAW(cid, raw)
    return cid


def _stored_header(raw: bytes) -> Header | None:
    """A stored header (it passed `decode_header`: canonical, every field checked), read off the canonical layout.
    None if it is laid out otherwise (it never is): the general decoder then reads it, checks included."""
    m = _LAYOUT.fullmatch(raw)
    if m is None:
        return None
    _, ts, seq, sig, _, kind, prev, size, author, ledger, payload = m.groups()
    text = _stored_kind(kind)
    if text is None:
        return None
    # Shortest heads, checked when stored: one byte is the value itself, else the bytes after the head.
    header: Header = _new(Header)
    _H_AUTHOR(header, author)
    _H_LEDGER(header, None if ledger is None else _new_cid(ledger))
    _H_SEQ(header, seq[0] if len(seq) == 1 else _from_bytes(seq[1:], "big"))
    _H_PREV(header, None if prev is None else _new_cid(prev))
    _H_TS(header, ts[0] if len(ts) == 1 else _from_bytes(ts[1:], "big"))
    _H_KIND(header, text)
    _H_PAYLOAD(header, _new_cid(payload))
    _H_SIZE(header, size[0] if len(size) == 1 else _from_bytes(size[1:], "big"))
    _H_SIG(header, sig)
    _H_VERSION(header, FORMAT_VERSION)
    return header


def check_entry_signature(entry: Entry) -> None:
    if not verify_signature(entry.header.author, entry.header.sig, signing_bytes_of(entry)):
        raise InvalidData("bad_signature", f"signature of {entry.id} does not verify")


def signing_bytes_of(entry: Entry) -> bytes:
    """The bytes the author signed: the prefix plus the header without sig.

    `header_raw` is canonical (checked on decode, made so on create), so the
    unsigned encoding is the same bytes with the sig item cut out and the map
    count one lower: slicing beats re-encoding on the ingest hot path.
    """
    h = entry.header
    raw = entry.header_raw
    start = _SIG_AT + _uint_size(h.version) + _uint_size(h.ts) + _uint_size(h.seq)
    return SIGNING_PREFIX + bytes((raw[0] - 1,)) + raw[1:start] + raw[start + _SIG_ITEM :]


#: Where `sig` starts in a canonical header, but for its three uints (v, ts, seq): the map head and their keys.
_SIG_AT: Final = 1 + len(_K_VERSION) + len(_K_TS) + len(_K_SEQ)
_SIG_ITEM: Final = len(_K_SIG) + len(_SIG_PREFIX) + SIGNATURE_BYTES


def _uint_size(n: int) -> int:
    """The length of `dagcbor.uint(n)`, without making it."""
    return 1 if n < 24 else 2 if n < 0x100 else 3 if n < 0x10000 else 5 if n < 0x100000000 else 9


def _typed(value: dict[str, Any], name: str, kind: type) -> Any:
    item = value[name]
    # bool is an int in Python but a distinct CBOR type.
    if not isinstance(item, kind) or (kind is int and isinstance(item, bool)):
        raise InvalidData("bad_field", f"header field {name} must be {kind.__name__}")
    return item


def _check_fields(h: Header) -> None:
    _check_values(h.author, h.ledger, h.seq, h.prev, h.ts, h.kind, h.payload, h.size)


def _check_values(
    author: bytes, ledger: CID | None, seq: int, prev: CID | None, ts: int, kind: str, payload: CID, size: int
) -> None:
    """A header's fields, checked (each entry made or read: kept cheap)."""
    if len(author) != PUBLIC_KEY_BYTES:
        raise InvalidData("bad_field", "author must be a 32-byte Ed25519 public key")
    if not 1 <= seq <= MAX_SAFE_INT:
        raise InvalidData("bad_field", f"seq {seq} is out of range")
    if not 0 <= ts <= MAX_SAFE_INT:
        raise InvalidData("bad_field", f"ts {ts} is out of range")
    if size < 0:
        raise InvalidData("bad_field", f"size {size} is negative")
    if size > MAX_PAYLOAD_BYTES:
        raise InvalidData("oversize", f"payload size {size} exceeds {MAX_PAYLOAD_BYTES}")
    if not _kind_ok(kind):
        raise InvalidData("bad_field", f"kind {kind!r:.80} is not namespaced text like 'vf.event'")
    # A codec below 0x80 is the CID's second byte (one varint byte), so this is `codec != CODEC_DAG_CBOR`.
    for name, link in ((F_PAYLOAD, payload), (F_LEDGER, ledger), (F_PREV, prev)):
        if link is not None and link.raw[1] != CODEC_DAG_CBOR:
            raise InvalidData("bad_field", f"{name} must link a DAG-CBOR block")
    if (seq == 1) != (prev is None):
        raise InvalidData("bad_prev", "prev must be null exactly at seq 1")
    if ledger is None:
        if kind != GENESIS_KIND or seq != 1:
            raise InvalidData("bad_genesis", "only a ledger.genesis entry at seq 1 may omit ledger")
    elif kind == GENESIS_KIND:
        raise InvalidData("bad_genesis", "a ledger.genesis entry must not name a ledger")


#: Kinds checked and encoded lately: a node writes and reads a few kinds over and over.
_KINDS_KEPT: Final = 512


@lru_cache(maxsize=_KINDS_KEPT)
def _kind_ok(kind: str) -> bool:
    return len(kind) <= MAX_KIND_CHARS and KIND_PATTERN.fullmatch(kind) is not None


@lru_cache(maxsize=_KINDS_KEPT)
def _kind_item(kind: str) -> bytes:
    """The header's `kind` key and value, encoded."""
    return _K_KIND + dagcbor.text_string(kind)


@lru_cache(maxsize=_KINDS_KEPT)
def _kind_text(raw: bytes) -> str | None:
    """A received header's kind as text, kept once per kind (None: not UTF-8; the general decoder names why)."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return None


@lru_cache(maxsize=_KINDS_KEPT)
def _stored_kind(raw: bytes) -> str | None:
    """A stored header's kind, kept once per kind, not once per entry (None: not ASCII, as no checked kind is)."""
    return raw.decode("ascii") if raw.isascii() else None
