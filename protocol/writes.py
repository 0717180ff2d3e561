"""What a local writer may ask for, checked the same way from the CLI, the API and the dashboard, and the
append it turns into (the store picks seq and prev)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

from protocol.names import normalize

from .cid import CID
from .entry import GENESIS_KIND
from .errors import InvalidData

MAX_LEDGER_NAME_CHARS: Final = 200
VISIBILITIES: Final = ("members", "public")  # members-only is the default


def genesis_body(name: str, visibility: str = "members") -> dict[str, Any]:
    """The body of a new ledger's genesis entry; `bad_body` for a name or visibility out of bounds."""
    if len(name) > MAX_LEDGER_NAME_CHARS:  # counted as given (as the API's schema counts), then trimmed
        raise InvalidData("bad_body", f"a ledger name has 1 to {MAX_LEDGER_NAME_CHARS} characters")
    name = normalize(name)
    if not name:
        raise InvalidData("bad_body", f"a ledger name has 1 to {MAX_LEDGER_NAME_CHARS} characters")
    if visibility not in VISIBILITIES:
        raise InvalidData("bad_body", f"visibility is one of {', '.join(VISIBILITIES)}")
    return {"name": name, "visibility": visibility}


def check_append_kind(kind: str) -> None:
    """A plain append may not found a ledger: that is `ledger create`'s job."""
    if kind == GENESIS_KIND:
        raise InvalidData("bad_genesis", "use `tally ledger create` to found a ledger")


@dataclass(frozen=True, slots=True)
class AppendRequest:
    """A local append: the store picks seq and prev, and keeps ts monotonic."""

    ledger: CID | None
    kind: str
    body: dict[str, Any]
    ts: int
