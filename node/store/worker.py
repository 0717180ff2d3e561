"""Big ledgers' states, computed in a short-lived child process.

A ledger's state is a fold over all its entries at once (SPEC.md §16.2): for a
million entries that is ~40 s of CPU and ~2.4 GB at its peak here. Done in the
node's process it would stop the event loop (sync, the API, the dashboard) that
long, and most of that memory would stay with the process afterwards: the
state's small objects are spread over the heap, so neither pymalloc nor glibc
can give the pages back. In a child the node keeps serving, and every page the
fold used goes back to the OS when the child exits; only the state comes back,
pickled.

The child reads the ledger from the store's file itself (a read-only SQLite
connection: WAL readers see every committed entry) and runs the same code as
the node would (node.store.ledgers.state_of), so the state is the same.
"""

from __future__ import annotations

import asyncio
import copyreg
import io
import multiprocessing
import pickle
import sys
from collections.abc import Callable
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from pathlib import Path
from types import MappingProxyType
from typing import Any, Final

from node.store.ledgers import read_ledger_file, state_of
from protocol import CID, LocalError, TallyError
from protocol.state import LedgerState

#: From this many entries a ledger's state is computed in a child process (below it, the child's start-up,
#: ~0.1 s, costs more than it saves).
OFFLOAD_ENTRIES: Final = 20_000
_PRELOAD: Final = ["node.store.ledgers", "node.store.worker"]  # imported once by the fork server


def read_only(items: dict[Any, Any]) -> MappingProxyType[Any, Any]:
    """What a pickled read-only mapping loads as (pickle cannot name the mappingproxy type itself)."""
    return MappingProxyType(items)


def _reduce_mapping_proxy(
    proxy: MappingProxyType[Any, Any],
) -> tuple[Callable[[dict[Any, Any]], MappingProxyType[Any, Any]], tuple[dict[Any, Any]]]:
    return read_only, (dict(proxy),)


def _dumps(state: LedgerState) -> bytes:
    """The state pickled; rules hold read-only mappings, which pickle does not know (loads needs nothing)."""
    buffer = io.BytesIO()
    pickler = pickle.Pickler(buffer, protocol=pickle.HIGHEST_PROTOCOL)
    pickler.dispatch_table = {**copyreg.dispatch_table, MappingProxyType: _reduce_mapping_proxy}
    pickler.dump(state)
    return buffer.getvalue()


def _child(sender: Connection, store_path: str, ledger_raw: bytes) -> None:
    """In the child: read the ledger from the store's file, fold it, send the state (or the refusal) back."""
    try:
        stored = read_ledger_file(Path(store_path), CID(ledger_raw))
        answer: tuple[str, object] = ("state", None if stored is None else _dumps(state_of(stored)))
    except TallyError as exc:  # e.g. a genesis whose rules do not parse: the node answers with its code
        answer = ("refused", exc)
    sender.send_bytes(pickle.dumps(answer, protocol=pickle.HIGHEST_PROTOCOL))
    sender.close()


def _receive(receiver: Connection) -> bytes:
    try:
        return receiver.recv_bytes()
    except EOFError:
        raise LocalError("internal", "the process computing a ledger's state stopped without an answer") from None
    finally:
        receiver.close()


class StateWorker:
    """Computes each state in a fresh child process, whose memory goes back to the OS when it exits."""

    def __init__(self, store_path: Path) -> None:
        self._store_path = store_path
        self._running: set[BaseProcess] = set()

    @staticmethod
    def available() -> bool:
        """A fork server is needed (POSIX); elsewhere states are computed in the node's process."""
        return sys.platform != "win32" and "forkserver" in multiprocessing.get_all_start_methods()

    async def compute(self, ledger: CID) -> LedgerState | None:
        # A fork server: children are forked from a clean process started for the purpose, never from the
        # node's, whose threads (the store's writer, aiosqlite's) may hold locks at any moment.
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload(_PRELOAD)
        receiver, sender = context.Pipe(duplex=False)
        process = context.Process(target=_child, args=(sender, str(self._store_path), ledger.raw), daemon=True,
                                  name=f"tally-state-{str(ledger)[-8:]}")
        process.start()
        sender.close()  # the child holds the other end: its exit ends the pipe
        self._running.add(process)
        try:
            data = await asyncio.get_running_loop().run_in_executor(None, _receive, receiver)
        finally:
            self._running.discard(process)
            await asyncio.get_running_loop().run_in_executor(None, process.join)
        kind, value = pickle.loads(data)
        if kind == "refused":
            assert isinstance(value, TallyError)
            raise value
        if value is None:
            return None
        state = pickle.loads(value)
        assert isinstance(state, LedgerState)
        return state

    def close(self) -> None:
        """Stop any computation still running (the node is shutting down)."""
        for process in list(self._running):
            process.terminate()
