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
"""

from __future__ import annotations

import copyreg
import dataclasses
import hashlib
import importlib
import io
import operator
import pickle
import pkgutil
import types
from collections.abc import Callable, Mapping
from decimal import Decimal
from fractions import Fraction
from importlib import metadata
from typing import Any, Final

import protocol
from node.store.ledgers import collector_paused
from node.store.rows import Coverage, Snapshot, fork_points
from protocol import CID
from protocol.fold import state_digest
from protocol.state import LedgerState

ENCODING: Final = "pickle-5/1"  # bump when what is pickled changes in a way the shape below does not show


def _slotted() -> dict[type, tuple[str, ...]]:
    """Protocol's slotted dataclasses and their fields: pickled as (class, values), without dataclasses'
    per-object field lookups (which cost more than the rest of pickling)."""
    found: dict[type, tuple[str, ...]] = {}
    for info in pkgutil.iter_modules(protocol.__path__, "protocol."):
        module = importlib.import_module(info.name)
        for value in vars(module).values():
            if (isinstance(value, type) and value.__module__ == info.name and dataclasses.is_dataclass(value)
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


def _new(cls: type, values: tuple[Any, ...]) -> Any:
    """A record from its field values (unpickling): only protocol's slotted records."""
    names = _SLOTTED.get(cls)
    if names is None or len(names) != len(values):
        raise pickle.UnpicklingError(f"not a protocol record: {cls!r}")
    record: Any = object.__new__(cls)
    for name, value in zip(names, values, strict=True):
        object.__setattr__(record, name, value)  # frozen records: set as their own __init__ does
    return record


def _proxy(mapping: dict[Any, Any]) -> types.MappingProxyType[Any, Any]:
    return types.MappingProxyType(mapping)


def _reducer(names: tuple[str, ...]) -> Callable[[Any], tuple[Any, ...]]:
    return lambda record: (_new, (type(record), tuple([getattr(record, n) for n in names])))


_REDUCERS: Final = {**copyreg.dispatch_table, types.MappingProxyType: lambda m: (_proxy, (dict(m),)),
                    **{cls: _reducer(names) for cls, names in _SLOTTED.items()}}
_ALLOWED: Final = {("decimal", "Decimal"): Decimal, ("fractions", "Fraction"): Fraction,
                   (__name__, "_new"): _new, (__name__, "_proxy"): _proxy,
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


def ids_fingerprint(status: Mapping[bytes, str]) -> bytes:
    """sha2-256 of the state's entry ids in id order."""
    return hashlib.sha256(b"".join(sorted(status))).digest()


def make(state: LedgerState, forks: Mapping[bytes, int]) -> Snapshot:
    """The snapshot of a state folded from every stored entry of its ledger and these fork points (the store
    fills in the rowids when it keeps it, checking the count against what it holds)."""
    ordered = dataclasses.replace(state, status=dict(sorted(state.status.items())))  # checked in order on reading
    out = io.BytesIO()
    _Pickler(out, protocol=5).dump(ordered)
    blob = out.getvalue()
    return Snapshot(FORMAT, Coverage(len(state.status), 0, fork_points(dict(forks))), ids_fingerprint(state.status),
                    state.digest, hashlib.sha256(blob).digest(), blob)


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


def _checked(snapshot: Snapshot, stored: Coverage, ledger: CID) -> tuple[LedgerState | None, str]:
    try:
        state = _Unpickler(io.BytesIO(snapshot.state)).load()
    except Exception as exc:  # any failure to decode is damage: the ledger is folded again
        return None, f"damaged: it does not decode ({type(exc).__name__}: {exc})"
    if not isinstance(state, LedgerState) or state.ledger != ledger:
        return None, "damaged: it is not a state of this ledger"
    ids = list(state.status)  # in id order, as `make` wrote them
    fingerprint = hashlib.sha256()
    for i in range(0, len(ids), 65_536):  # in slices: the ids of a million entries joined would take 36 MB
        fingerprint.update(b"".join(ids[i : i + 65_536]))
    if (len(ids) != stored.entries or not all(map(operator.lt, ids, ids[1:]))
            or fingerprint.digest() != snapshot.ids):
        return None, "damaged: its entries are not the ones it claims"
    if not state.digest == snapshot.digest == state_digest(state, in_order=True):
        return None, "damaged: its digest does not match its state"
    return state, "restored"
