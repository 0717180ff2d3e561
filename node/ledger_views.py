"""How a ledger's state and contributions look in `--json`, CSV and the API, and which rows a
history query selects (the same for `tally history` and `GET …/history`)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, tzinfo
from functools import cache
from typing import Any, Final, Protocol
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from node.governance_views import governance_json
from node.views import fork_row
from protocol import ForkProof, InvalidData, LocalError, to_json_value
from protocol.amounts import format_amount
from protocol.contributions import Matching, event_order
from protocol.contributions import event_ts_time as event_ts_time  # where node/web/pages.py reads it
from protocol.decimals import format_decimal
from protocol.rates import ACTIONS
from protocol.rules import Rules
from protocol.state import CONFLICTING, ERASED, FINAL, PENDING, REJECTED, VALID, Contribution, Erased, LedgerState
from protocol.valueflows import Event, parse_time

HISTORY_STATUSES: Final = (PENDING, FINAL, REJECTED, ERASED)

HISTORY_COLUMNS = (
    "id", "author", "seq", "ts", "action", "provider", "receiver", "quantity", "unit", "classification",
    "at", "from", "to", "note", "claim", "status", "accepts", "rejects", "corrects", "corrected_by",
)


def contribution_row(c: Contribution) -> dict[str, Any]:
    e = c.event
    return {
        "id": str(c.id),
        "author": c.author,
        "seq": c.seq,
        "ts": c.ts,
        "action": e.action,
        "provider": e.provider,
        "receiver": e.receiver,
        "quantity": format_decimal(e.quantity.value),
        "unit": e.quantity.unit,
        "classification": e.classification,
        "at": e.point,
        "from": e.beginning,
        "to": e.end,
        "note": e.note,
        "claim": format_decimal(c.claim),
        "status": c.status,
        "accepts": list(c.accepts),
        "rejects": list(c.rejects),
        "corrects": None if e.corrects is None else str(e.corrects),
        "corrected_by": None if c.corrected_by is None else str(c.corrected_by),
    }


def erased_row(e: Erased) -> dict[str, Any]:
    """An erased contribution in a history (SPEC.md §20): who wrote it and when, nothing of what it said."""
    row: dict[str, Any] = dict.fromkeys(HISTORY_COLUMNS)
    row.update({"id": str(e.id), "author": e.agent, "seq": e.seq, "ts": e.ts, "claim": "0", "status": ERASED,
                "accepts": [], "rejects": [], "erased_by": str(e.by)})
    return row


def event_time(c: Contribution) -> float:
    """Seconds since the epoch of a contribution: hasPointInTime, else hasBeginning, else the entry's ts."""
    return c.event.at if c.event.at is not None else c.ts / 1000



@cache
def _zone(name: str) -> tzinfo | None:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):  # not in this machine's tz database
        return None


def ledger_zone(rules: Rules) -> tzinfo:
    """The time zone a ledger's dates and times are shown and exported in: its rules' `timezone` (SPEC.md §14),
    else UTC; UTC too when this machine's tz database does not know the name (`zone_known` says so)."""
    return (_zone(rules.timezone) if rules.timezone else None) or UTC


def zone_known(rules: Rules) -> bool:
    return rules.timezone is None or _zone(rules.timezone) is not None


class Dated(Protocol):
    """A contribution, or what a chart reads of one (protocol/contributions.py `Charted`)."""

    @property
    def event(self) -> Event: ...
    @property
    def ts(self) -> int: ...


def event_day(c: Dated, zone: tzinfo) -> date:
    """A contribution's day: its own (hasPointInTime, else hasBeginning) as written, in its own offset; else the
    day its entry was signed, in the ledger's zone."""
    given = c.event.point or c.event.beginning
    if given is not None:
        return date.fromisoformat(given[:10])
    return datetime.fromtimestamp(c.ts / 1000, zone).date()


@dataclass(frozen=True, slots=True)
class HistoryQuery:
    """Which contributions a history shows. `agent` matches provider, receiver or author; `since` and
    `until` (ISO 8601 dates or date-times; a date `until` takes in its whole day) bound the event time."""

    agent: str | None = None
    action: str | None = None
    since: str | None = None
    until: str | None = None
    status: str | None = None

    def __post_init__(self) -> None:
        if self.action is not None and self.action not in ACTIONS:
            raise InvalidData("unknown_action", f"action {self.action!r:.40} is not a ValueFlows action")
        if self.status is not None and self.status not in HISTORY_STATUSES:
            raise LocalError("bad_request", f"status is one of {', '.join(HISTORY_STATUSES)}")
        for key in ("since", "until"):
            value = getattr(self, key)
            if value is not None:
                parse_time(value, key)

    def rows(self, state: LedgerState) -> list[dict[str, Any]]:
        """The matching history rows: the contributions (`select`), and the erased ones (SPEC.md §20) where
        no action is asked for, placed by the time they were written."""
        rows = [(event_time(c), c.ts, c.id.raw, contribution_row(c)) for c in self.select(state)]
        if self.action is None and self.status in (None, ERASED):
            since = None if self.since is None else parse_time(self.since, "since").timestamp()
            until = None if self.until is None else self._until()
            for e in state.erased:
                when = e.ts / 1000
                if e.kind != "vf.event" or self.agent not in (None, e.agent):
                    continue
                if (since is not None and when < since) or (until is not None and when >= until):
                    continue
                rows.append((when, e.ts, e.id.raw, erased_row(e)))
        rows.sort(key=lambda r: r[:3])
        return [r[3] for r in rows]

    def _until(self) -> float:
        assert self.until is not None
        end = parse_time(self.until, "until")
        return (end + timedelta(days=1) if "T" not in self.until else end + timedelta(microseconds=1)).timestamp()

    def select(self, state: LedgerState) -> Sequence[Contribution]:
        """The matching contributions, oldest event first (ties by entry ts, then id): found and ordered without
        making the others (a page shows a few of them)."""
        contributions = state.contributions
        if self.status is not None:  # found by their status bytes, not by a call per contribution
            contributions = contributions.of_status(self.status)
        if self.agent is None and self.action is None and self.since is None and self.until is None:
            return contributions.by_event_time()  # ordered by keys read in C, not by a call per contribution
        since = None if self.since is None else parse_time(self.since, "since").timestamp()
        until, until_day = None, False
        if self.until is not None:
            until_day = "T" not in self.until
            end = parse_time(self.until, "until")
            until = (end + timedelta(days=1) if until_day else end).timestamp()  # a date: its whole day

        # read off a fold's columns (no event built) when it is one
        return contributions.select(Matching(self.agent, self.action, since, until, until_day), event_order)


def distributions_json(state: LedgerState) -> list[dict[str, Any]]:
    """The recorded distributions, oldest first (ts, then id): `status` "valid", or "conflicting" when it counts
    nothing because it paid a claim another one it did not count paid (SPEC.md §17.5)."""
    recorded = [(d, VALID) for d in state.distributions] + [(d, CONFLICTING) for d in state.conflicting]
    return [
        {"id": str(d.id), "author": d.author, "ts": d.ts, "amount": format_decimal(d.payout.amount),
         "unit": d.payout.unit, "since": None if d.payout.since is None else d.payout.since.isoformat(),
         "until": None if d.payout.until is None else d.payout.until.isoformat(), "status": status,
         "lines": [{"bucket": line.bucket, "recipient": line.recipient,
                    "amount": format_amount(line.amount, d.payout.unit)} for line in d.payout.lines]}
        for d, status in sorted(recorded, key=lambda r: (r[0].ts, r[0].id.raw))
    ]


def state_json(state: LedgerState, forks: Sequence[ForkProof] = ()) -> dict[str, Any]:
    """The state for `tally state --json` and the API; `forks`: the fork proofs of this ledger's chains."""
    accept = state.rules.validation.accept
    return {
        "ledger": str(state.ledger),
        "rules": to_json_value(state.rules.to_body()),  # bytes (a key log, §19.9) in the §8 JSON mapping
        "members": list(state.members),
        "left": list(state.left),
        "names": dict(state.names),
        "totals": {
            who: {
                "quantities": {
                    a: {u: format_decimal(q) for u, q in units.items()} for a, units in t.quantities.items()
                },
                "claim": format_decimal(t.claim),
            }
            for who, t in state.totals().items()
        },
        "pending": [
            {"id": str(c.id), "author": c.author, "accepts": list(c.accepts), "rejects": list(c.rejects),
             "accepts_needed": max(0, accept - len(c.accepts))}
            for c in state.contributions.of_status(PENDING)
        ],
        "invalid": [
            {"id": str(p.id), "author": p.author, "kind": p.kind, "code": p.code, "message": p.message}
            for p in state.invalid
        ],
        "sponsorships": {agent: [str(c) for c in ids] for agent, ids in state.sponsorships.items()},
        "waiting": [str(c) for c in state.waiting],
        "quarantined": [str(c) for c in state.quarantined],
        "forks": [fork_row(proof) for proof in forks if proof.a.ledger_id == state.ledger],
        "distributions": distributions_json(state),
        "erased": [{"id": str(e.id), "author": e.agent, "kind": e.kind, "ts": e.ts, "erased_by": str(e.by)}
                   for e in state.erased],
        "keys": {  # identities with key events (SPEC.md §19.7)
            i.identity: {"key": i.key, "committed": i.next is not None,
                         "devices": [{"key": d.key, "name": d.name, "added": d.added, "revoked": d.revoked_at}
                                     for d in i.devices]}
            for i in state.identities.values()
        },
        **governance_json(state),  # motions, pledges (arrears as of today), amendments (SPEC.md §18)
        "digest": state.digest.hex(),
    }


def device_rows(states: Sequence[LedgerState], me: str) -> list[dict[str, Any]]:
    """The member's devices across their ledgers (`tally device list --json`, `GET /api/v1/devices`): key, name,
    added and revoked (ISO 8601 UTC, revoked null while active), and the ledgers that list it."""
    rows: dict[str, dict[str, Any]] = {}
    for state in states:
        ident = state.identities.get(me)
        for d in ident.devices if ident is not None else ():
            row = rows.setdefault(d.key, {"key": d.key, "name": d.name, "added": _iso(d.added), "revoked": None,
                                          "ledgers": []})
            row["ledgers"].append(str(state.ledger))
            if d.revoked_at is not None:
                row["revoked"] = _iso(d.revoked_at)
    return list(rows.values())


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="seconds")
