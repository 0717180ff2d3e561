"""What a failure of the store's file means to its owner: `store_corrupt` or `disk_full`, with the file and what
to do, never a traceback (SPEC.md §10, README "Backup and restore").

SQLite reports a damaged file (a truncated one, flipped bytes in its pages) as SQLITE_CORRUPT or SQLITE_NOTADB,
a full disk as SQLITE_FULL, and a write the system refused (a full disk, `ulimit -f`) as an I/O error on
write; Python raises the same as OSError (ENOSPC, EFBIG, EDQUOT) outside SQLite. SQLite's transactions make
each of these all or nothing: a write that failed was not acknowledged, and nothing half-written stays.
"""

from __future__ import annotations

import errno
import sqlite3
from pathlib import Path
from typing import Final

from protocol import LocalError

_CORRUPT: Final = frozenset({"SQLITE_CORRUPT", "SQLITE_NOTADB", "SQLITE_IOERR_READ", "SQLITE_IOERR_SHORT_READ"})
_FULL_ERRNOS: Final = frozenset({errno.ENOSPC, errno.EFBIG, errno.EDQUOT})


def store_failure(exc: BaseException, path: Path | str) -> LocalError | None:
    """The coded error for a failure of the store at `path`, or None when `exc` is not one."""
    if isinstance(exc, sqlite3.Error):
        name = getattr(exc, "sqlite_errorname", "") or ""
        if name in _CORRUPT or name.startswith("SQLITE_CORRUPT"):
            return corrupt(path, str(exc))
        if name == "SQLITE_FULL" or name.startswith("SQLITE_IOERR"):
            return full(path, str(exc))
        if isinstance(exc, sqlite3.DatabaseError) and "malformed" in str(exc):
            return corrupt(path, str(exc))
        return None
    if isinstance(exc, OSError) and exc.errno in _FULL_ERRNOS:
        return full(path, exc.strerror or str(exc))
    return None


def corrupt(path: Path | str, detail: str) -> LocalError:
    return LocalError("store_corrupt", f"{path} is damaged ({detail}). Nothing was changed. Keep a copy of it, then "
                      "restore the store from a backup, or move it aside and let `tally run` fetch your ledgers "
                      "from your peers again (README: Backup and restore)")


def full(path: Path | str, detail: str) -> LocalError:
    return LocalError("disk_full", f"cannot write {path}: the disk is full or a file size limit was reached "
                      f"({detail}). Nothing was written; free some space and retry")
