"""What a local writer may ask for, checked the same way from the CLI and the API."""

from __future__ import annotations

from typing import Any, Final

from protocol import GENESIS_KIND, InvalidData
from protocol.names import normalize

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
