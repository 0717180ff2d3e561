"""The sync protocol: messages peers exchange over a link, and the pure parts of
deciding what to send. No I/O: node/sync/replication.py drives it.

Every message is one DAG-CBOR map with a text key `t` naming its type, sent as
the plaintext of one encrypted frame (SPEC §11). SPEC §13 specifies the protocol.
Per ledger both peers may see:

    sub    "I replicate these ledgers; here is my frontier digest of each"
    front  my frontier of one ledger (when the digests differ)
    want   "send me this chain from seq N, at most M entries"
    ents   consecutive entries of one chain (an answer to want, or a live push)
    sent   the answer to a want is complete: its last seq sent (start - 1 if none)
    level  "I hold everything you advertised for this ledger"
    fork   a fork proof, gossiped
    own    "what are the heads of my own chains?" and its answer (safe restore)
    err    why the sender is about to close the link
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import pairwise
from typing import Any, Final

from . import dagcbor
from .cid import CID
from .entry import MAX_HEADER_BYTES, MAX_PAYLOAD_BYTES, Entry
from .errors import InvalidData
from .handshake import MAX_PLAINTEXT_BYTES
from .identity import PUBLIC_KEY_BYTES

SYNC_VERSION: Final = 1
MAX_MESSAGE_BYTES: Final = MAX_PLAINTEXT_BYTES  # one message is one frame
MAX_LEDGERS_PER_SUB: Final = 1024
MAX_HEADS_PER_FRONT: Final = 600  # ~82 bytes each: a front stays well inside one frame
WANT_MAX: Final = 1024  # entries one want may ask for
MAX_WANTS_IN_FLIGHT: Final = 16  # a peer's unanswered wants we serve at once
ENTRY_OVERHEAD_BYTES: Final = 8  # array head + two byte-string heads, at most
MAX_CODE_CHARS: Final = 64
MAX_TEXT_CHARS: Final = 1024

Head = tuple[int, CID]  # (seq, id) of a chain's latest entry


def _err(message: str) -> InvalidData:
    return InvalidData("bad_message", message)


def _link(value: object, name: str) -> CID:
    if not isinstance(value, CID):
        raise _err(f"{name} must be a link")
    return value


def _author(value: object) -> bytes:
    if not isinstance(value, bytes) or len(value) != PUBLIC_KEY_BYTES:
        raise _err("author must be a 32-byte public key")
    return value


def _count(value: object, name: str, low: int = 0, high: int = 2**53 - 1) -> int:
    if type(value) is not int or not low <= value <= high:
        raise _err(f"{name} must be an integer in {low}..{high}")
    return value


def _text(value: object, name: str, limit: int) -> str:
    if not isinstance(value, str) or len(value) > limit:
        raise _err(f"{name} must be text of at most {limit} characters")
    return value


def _list(value: object, name: str, limit: int) -> list[Any]:
    if not isinstance(value, list) or len(value) > limit:
        raise _err(f"{name} must be a list of at most {limit} items")
    return value


# ---- messages ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Sub:
    """The ledgers the sender replicates, each with the digest of its frontier there."""

    ledgers: tuple[tuple[CID, bytes], ...]
    T = "sub"

    def fields(self) -> dict[str, Any]:
        return {"ledgers": [[ledger, digest] for ledger, digest in self.ledgers]}

    @classmethod
    def parse(cls, m: dict[str, Any]) -> Sub:
        items = []
        for item in _list(m["ledgers"], "ledgers", MAX_LEDGERS_PER_SUB):
            if not isinstance(item, list) or len(item) != 2:
                raise _err("each sub item is [ledger, digest]")
            digest = item[1]
            if not isinstance(digest, bytes) or len(digest) != 32:
                raise _err("a frontier digest has 32 bytes")
            items.append((_link(item[0], "ledger"), digest))
        return cls(tuple(items))


@dataclass(frozen=True, slots=True)
class Front:
    """Part of the sender's frontier of one ledger; `done` marks the last part."""

    ledger: CID
    heads: tuple[tuple[bytes, int, CID], ...]  # (author, seq, id), sorted by author
    done: bool = True
    T = "front"

    def fields(self) -> dict[str, Any]:
        return {"ledger": self.ledger, "heads": [list(h) for h in self.heads], "done": self.done}

    @classmethod
    def parse(cls, m: dict[str, Any]) -> Front:
        heads = []
        for item in _list(m["heads"], "heads", MAX_HEADS_PER_FRONT):
            if not isinstance(item, list) or len(item) != 3:
                raise _err("each head is [author, seq, id]")
            heads.append((_author(item[0]), _count(item[1], "seq", 1), _link(item[2], "id")))
        if not isinstance(m["done"], bool):
            raise _err("done must be a boolean")
        return cls(_link(m["ledger"], "ledger"), tuple(heads), m["done"])


@dataclass(frozen=True, slots=True)
class Want:
    """Ask for a chain's entries from seq `start` on, at most `limit` of them."""

    ledger: CID
    author: bytes
    start: int
    limit: int
    T = "want"

    def fields(self) -> dict[str, Any]:
        return {"ledger": self.ledger, "author": self.author, "from": self.start, "limit": self.limit}

    @classmethod
    def parse(cls, m: dict[str, Any]) -> Want:
        return cls(
            _link(m["ledger"], "ledger"), _author(m["author"]), _count(m["from"], "from", 1),
            _count(m["limit"], "limit", 1, WANT_MAX),
        )


@dataclass(frozen=True, slots=True)
class Ents:
    """Consecutive entries of one chain, as (header bytes, payload bytes or None)."""

    ledger: CID
    author: bytes
    entries: tuple[tuple[bytes, bytes | None], ...]
    T = "ents"

    def fields(self) -> dict[str, Any]:
        return {"ledger": self.ledger, "author": self.author, "entries": [list(e) for e in self.entries]}

    @classmethod
    def parse(cls, m: dict[str, Any]) -> Ents:
        entries = []
        for item in _list(m["entries"], "entries", WANT_MAX):
            if not isinstance(item, list) or len(item) != 2:
                raise _err("each entry is [header, payload]")
            header, payload = item
            if not isinstance(header, bytes) or len(header) > MAX_HEADER_BYTES:
                raise _err("an entry header is bytes within its limit")
            if payload is not None and (not isinstance(payload, bytes) or len(payload) > MAX_PAYLOAD_BYTES):
                raise _err("an entry payload is bytes within its limit, or null")
            entries.append((header, payload))
        if not entries:
            raise _err("ents carries at least one entry")
        return cls(_link(m["ledger"], "ledger"), _author(m["author"]), tuple(entries))


@dataclass(frozen=True, slots=True)
class Sent:
    """Ends the answer to a want: the last seq sent for that chain (start - 1 when none was)."""

    ledger: CID
    author: bytes
    upto: int
    T = "sent"

    def fields(self) -> dict[str, Any]:
        return {"ledger": self.ledger, "author": self.author, "upto": self.upto}

    @classmethod
    def parse(cls, m: dict[str, Any]) -> Sent:
        return cls(_link(m["ledger"], "ledger"), _author(m["author"]), _count(m["upto"], "upto"))


@dataclass(frozen=True, slots=True)
class Level:
    """The sender holds everything the receiver advertised for `ledger`; `digest` is its frontier's now."""

    ledger: CID
    digest: bytes
    T = "level"

    def fields(self) -> dict[str, Any]:
        return {"ledger": self.ledger, "digest": self.digest}

    @classmethod
    def parse(cls, m: dict[str, Any]) -> Level:
        digest = m["digest"]
        if not isinstance(digest, bytes) or len(digest) != 32:
            raise _err("a frontier digest has 32 bytes")
        return cls(_link(m["ledger"], "ledger"), digest)


@dataclass(frozen=True, slots=True)
class Fork:
    proof: bytes
    T = "fork"

    def fields(self) -> dict[str, Any]:
        return {"proof": self.proof}

    @classmethod
    def parse(cls, m: dict[str, Any]) -> Fork:
        if not isinstance(m["proof"], bytes):
            raise _err("proof must be bytes")
        return cls(m["proof"])


@dataclass(frozen=True, slots=True)
class Own:
    """Without heads: a question about the sender's own chains. With heads: the answer,
    as (ledger, seq, id) of the asker's chain in every ledger the answerer holds."""

    heads: tuple[tuple[CID, int, CID], ...] | None = None
    T = "own"

    def fields(self) -> dict[str, Any]:
        return {"heads": None if self.heads is None else [list(h) for h in self.heads]}

    @classmethod
    def parse(cls, m: dict[str, Any]) -> Own:
        if m["heads"] is None:
            return cls(None)
        heads = []
        for item in _list(m["heads"], "heads", MAX_LEDGERS_PER_SUB):
            if not isinstance(item, list) or len(item) != 3:
                raise _err("each own head is [ledger, seq, id]")
            heads.append((_link(item[0], "ledger"), _count(item[1], "seq", 1), _link(item[2], "id")))
        return cls(tuple(heads))


@dataclass(frozen=True, slots=True)
class Err:
    code: str
    message: str
    T = "err"

    def fields(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message}

    @classmethod
    def parse(cls, m: dict[str, Any]) -> Err:
        return cls(_text(m["code"], "code", MAX_CODE_CHARS), _text(m["message"], "message", MAX_TEXT_CHARS))


Message = Sub | Front | Want | Ents | Sent | Level | Fork | Own | Err
MESSAGE_TYPES: Final[dict[str, type[Message]]] = {
    cls.T: cls for cls in (Sub, Front, Want, Ents, Sent, Level, Fork, Own, Err)
}
_KEYS: Final = {
    "sub": {"ledgers"},
    "front": {"ledger", "heads", "done"},
    "want": {"ledger", "author", "from", "limit"},
    "ents": {"ledger", "author", "entries"},
    "sent": {"ledger", "author", "upto"},
    "level": {"ledger", "digest"},
    "fork": {"proof"},
    "own": {"heads"},
    "err": {"code", "message"},
}


def encode_message(message: Message) -> bytes:
    data = dagcbor.encode({"t": message.T, **message.fields()})
    if len(data) > MAX_MESSAGE_BYTES:
        raise InvalidData("oversize", f"{message.T} message of {len(data)} bytes exceeds {MAX_MESSAGE_BYTES}")
    return data


def decode_message(data: bytes) -> Message:
    """Decode one message strictly: canonical DAG-CBOR, a known type, exactly its keys."""
    value = dagcbor.decode(data, max_bytes=MAX_MESSAGE_BYTES)
    if not isinstance(value, dict) or not isinstance(value.get("t"), str):
        raise _err("a message is a map with a text key t")
    kind = value.pop("t")
    cls = MESSAGE_TYPES.get(kind)
    if cls is None:
        raise InvalidData("unknown_message", f"unknown message type {kind!r:.40}")
    if set(value) != _KEYS[kind]:
        raise _err(f"{kind} takes exactly the keys {', '.join(sorted(_KEYS[kind]))}")
    return cls.parse(value)


# ---- frontiers ---------------------------------------------------------------


def frontier_digest(heads: Mapping[bytes, Head]) -> bytes:
    """sha2-256 of the DAG-CBOR list [[author, seq, id], …] sorted by author.

    Equal digests mean equal frontiers, so peers already level exchange one
    short `sub` each and nothing else.
    """
    items = [[author, seq, cid] for author, (seq, cid) in sorted(heads.items())]
    return hashlib.sha256(dagcbor.encode(items)).digest()


def front_messages(ledger: CID, heads: Mapping[bytes, Head]) -> list[Front]:
    """A frontier as one or more `front` messages, the last with done=True."""
    items = [(author, seq, cid) for author, (seq, cid) in sorted(heads.items())]
    parts = [items[i : i + MAX_HEADS_PER_FRONT] for i in range(0, len(items), MAX_HEADS_PER_FRONT)] or [[]]
    return [Front(ledger, tuple(part), i == len(parts) - 1) for i, part in enumerate(parts)]


@dataclass(frozen=True, slots=True)
class Plan:
    """What to ask a peer for after comparing frontiers of one ledger."""

    wants: tuple[Want, ...] = ()
    #: (author, their seq, their id) where our chains may have forked: ask for that one
    #: entry (want limit 1) when our entry at that seq has another id.
    suspects: tuple[tuple[bytes, int, CID], ...] = ()
    behind: int = 0  # entries they have that we lack


def plan(ledger: CID, mine: Mapping[bytes, Head], theirs: Mapping[bytes, Head]) -> Plan:
    """Compare our frontier of `ledger` with a peer's and say what to fetch."""
    wants = []
    suspects = []
    behind = 0
    for author, (their_seq, their_id) in sorted(theirs.items()):
        my_seq, my_id = mine.get(author, (0, None))
        if their_seq > my_seq:
            behind += their_seq - my_seq
            wants.append(Want(ledger, author, my_seq + 1, min(WANT_MAX, their_seq - my_seq)))
        elif their_seq == my_seq and their_id != my_id:
            suspects.append((author, their_seq, their_id))
        elif their_seq < my_seq:
            suspects.append((author, their_seq, their_id))  # the caller checks our id at that seq
    return Plan(tuple(wants), tuple(suspects), behind)


def ents_messages(
    ledger: CID, author: bytes, entries: Iterable[tuple[bytes, bytes | None]]
) -> list[Ents]:
    """Split consecutive entries of one chain into messages that each fit one frame."""
    budget = MAX_MESSAGE_BYTES - 128  # map keys, ledger link, author, list head
    messages: list[Ents] = []
    batch: list[tuple[bytes, bytes | None]] = []
    size = 0
    for header, payload in entries:
        cost = len(header) + len(payload or b"") + ENTRY_OVERHEAD_BYTES
        if batch and (size + cost > budget or len(batch) >= WANT_MAX):
            messages.append(Ents(ledger, author, tuple(batch)))
            batch, size = [], 0
        batch.append((header, payload))
        size += cost
    if batch:
        messages.append(Ents(ledger, author, tuple(batch)))
    return messages


# ---- limits --------------------------------------------------------------------


@dataclass(slots=True)
class RateLimit:
    """A token bucket: `rate` requests per second, bursts of `burst`. Time is handed in."""

    rate: float
    burst: float
    tokens: float = field(init=False)
    last: float | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        self.tokens = self.burst

    def allow(self, now: float, cost: float = 1.0) -> bool:
        if self.last is not None:
            self.tokens = min(self.burst, self.tokens + (now - self.last) * self.rate)
        self.last = now
        if self.tokens < cost:
            return False
        self.tokens -= cost
        return True


def check_ents(message: Ents, entries: Sequence[Entry]) -> None:
    """The decoded entries of an `ents` message are consecutive entries of the chain it names."""
    for entry in entries:
        if entry.header.author != message.author or entry.ledger_id != message.ledger:
            raise InvalidData("protocol_error", "ents carries an entry of another chain than it names")
    for before, after in pairwise(entries):
        if after.seq != before.seq + 1:
            raise InvalidData("protocol_error", "ents entries are not consecutive")
