"""Ledger states kept in the store between runs, so that a restart does not fold a big ledger from scratch.

A snapshot is local: no peer ever sees one and the protocol does not change (SPEC.md is silent on it). It is
a ledger's `LedgerState`, pickled, in the store's `snapshots` table, with what it claims to be: the format it
was written in, the ledger's stored rows and fork points it was folded from (`Coverage`), a fingerprint of
its entry ids and its digest. It is used only after every check passes:

- stale: its format (the encoding, the Tally version, the shape of protocol's records) is not this one, or
  the ledger's stored rows or fork points are not the ones it covers (entries arrived after it was made);
- damaged: its bytes do not hash to its checksum, do not decode (only protocol's records may be named in
  them), or the state they decode to is of another ledger, holds another count or set of ids than it
  claims, or has another digest than the one recomputed from its fields.

A stale or damaged snapshot is not used: the ledger is folded from scratch (node/store/states.py) and a new
snapshot replaces it. Pickle runs no code here but the constructors of protocol's records (`_Unpickler`).

The state's entry id -> status map, which grows with the ledger, is kept as two bytes objects (`KeptStatus`: the
ids grouped by the digest's bucket and sorted in each, a byte per id naming its status), not as a dict: a
million-entry state reads back in the time of a copy and a few passes in C (the checks above among them), makes
no object per entry, and takes 37 MB instead of ~150 MB; saving it holds the interpreter lock for no longer than
one bucket's sort (~4,000 ids at a million entries).

The fold itself (protocol/fold.py's `LedgerFold`, what a new entry is folded into) is kept with the state,
so that the first entry to arrive after a restart costs what it touches, not a fold of the whole ledger. It is
pickled as it is (`encode_fold`: whatever its layout, nothing here names its fields) in parts of PART_BYTES,
each written in its own transaction as it is made, and named by the snapshot once all are written
(`Snapshot.fold`, `FoldRef`). It may be older than the state (saving a fold takes longer: a node that stops
saves its states only): it covers the ledger's rows up to a rowid, and the rows after it are folded in when it
is read back (node/store/states.py). `decode_fold` reads it back and uses it only if its format is this one
(FOLD_FORMAT: the state's format and a hash of protocol's source, so any change to protocol's code makes it
stale), its parts hash to their checksum, and the fold is of this ledger, with the count and state digest
saved with it. A ledger with key events is folded whole (node/store/states.py), so it keeps only its state
(`WHOLE`). Decoding a fold may name protocol's functions as well as its classes (`_FoldUnpickler`), never
anything else.
"""

from __future__ import annotations

import copyreg
import dataclasses
import hashlib
import importlib
import io
import pickle
import pkgutil
import threading
import types
from collections.abc import Callable, Iterator, Mapping
from decimal import Decimal
from fractions import Fraction
from importlib import metadata
from pathlib import Path
from typing import Any, Final

import protocol
from node.store.kept_status import Abandoned, KeptStatus, Sorting, kept_status
from node.store.ledgers import collector_paused
from node.store.rows import Coverage, FoldRef, Snapshot, fork_points
from protocol import CID
from protocol.fold import LedgerFold
from protocol.state import (
    LedgerState,
    digest_of,
)

ENCODING: Final = "pickle-5/4"  # bump when what is pickled changes in a way the shape below does not show (2: the
# digest of SPEC.md §16.7 version 2; 3: the status map as a KeptStatus; 4: the contributions as columns,
# PackedContributions, which answer the lookups pages make: a tuple of them read back would not)


def _slotted() -> dict[type, tuple[str, ...]]:
    """Protocol's slotted dataclasses and their fields: pickled as (class, values), without dataclasses'
    per-object field lookups (which cost more than the rest of pickling)."""
    found: dict[type, tuple[str, ...]] = {}
    for info in pkgutil.iter_modules(protocol.__path__, "protocol."):
        module = importlib.import_module(info.name)
        for value in vars(module).values():
            # A dataclass's own fields only (not a subclass's: protocol/fold.py's row nodes are never kept)
            if (isinstance(value, type) and value.__module__ == info.name and "__dataclass_fields__" in vars(value)
                    and "__slots__" in vars(value)):
                found[value] = tuple(f.name for f in dataclasses.fields(value))
    return found


_SLOTTED: Final = _slotted()


def _shape() -> str:
    """The Tally version and the fields of every protocol record: a snapshot of another shape is stale."""
    try:
        version = metadata.version("tally-node")
    except metadata.PackageNotFoundError:
        version = "0+unknown"
    fields = sorted(f"{cls.__module__}.{cls.__qualname__}({','.join(names)})" for cls, names in _SLOTTED.items())
    return f"{ENCODING} tally-{version} " + hashlib.sha256("\n".join(fields).encode()).hexdigest()[:16]


FORMAT: Final = _shape()


def _protocol_source() -> str:
    """sha2-256 of protocol's source files: a fold pickled by other code is stale (its layout may differ)."""
    digest = hashlib.sha256()
    for path in sorted(Path(protocol.__file__).parent.rglob("*.py")):
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


FOLD_FORMAT: Final = f"{FORMAT} fold-{_protocol_source()}"


WHOLE: Final = FoldRef("whole")  # a ledger folded whole (key events: node/store/states.py): no fold kept
PART_BYTES: Final = 4 << 20  # a fold's bytes are written this many at a time, one transaction each
#: A fold is unpickled from this many bytes at a time: the unpickler (C) holds the interpreter lock between reads, so
#: the event loop would wait for 4 MB of it (~0.1 s, more under load) each time it wanted the lock back.
READ_BYTES: Final = 64 << 10


class _Stoppable(io.BytesIO):
    """Bytes being pickled, given up (`Abandoned`) at the first write after `stop` is set."""

    def __init__(self, stop: threading.Event) -> None:
        super().__init__()
        self._stop = stop

    def write(self, data: Any) -> int:
        if self._stop.is_set():
            raise Abandoned
        return super().write(data)


def _maker(cls: type, names: tuple[str, ...]) -> Callable[[tuple[Any, ...]], Any]:
    """A function making a `cls` from its field values, each set through its slot (a frozen record's __setattr__
    refuses), one statement per field: twice as fast as a loop, and a fold read back makes hundreds of thousands
    of records. Only field names of protocol's records (identifiers) go into its source."""
    setters = ", ".join(f"s{i}=slots[{i}].__set__" for i in range(len(names)))
    body = "".join(f"    s{i}(r, v[{i}])\n" for i in range(len(names)))
    source = f"def make(v, new=object.__new__, cls=cls, {setters}):\n    r = new(cls)\n{body}    return r\n"
    scope: dict[str, Any] = {"cls": cls, "slots": [getattr(cls, n) for n in names]}
    exec(compile(source, f"<make {cls.__qualname__}>", "exec"), scope)
    make: Callable[[tuple[Any, ...]], Any] = scope["make"]
    return make


_MAKERS: Final = {cls: (len(names), _maker(cls, names)) for cls, names in _SLOTTED.items()}


def _new(cls: type, values: tuple[Any, ...]) -> Any:
    """A record from its field values (unpickling): only protocol's slotted records."""
    found = _MAKERS.get(cls)
    if found is None or found[0] != len(values):
        raise pickle.UnpicklingError(f"not a protocol record: {cls!r}")
    return found[1](values)


def _proxy(mapping: dict[Any, Any]) -> types.MappingProxyType[Any, Any]:
    return types.MappingProxyType(mapping)


_METHODS: Final = frozenset({"__getitem__", "__contains__", "get"})  # a fold may hold these of its own containers


def _method(container: dict[Any, Any] | list[Any] | set[Any], name: str) -> Any:
    """A container's method (unpickling a fold): only these of only those."""
    if type(container) not in (dict, list, set) or name not in _METHODS:
        raise pickle.UnpicklingError(f"not a container's method: {name}")
    return getattr(container, name)


def _builtin_method(method: Any) -> tuple[Any, ...]:
    owner = getattr(method, "__self__", None)
    if type(owner) not in (dict, list, set) or method.__name__ not in _METHODS:
        raise pickle.PicklingError(f"a snapshot cannot hold {method!r}")
    return (_method, (owner, method.__name__))


def _reducer(names: tuple[str, ...]) -> Callable[[Any], tuple[Any, ...]]:
    return lambda record: (_new, (type(record), tuple([getattr(record, n) for n in names])))


_REDUCERS: Final = {**copyreg.dispatch_table, types.MappingProxyType: lambda m: (_proxy, (dict(m),)),
                    types.BuiltinMethodType: _builtin_method,
                    **{cls: _reducer(names) for cls, names in _SLOTTED.items()}}
_ALLOWED: Final = {("decimal", "Decimal"): Decimal, ("fractions", "Fraction"): Fraction,
                   (__name__, "_new"): _new, (__name__, "_proxy"): _proxy,
                   (kept_status.__module__, "kept_status"): kept_status,
                   # what snapshots saved before KeptStatus had a module of its own named
                   (__name__, "_kept_status"): kept_status,
                   ("builtins", "frozenset"): frozenset, ("builtins", "set"): set}


class _Pickler(pickle.Pickler):
    dispatch_table = _REDUCERS


class _Unpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        allowed = _ALLOWED.get((module, name))
        if allowed is not None:
            return allowed
        if module.startswith("protocol."):
            found = getattr(importlib.import_module(module), name, None)
            if isinstance(found, type) and found.__module__ == module:  # a protocol class, never a function
                return found
        raise pickle.UnpicklingError(f"a snapshot names {module}.{name}, which is not a protocol record")


class _FoldUnpickler(pickle.Unpickler):
    """A fold names protocol's functions too (a sorted list's key, say), and the methods of its own containers."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) == (__name__, "_method"):
            return _method
        allowed = _ALLOWED.get((module, name))
        if allowed is not None:
            return allowed
        if module.startswith("protocol."):
            found = getattr(importlib.import_module(module), name, None)
            if isinstance(found, type | types.FunctionType) and found.__module__ == module:
                return found
        raise pickle.UnpicklingError(f"a fold names {module}.{name}, which is not protocol's")


def make(state: LedgerState, forks: Mapping[bytes, int], stop: threading.Event | None = None) -> Snapshot:
    """The snapshot of a state folded from every stored entry of its ledger and these fork points (the store
    fills in the rowids when it keeps it, checking the count against what it holds); `Abandoned` once `stop`
    is set (checked between buckets of the status, and at each write: pickle frames of ~64 KiB)."""
    return make_sorted(state, forks, stop)[0]


def make_sorted(state: LedgerState, forks: Mapping[bytes, int], stop: threading.Event | None = None,
                since: Sorting | None = None) -> tuple[Snapshot, Sorting | None]:
    """`make`, and where its kept status found each id in a fold's state (`KeptStatus.sorted_of`): given as `since`
    to the next snapshot of a later state of the same fold, only the ids added since are sorted in."""
    stop = stop or threading.Event()
    out = _Stoppable(stop)
    with collector_paused():  # a million pairs made: each full collection meanwhile would hold the lock for 0.5 s
        status, sorting = KeptStatus.sorted_of(state.status, stop, since)
        _Pickler(out, protocol=5).dump(dataclasses.replace(state, status=status))
    blob = out.getvalue()
    return Snapshot(FORMAT, Coverage(len(status), 0, fork_points(dict(forks))), hashlib.sha256(status.ids).digest(),
                    state.digest, hashlib.sha256(blob).digest(), blob), sorting


def restore(snapshot: Snapshot | None, stored: Coverage, ledger: CID) -> tuple[LedgerState | None, str]:
    """The state a snapshot holds, once checked against the ledger's stored rows (`stored`); else None and
    why not: "none", "stale" or "damaged: …"."""
    if snapshot is None:
        return None, "none"
    if snapshot.format != FORMAT or snapshot.coverage != stored:
        return None, "stale"
    if hashlib.sha256(snapshot.state).digest() != snapshot.checksum:
        return None, "damaged: its bytes do not match their checksum"
    with collector_paused():  # it would rescan the growing heap many times over, finding nothing to free
        return _checked(snapshot, stored, ledger)


def provisional(snapshot: Snapshot, stored: Coverage, ledger: CID) -> LedgerState | None:
    """The state of a snapshot that is stale only because another Tally version saved it (its encoding and every
    record's shape are this one's), checked as `restore` checks a current one, or None. Not the ledger's state
    (another version may compute it otherwise): the last one the node had, for a write while the ledger is folded
    again (node/store/states.py `for_write`)."""
    encoding, _, shape = snapshot.format.split(" ", 2) if snapshot.format.count(" ") == 2 else ("", "", "")
    mine, _, my_shape = FORMAT.split(" ", 2)
    if (encoding, shape) != (mine, my_shape) or snapshot.format == FORMAT or snapshot.coverage != stored:
        return None
    if hashlib.sha256(snapshot.state).digest() != snapshot.checksum:
        return None
    with collector_paused():
        return _checked(snapshot, stored, ledger)[0]


def _checked(snapshot: Snapshot, stored: Coverage, ledger: CID) -> tuple[LedgerState | None, str]:
    try:
        state = _Unpickler(io.BytesIO(snapshot.state)).load()
    except Exception as exc:  # any failure to decode is damage: the ledger is folded again
        return None, f"damaged: it does not decode ({type(exc).__name__}: {exc})"
    if not isinstance(state, LedgerState) or state.ledger != ledger:
        return None, "damaged: it is not a state of this ledger"
    status = state.status
    if not isinstance(status, KeptStatus):
        return None, "damaged: its entries are not kept as they are written"
    digests = status.bucket_digests()
    if digests is None or len(status) != stored.entries or hashlib.sha256(status.ids).digest() != snapshot.ids:
        return None, "damaged: its entries are not the ones it claims"
    if not state.digest == snapshot.digest == digest_of(state, digests):
        return None, "damaged: its digest does not match its state"
    return state, "restored"


class _PartWriter(io.RawIOBase):
    """Where a fold is pickled to: each PART_BYTES handed to `put` as they are made, and `stop` checked at each
    write (a write every 64 KiB or so: pickle frames), so giving up takes a few milliseconds."""

    def __init__(self, put: Callable[[int, bytes], None], stop: threading.Event) -> None:
        self._put, self._stop = put, stop
        self._buffer = bytearray()
        self.parts = 0
        self.checksum = hashlib.sha256()

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        if self._stop.is_set():
            raise Abandoned
        self._buffer += data
        if len(self._buffer) >= PART_BYTES:
            self.flush_part()
        return len(data)

    def flush_part(self) -> None:
        if self._buffer:
            part = bytes(self._buffer)
            self._buffer.clear()
            self.checksum.update(part)
            self._put(self.parts, part)
            self.parts += 1


def encode_fold(fold: LedgerFold, digest: bytes, token: bytes, put: Callable[[int, bytes], None],
                stop: threading.Event) -> FoldRef:
    """Pickle `fold` (whose state has `digest`), handing its parts to `put(index, bytes)` as they are made;
    `Abandoned` once `stop` is set. The fold must not change meanwhile (the caller sets `stop` first and waits
    for this to return)."""
    out = _PartWriter(put, stop)
    with collector_paused():
        _Pickler(out, protocol=5).dump(fold)
    out.flush_part()
    return FoldRef(FOLD_FORMAT, token, out.parts, out.checksum.digest(), len(fold), digest)


class _PartReader(io.RawIOBase):
    """The bytes of a fold's parts, fetched one at a time as the unpickler reads them."""

    def __init__(self, parts: Iterator[bytes | None]) -> None:
        self._parts = parts
        self._buffer = memoryview(b"")
        self.checksum = hashlib.sha256()
        self.missing = False

    def readable(self) -> bool:
        return True

    def _more(self) -> bool:
        part = next(self._parts, b"")
        if not part:  # the end, or a part not stored (None)
            self.missing = self.missing or part is None
            return False
        self.checksum.update(part)
        self._buffer = memoryview(part)
        return True

    def readinto(self, target: Any) -> int:
        if not self._buffer and not self._more():
            return 0
        n = min(len(target), len(self._buffer))
        target[:n] = self._buffer[:n]
        self._buffer = self._buffer[n:]
        return n

    def rest(self) -> int:
        """Bytes left unread, the parts not read yet included (reading them: they count in the checksum)."""
        left = len(self._buffer)
        while self._more():
            left += len(self._buffer)
        self._buffer = memoryview(b"")
        return left


def decode_fold(ref: FoldRef, parts: Iterator[bytes | None], ledger: CID) -> tuple[LedgerFold | None, str]:
    """The fold a snapshot keeps, read from its parts (`None` for one not stored) and checked against what the
    snapshot says of it (its ledger, count and digest): else None and why not: "stale" or "damaged: …"."""
    if ref.format != FOLD_FORMAT:
        return None, "stale"
    reader = _PartReader(parts)
    try:
        with collector_paused():
            fold = _FoldUnpickler(io.BufferedReader(reader, READ_BYTES)).load()
    except Exception as exc:  # any failure to decode is damage: the ledger is folded again
        if reader.missing:
            return None, "damaged: parts of it are missing"
        return None, f"damaged: it does not decode ({type(exc).__name__}: {exc})"
    left = reader.rest()
    if reader.missing:
        return None, "damaged: parts of it are missing"
    if left or reader.checksum.digest() != ref.checksum:
        return None, "damaged: its bytes do not match their checksum"
    if not isinstance(fold, LedgerFold) or fold.ledger != ledger or len(fold) != ref.entries:
        return None, "damaged: it is not a fold of this ledger's entries"
    try:
        folded = fold.state()
    except Exception as exc:  # a fold that cannot give its state is damaged
        return None, f"damaged: it gives no state ({type(exc).__name__}: {exc})"
    if folded.digest != ref.digest:
        return None, "damaged: its state's digest is not the one saved"
    return fold, "restored"
