"""The threads that save and read back ledger snapshots (node/store/keeping.py): each one a daemon thread that can
be told to stop, awaitable from the event loop, and reaching the store through the loop while it runs."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import ctypes
import ctypes.util
import sys
import threading
import time
from collections.abc import Callable
from typing import Any, Final, TypeVar

from node.store.kept_status import Abandoned


def _malloc_trim() -> Callable[[int], int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        trim: Callable[[int], int] = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
    except (OSError, AttributeError):  # not glibc (musl has no malloc_trim)
        return None
    return trim


_TRIM: Final = _malloc_trim()
_POLL_S: Final = 0.2  # how often a saving or reading thread waiting on the event loop looks at its stop flag
_T = TypeVar("_T")


class Worker:
    """One daemon thread running `func`, awaitable, that can be told to stop (`stop`: the function looks at it).

    A daemon thread, not the loop's executor: a save given up at stop must not hold the process (the executor's
    threads are joined at exit)."""

    def __init__(self, func: Callable[[threading.Event], _T]) -> None:
        self.stop = threading.Event()
        loop = asyncio.get_running_loop()
        self.done: asyncio.Future[Any] = loop.create_future()

        def run() -> None:
            try:
                result: Any = func(self.stop)
                outcome: Callable[[Any], None] = self.done.set_result
            except BaseException as exc:  # handed to the awaiting task, which logs it
                result, outcome = exc, self.done.set_exception
            with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits any more
                loop.call_soon_threadsafe(lambda: None if self.done.done() else outcome(result))

        threading.Thread(target=run, name="ledger-snapshot", daemon=True).start()


def timed(func: Callable[..., _T], *args: Any) -> tuple[_T, float]:
    """`func(*args)` and the seconds it took."""
    started = time.monotonic()
    return func(*args), time.monotonic() - started


def on_loop(loop: asyncio.AbstractEventLoop, stop: threading.Event, make: Callable[[], Any]) -> Any:
    """Run the coroutine `make()` on `loop` from a worker thread and wait for it, looking at `stop` meanwhile."""
    return wait(asyncio.run_coroutine_threadsafe(make(), loop), stop)


def wait(future: concurrent.futures.Future[_T], stop: threading.Event) -> _T:
    """What `future` (run on the loop) gives, waited for in a worker thread looking at `stop` meanwhile."""
    while True:
        try:
            return future.result(_POLL_S)
        except concurrent.futures.TimeoutError:
            if stop.is_set():
                future.cancel()
                raise Abandoned from None


def give_back() -> None:
    """Hand the memory the C allocator keeps free back to the system (glibc's `malloc_trim`; elsewhere nothing):
    a fold read back or made leaves tens of MB free in its heap (the parts read, the rows decoded), which the
    process's RSS would keep. In a worker thread: it walks the heap (ctypes lets go of the interpreter lock)."""
    if _TRIM is not None:
        _TRIM(0)
