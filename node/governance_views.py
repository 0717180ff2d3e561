"""How motions and pledges look in `--json`, in text and in the API (README "Governance and pledges")."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal
from fractions import Fraction
from typing import Any, Final

from protocol import LocalError
from protocol.decimals import format_decimal
from protocol.governance import MotionState
from protocol.pledges import PledgeState, month_text
from protocol.state import LedgerState

AVERAGE_PLACES: Final = Decimal("0.0001")  # averages are shown rounded half-even to 4 places
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)


def _average(value: Fraction | None) -> str | None:
    if value is None:
        return None
    exact = Decimal(value.numerator) / Decimal(value.denominator)
    return format_decimal(exact.quantize(AVERAGE_PLACES, rounding=ROUND_HALF_EVEN))


def _time(ms: int | None) -> str | None:
    if ms is None:
        return None
    return (_EPOCH + timedelta(milliseconds=ms)).isoformat(timespec="seconds").replace("+00:00", "Z")


def motion_json(m: MotionState) -> dict[str, Any]:
    """A motion with its count: `winner` is null until it is closed (`leading` says who leads meanwhile)."""
    t = m.tally
    return {
        "id": str(m.id),
        "proposer": m.author,
        "ts": m.ts,
        "title": m.motion.title,
        "options": list(m.motion.options),
        "note": m.motion.note,
        "closes": _time(m.motion.closes),
        "amend": None if m.motion.amend is None else m.motion.amend.to_body(),
        "voting": {"min": m.voting.min, "max": m.voting.max, "blank": m.voting.blank,
                   "quorum": format_decimal(m.voting.quorum)},
        "closed": m.closed,
        "closing": None if m.closing is None else str(m.closing),
        "closed_by": m.closed_by,
        "closed_at": _time(m.closed_at),
        "closed_early": m.closed_early,
        "totals": dict(t.totals),
        "scored": dict(t.scored),
        "averages": {o: _average(a) for o, a in t.averages.items()},
        "eligible": list(t.eligible),
        "ranking": list(t.ranking),
        "winner": m.winner,
        "leading": t.winner,
        "tied": list(t.tied),
        "tie_break": t.tie_break,
        "amended": m.amended if m.motion.amend is not None else None,
        "voters": t.ballots,
        "ballots": [{"id": str(b.id), "voter": b.voter, "seq": b.seq, "scores": dict(b.scores)} for b in m.counted],
        "all_ballots": [str(b) for b in m.ballots],
    }


_DAY: Final = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


def parse_day(text: str, what: str = "as of") -> date:
    """A day written YYYY-MM-DD (`bad_time` otherwise)."""
    try:
        if _DAY.fullmatch(text):
            return date.fromisoformat(text)
    except ValueError:
        pass
    raise LocalError("bad_time", f"{what}: {text!r} is not a day written YYYY-MM-DD")


def today() -> date:
    """The UTC date now: the default `as of` of pledges (the node reads the clock, never protocol/)."""
    return datetime.now(UTC).date()


def pledge_json(p: PledgeState, as_of: date) -> dict[str, Any]:
    """A pledge, its schedule as of `as_of` (due, paid, running arrears per period) and its payments."""
    pledge = p.pledge
    standing = p.standing(as_of)
    return {
        "id": str(p.id),
        "pledger": p.author,
        "ts": p.ts,
        "amount": format_decimal(pledge.amount),
        "unit": pledge.unit,
        "per": pledge.per,
        "basis": None if pledge.basis is None else format_decimal(pledge.basis),
        "every": pledge.every,
        "start": month_text(pledge.start),
        "until": None if pledge.until is None else month_text(pledge.until),
        "escalate": format_decimal(pledge.escalate),
        "indexation": format_decimal(pledge.indexation),
        "note": pledge.note,
        "as_of": as_of.isoformat(),
        "due": format_decimal(standing.due),
        "paid": format_decimal(standing.paid),
        "arrears": format_decimal(standing.arrears),
        "credit": format_decimal(standing.credit),
        "period_count": standing.count,  # periods due so far; `periods` lists the latest of them (SPEC §18.5)
        "periods": [
            {"period": period.label, "due": format_decimal(period.due), "paid": format_decimal(period.paid),
             "arrears": format_decimal(period.arrears)}
            for period in standing.periods
        ],
        "payments": [{"id": str(pay.id), "date": pay.day.isoformat(), "amount": format_decimal(pay.amount)}
                     for pay in p.payments],
    }


def governance_json(state: LedgerState, as_of: date | None = None) -> dict[str, Any]:
    """What `tally state --json` and the API's state add: motions, pledges (as of today) and amendments."""
    day = as_of or today()
    return {
        "motions": [motion_json(m) for m in state.motions],
        "pledges": [pledge_json(p, day) for p in state.pledges],
        "amendments": [str(c) for c in state.amendments],
    }


def motion_lines(m: dict[str, Any]) -> list[str]:
    """A motion (its `motion_json` row) as text lines."""
    status = f"closed, winner {m['winner']}" if m["closed"] else f"open, leading {m['leading']}"
    if m["closes"] and not m["closed"]:
        status += f", closes {m['closes']}"
    lines = [f"motion\t{m['id']}\t{m['title']}\t{status}\t{m['voters']} voter(s)"]
    blank = m["voting"]["blank"]
    for option in m["options"]:
        detail = f"total {m['totals'][option]}"
        if blank == "no-opinion":
            detail += f"\taverage {m['averages'][option]}\tscored {m['scored'][option]}"
        lines.append(f"option\t{option}\t{detail}")
    if m["tie_break"]:
        lines.append(f"tie\t{', '.join(m['tied'])}\tbroken by {m['tie_break']}")
    if m["amended"] is not None:
        lines.append(f"amendment\t{'in effect' if m['amended'] else 'not in effect'}")
    if m["closed_by"] is not None:
        early = f"\tearly: its closing time was {m['closes']}" if m["closed_early"] else ""
        lines.append(f"closed\tby {m['closed_by']} at {m['closed_at']}{early}")
    return lines


def pledge_lines(p: dict[str, Any]) -> list[str]:
    """A pledge (its `pledge_json` row) as text lines: a summary, then one line per listed (latest) period."""
    rate = f"{p['amount']} {p['unit']}" + (f" per {p['per']} on {p['basis']} {p['per']}" if p["per"] else "")
    rate += f" +{p['indexation']}%/year" if p["indexation"] != "0" else ""
    rate += f" +{p['escalate']} {p['unit']}/year" if p["escalate"] != "0" else ""
    lines = [f"pledge\t{p['id']}\t{p['pledger']}\t{rate} every {p['every']} from {p['start']}"
             f"{' until ' + p['until'] if p['until'] else ''}\tas of {p['as_of']}: due {p['due']}\t"
             f"paid {p['paid']}\tarrears {p['arrears']}"]
    lines += [f"period\t{row['period']}\tdue {row['due']}\tpaid {row['paid']}\tarrears {row['arrears']}"
              for row in p["periods"]]
    return lines
