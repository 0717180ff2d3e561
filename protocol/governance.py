"""Score-voting motions, ballots and closings, and the rule amendments they pass.

Three kinds, all written by members (their payload names `member`, SPEC.md §18):

- `gov.motion`: a title, two or more options, an optional closing time and an
  optional amendment of the ledger's rules;
- `gov.vote`: a ballot, one whole score per option it does not leave blank;
- `gov.close`: the end of the vote; it lists the ballots it counts, so anyone
  can recompute the tally from the entries alone.

The count (`count`) is plain score voting: the highest total wins, or, when the
rules say blanks are "no-opinion", the highest average among the options scored
on at least `quorum` of the ballots. Ties go to an automatic runoff among the
tied options (STAR's rule), then to the option listed first.

An amendment is a partial rules table (`Amendment`); a motion that carries one
passes when its first option wins, and from its closing entry on the rules in
effect are the genesis rules with every passed amendment in the entry's causal
past applied in canonical order (`RulesInEffect`). Parsing needs only the
payload; what depends on other entries is checked by protocol/state.py.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from fractions import Fraction
from types import MappingProxyType
from typing import Any, Final

from .buckets import DEFAULT_CLAIMS, DEFAULT_MODE, Bucket
from .cid import CID
from .decimals import format_decimal, parse_decimal
from .errors import InvalidData
from .rules import Rules, Voting, check_timezone
from .valueflows import parse_time

MOTION_KIND: Final = "gov.motion"
VOTE_KIND: Final = "gov.vote"
CLOSE_KIND: Final = "gov.close"

MAX_TITLE_CHARS: Final = 200
MAX_OPTION_CHARS: Final = 100
MAX_OPTIONS: Final = 32
MAX_NOTE_CHARS: Final = 2000
#: Ballots a closing entry may list (one link is ~40 bytes; a payload holds 16384).
MAX_BALLOTS_LISTED: Final = 360
#: The keys of a rules table an amendment may change; the others (name, founders…) are fixed at genesis.
AMENDABLE: Final = frozenset({
    "rates", "units", "validation", "buckets", "voting", "log_for_others", "pledge_claims", "recovery", "timezone",
})
_VALIDATION_KEYS: Final = frozenset({"accept", "reject"})
_VOTING_KEYS: Final = frozenset({"min", "max", "blank", "quorum"})
_BUCKET_KEYS: Final = frozenset({"name", "percent", "recipient", "mode", "claims", "actions"})
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)

#: How a tie on the ranking measure was broken (MotionState.tie_break).
RUNOFF, TOTAL, LISTED_FIRST = "runoff", "total", "listed-first"


# ---- amendments -------------------------------------------------------------------------------------------


def _bad(message: str) -> InvalidData:
    return InvalidData("bad_amendment", message)


@dataclass(frozen=True, slots=True)
class Amendment:
    """A partial rules table: the keys it gives replace the rules' own (SPEC.md §18.3).

    `[validation]` and `[voting]` change only the keys they give; each `[rates.KEY]`
    table replaces that key's rates (an empty table removes the key); `units`,
    `buckets` and `log_for_others` replace the whole value. `body` is the canonical
    form stored in a motion: decimals as canonical strings, buckets with every key.
    """

    body: Mapping[str, Any]

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> Amendment:
        """From a TOML amendment file or its JSON twin; decimals may be ints or non-canonical strings."""
        if not isinstance(config, Mapping) or not config:
            raise _bad("an amendment is a non-empty table of " + ", ".join(sorted(AMENDABLE)))
        unknown = sorted(str(k) for k in config if k not in AMENDABLE)
        if unknown:
            raise _bad(f"{unknown[0]}: not amendable (amendable: {', '.join(sorted(AMENDABLE))})")
        try:
            body = {key: _NORMALIZE[key](config[key]) for key in sorted(config)}
        except InvalidData as exc:
            raise _bad(f"{exc.code}: {exc.message}") from None
        return cls(MappingProxyType(body))

    @classmethod
    def from_body(cls, value: object) -> Amendment:
        """Strictly read a motion's `amend`: only the canonical form `from_config` writes."""
        if not isinstance(value, dict):
            raise _bad("amend must be a map")
        amendment = cls.from_config(value)
        if amendment.to_body() != value:
            raise _bad("amend is not in canonical form (decimals as canonical strings, buckets with every key)")
        return amendment

    def to_body(self) -> dict[str, Any]:
        return {key: _thaw(value) for key, value in self.body.items()}

    def apply(self, rules: Rules) -> Rules:
        """The rules with this amendment applied; `bad_amendment` if they would not be valid rules."""
        body = rules.to_body()
        for key, value in self.body.items():
            if key == "rates":
                rates = dict(body["rates"])
                for rate_key, per_unit in value.items():
                    if per_unit:
                        rates[rate_key] = dict(per_unit)
                    else:
                        rates.pop(rate_key, None)
                body["rates"] = rates
            elif key in ("validation", "voting", "recovery"):
                body[key] = {**body.get(key, {}), **value}
            else:
                body[key] = _thaw(value)
        try:
            return Rules.from_body(body)
        except InvalidData as exc:
            raise _bad(f"the amended rules would be invalid: {exc.code}: {exc.message}") from None


def _thaw(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _thaw(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_thaw(v) for v in value]
    return value


def _decimal_text(value: object, path: str) -> str:
    return format_decimal(parse_decimal(value, path))


def _table(value: object, path: str, keys: frozenset[str] | None = None) -> Mapping[str, Any]:
    if not isinstance(value, Mapping) or not all(isinstance(k, str) for k in value):
        raise _bad(f"{path}: expected a table")
    unknown = sorted(set(value) - keys) if keys is not None else []
    if unknown:
        raise _bad(f"{path}.{unknown[0]}: unknown key (known here: {', '.join(sorted(keys or ()))})")
    return value


def _norm_rates(value: object) -> dict[str, Any]:
    rates = _table(value, "rates")
    if not rates:
        raise _bad("rates: give at least one rate key")
    result: dict[str, Any] = {}
    for key, per in sorted(rates.items()):
        table = _table(per, f"rates.{key}")
        result[key] = {unit: _decimal_text(rate, f"rates.{key}.{unit}") for unit, rate in sorted(table.items())}
    return result


def _norm_units(value: object) -> list[str]:
    if not isinstance(value, list | tuple) or not all(isinstance(u, str) for u in value):
        raise _bad("units: expected a list of unit names")
    return list(value)


def _norm_ints(value: object, path: str, keys: frozenset[str]) -> dict[str, Any]:
    table = _table(value, path, keys)
    if not table:
        raise _bad(f"{path}: give at least one of {', '.join(sorted(keys))}")
    result: dict[str, Any] = {}
    for key, item in sorted(table.items()):
        if key == "quorum":
            result[key] = _decimal_text(item, f"{path}.quorum")
        elif key == "blank" or (not isinstance(item, bool) and isinstance(item, int)):
            result[key] = item
        else:
            raise _bad(f"{path}.{key}: expected a whole number")
    return result


def _norm_buckets(value: object) -> list[dict[str, Any]]:
    if not isinstance(value, list | tuple) or not value:
        raise _bad("buckets: expected a non-empty list of tables")
    result = []
    for i, item in enumerate(value):
        table = _table(item, f"buckets[{i}]", _BUCKET_KEYS)
        if "name" not in table or "percent" not in table:
            raise _bad(f"buckets[{i}]: name and percent are required")
        bucket = Bucket(
            table["name"], parse_decimal(table["percent"], f"buckets[{i}].percent"), table.get("recipient"),
            table.get("mode", DEFAULT_MODE), table.get("claims", DEFAULT_CLAIMS), tuple(table.get("actions", ())),
        )
        result.append({
            "name": bucket.name, "percent": format_decimal(bucket.percent), "recipient": bucket.recipient,
            "mode": bucket.mode, "claims": bucket.claims, "actions": list(bucket.actions),
        })
    return result


def _norm_recovery(value: object) -> dict[str, Any]:
    table = _table(value, "recovery", frozenset({"quorum"}))
    quorum = table.get("quorum")
    if isinstance(quorum, bool) or not isinstance(quorum, int):
        raise _bad("recovery.quorum: expected a whole number")
    return {"quorum": quorum}


def _norm_bool(value: object) -> bool:
    if not isinstance(value, bool):
        raise _bad("log_for_others and pledge_claims are true or false")
    return value


_NORMALIZE: Final[Mapping[str, Any]] = MappingProxyType({
    "rates": _norm_rates,
    "units": _norm_units,
    "validation": lambda v: _norm_ints(v, "validation", _VALIDATION_KEYS),
    "voting": lambda v: _norm_ints(v, "voting", _VOTING_KEYS),
    "buckets": _norm_buckets,
    "log_for_others": _norm_bool,
    "pledge_claims": _norm_bool,  # version 2 rules only: applied to version 1 rules it is bad_amendment
    "recovery": _norm_recovery,  # version 2 rules only, likewise
    "timezone": lambda v: check_timezone(v, "timezone"),  # version 2 rules only, likewise
})


# ---- payloads -------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Motion:
    title: str
    options: tuple[str, ...]
    closes: int | None  # ms since the epoch; after it anyone may close the motion
    amend: Amendment | None
    note: str
    member: CID


@dataclass(frozen=True, slots=True)
class Ballot:
    motion: CID
    scores: Mapping[str, int]  # an option left out is blank
    member: CID


@dataclass(frozen=True, slots=True)
class Closing:
    motion: CID
    ballots: tuple[CID, ...]  # sorted by raw bytes
    member: CID


def _keys(body: Mapping[str, Any], allowed: frozenset[str], kind: str) -> None:
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise InvalidData("unknown_field", f"{kind} has unknown field(s): {', '.join(unknown)}")


def _member(body: Mapping[str, Any], kind: str) -> CID:
    value = body.get("member")
    if not isinstance(value, CID):
        raise InvalidData("not_member", f"{kind} must name the author's admission (or the genesis) as member")
    return value


def _link(body: Mapping[str, Any], key: str, kind: str) -> CID:
    value = body.get(key)
    if not isinstance(value, CID):
        raise InvalidData("bad_reference", f"{kind}.{key} must be a link to an entry")
    return value


def _note(body: Mapping[str, Any]) -> str:
    value = body.get("note", "")
    if not isinstance(value, str) or len(value) > MAX_NOTE_CHARS:
        raise InvalidData("bad_field", f"note must be text of at most {MAX_NOTE_CHARS} characters")
    return value


def _label(value: object, limit: int) -> bool:
    return isinstance(value, str) and 0 < len(value) <= limit and value == value.strip() and value.isprintable()


def time_ms(value: object, key: str) -> int:
    """Milliseconds since the epoch of an ISO 8601 date (midnight UTC) or date-time with its offset."""
    return (parse_time(value, key) - _EPOCH) // timedelta(milliseconds=1)


def parse_motion(body: Mapping[str, Any]) -> Motion:
    _keys(body, frozenset({"title", "options", "closes", "amend", "note", "member"}), MOTION_KIND)
    title = body.get("title")
    if not _label(title, MAX_TITLE_CHARS):
        raise InvalidData("bad_motion", f"title: 1 to {MAX_TITLE_CHARS} characters, no spaces at either end")
    options = body.get("options")
    if not isinstance(options, list) or not 2 <= len(options) <= MAX_OPTIONS:
        raise InvalidData("bad_motion", f"options: a list of 2 to {MAX_OPTIONS} options")
    for option in options:
        if not _label(option, MAX_OPTION_CHARS):
            raise InvalidData(
                "bad_motion", f"options: each has 1 to {MAX_OPTION_CHARS} characters, no spaces at either end"
            )
    if len(set(options)) != len(options):
        raise InvalidData("bad_motion", "options: an option is listed twice")
    closes = body.get("closes")
    amend = body.get("amend")
    assert isinstance(title, str)
    return Motion(
        title=title,
        options=tuple(options),
        closes=None if closes is None else time_ms(closes, "closes"),
        amend=None if amend is None else Amendment.from_body(amend),
        note=_note(body),
        member=_member(body, MOTION_KIND),
    )


def parse_ballot(body: Mapping[str, Any]) -> Ballot:
    """A ballot's shape; whether its options and scores fit its motion is `check_ballot`'s."""
    _keys(body, frozenset({"motion", "scores", "member"}), VOTE_KIND)
    scores = body.get("scores")
    if not isinstance(scores, dict) or len(scores) > MAX_OPTIONS:
        raise InvalidData("bad_field", f"scores: a map of at most {MAX_OPTIONS} option -> whole score")
    for option, score in scores.items():
        if isinstance(score, bool) or not isinstance(score, int):
            raise InvalidData("vote_out_of_range", f"scores.{option}: {score!r} is not a whole score")
    return Ballot(_link(body, "motion", VOTE_KIND), MappingProxyType(dict(scores)), _member(body, VOTE_KIND))


def parse_closing(body: Mapping[str, Any]) -> Closing:
    _keys(body, frozenset({"motion", "ballots", "member"}), CLOSE_KIND)
    ballots = body.get("ballots", [])
    if (not isinstance(ballots, list) or len(ballots) > MAX_BALLOTS_LISTED
            or not all(isinstance(b, CID) for b in ballots)):
        raise InvalidData("bad_reference", f"ballots: a list of at most {MAX_BALLOTS_LISTED} links to ballots")
    raws = [b.raw for b in ballots]
    if raws != sorted(set(raws)):
        raise InvalidData("bad_reference", "ballots: sorted by their binary CID, no duplicates")
    return Closing(_link(body, "motion", CLOSE_KIND), tuple(ballots), _member(body, CLOSE_KIND))


def check_ballot(ballot: Ballot, motion: Motion, voting: Voting, *, ts: int, timed: bool) -> None:
    """A ballot fits its motion: known options, scores within the motion's range; with `timed` (version 2
    rules, SPEC.md §18.1) it was signed before the motion's closing time."""
    if timed and motion.closes is not None and ts >= motion.closes:
        raise InvalidData("motion_closed", "this ballot was signed at or after the motion's closing time")
    for option, score in ballot.scores.items():
        if option not in motion.options:
            raise InvalidData("unknown_option", f"{option!r:.60} is not an option of this motion")
        if not voting.min <= score <= voting.max:
            raise InvalidData("vote_out_of_range", f"{option}: {score} is outside {voting.min}..{voting.max}")


def check_closer(motion: Motion, proposer: str, closer: str, ts: int, *, timed: bool) -> None:
    """Its proposer may close a motion at any time; anyone else only from its closing time on. With `timed`
    (version 2 rules, SPEC.md §18.1) a motion with a closing time stays open until then for everyone, its
    proposer too: the members were told when the vote ends."""
    if timed and motion.closes is not None and ts < motion.closes:
        raise InvalidData("motion_not_closed", "the motion is open until its closing time; nobody may close it "
                          "earlier")
    if closer == proposer:
        return
    if motion.closes is None:
        raise InvalidData("not_proposer", "only the motion's proposer may close it (it has no closing time)")
    if ts < motion.closes:
        raise InvalidData("motion_not_closed", "the motion is open until its closing time; before then only its "
                          "proposer may close it")


# ---- the count --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Tally:
    """The count of a motion's ballots (one per voter) under its voting rules."""

    ballots: int
    totals: Mapping[str, int]  # sum of scores; a blank counts as `min` under "zero", not at all under "no-opinion"
    scored: Mapping[str, int]  # ballots that scored the option (did not leave it blank)
    averages: Mapping[str, Fraction | None]  # total / scored (blank = min under "zero"); None if nobody scored it
    eligible: tuple[str, ...]  # options scored on at least `quorum` of the ballots
    ranking: tuple[str, ...]  # eligible options, best first
    winner: str | None  # the first of the ranking, or None with no ballot or no eligible option
    tied: tuple[str, ...] = ()  # options that tied with the winner on the ranking measure
    tie_break: str | None = None  # RUNOFF, TOTAL or LISTED_FIRST when a tie decided the winner


def count(options: Sequence[str], voting: Voting, ballots: Iterable[Mapping[str, int]], *,
          totals_first: bool = False) -> Tally:
    """Score voting with a deterministic tie rule (SPEC.md §18.2).

    - "zero": a blank is `min`; options rank by total. Every ballot scores every option.
    - "no-opinion": a blank is left out; an option is eligible when at least `quorum` of
      the ballots score it (and one does); eligible options rank by average.
    - Options equal on that measure go to a runoff among them: each gets a point for every
      ballot and other tied option it scores strictly higher (a blank is `min` under "zero",
      and not compared under "no-opinion"); most points first. Still equal: with `totals_first`
      (version 2 rules, SPEC.md §18.2) the higher total first, as STAR does; then the option
      listed first in the motion first.
    """
    zero = voting.blank == "zero"
    filled: list[dict[str, int | None]] = []
    for ballot in ballots:
        filled.append({o: ballot.get(o, voting.min if zero else None) for o in options})
    n = len(filled)
    totals = {o: sum(b[o] or 0 for b in filled) for o in options}
    scored = {o: sum(1 for b in filled if b[o] is not None) for o in options}
    averages = {o: Fraction(totals[o], scored[o]) if scored[o] else None for o in options}
    quorum = Fraction(voting.quorum) * n
    eligible = list(options) if zero and n else [o for o in options if not zero and scored[o] and scored[o] >= quorum]
    measure: dict[str, Fraction] = {
        o: Fraction(totals[o]) if zero else (averages[o] or Fraction(0)) for o in eligible
    }
    groups: dict[Fraction, list[str]] = {}
    for o in eligible:
        groups.setdefault(measure[o], []).append(o)
    ranking: list[str] = []
    tied: tuple[str, ...] = ()
    tie_break: str | None = None
    for value in sorted(groups, reverse=True):
        group = groups[value]
        if len(group) == 1:
            ranking += group
            continue
        points = _runoff(group, filled)
        if totals_first:
            ordered = sorted(group, key=lambda o: (-points[o], -totals[o], options.index(o)))
        else:
            ordered = sorted(group, key=lambda o: (-points[o], options.index(o)))
        if not ranking:
            tied = tuple(sorted(group, key=options.index))
            first, second = ordered[0], ordered[1]
            if points[first] > points[second]:
                tie_break = RUNOFF
            elif totals_first and totals[first] > totals[second]:
                tie_break = TOTAL
            else:
                tie_break = LISTED_FIRST
        ranking += ordered
    return Tally(
        ballots=n,
        totals=MappingProxyType(totals),
        scored=MappingProxyType(scored),
        averages=MappingProxyType(averages),
        eligible=tuple(eligible),
        ranking=tuple(ranking),
        winner=ranking[0] if ranking else None,
        tied=tied,
        tie_break=tie_break,
    )


def _runoff(group: Sequence[str], ballots: Sequence[Mapping[str, int | None]]) -> dict[str, int]:
    points = dict.fromkeys(group, 0)
    for ballot in ballots:
        for a in group:
            for b in group:
                sa, sb = ballot[a], ballot[b]
                if a != b and sa is not None and sb is not None and sa > sb:
                    points[a] += 1
    return points


def passed(motion: Motion, tally: Tally) -> bool:
    """A motion that carries an amendment passes when its first option wins."""
    return tally.winner is not None and tally.winner == motion.options[0]


# ---- rules in effect ----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Closed:
    position: int  # canonical order among the closings
    motion: bytes
    amendment: Amendment | None  # set when the motion carries one and passed


@dataclass(slots=True)
class RulesInEffect:
    """The rules each entry is checked under: the genesis rules amended by every passed amendment whose
    closing entry is in the entry's causal past, applied in canonical order (SPEC.md §18.3).

    Closings are added in canonical order as the state applies them; an entry's causal past
    is given as the set of closing ids it knows (propagated like membership). Of several
    closings of one motion the first counts; an amendment that no longer fits the rules
    it meets (an earlier amendment removed a unit it rates) lapses in that fold.
    """

    genesis: Rules
    _closed: dict[bytes, _Closed] = field(default_factory=dict)
    _cache: dict[frozenset[bytes], tuple[Rules, tuple[bytes, ...]]] = field(default_factory=dict)
    #: a closing's canonical position, for a fold that adds a late closing before earlier-added ones
    #: (protocol/fold.py); None: the order they were added in is canonical
    order: Callable[[bytes], int] | None = None

    def add(self, closing: bytes, motion: bytes, amendment: Amendment | None) -> None:
        self._closed[closing] = _Closed(len(self._closed), motion, amendment)

    def closes(self, closings: frozenset[bytes], motion: bytes) -> bool:
        """Does one of `closings` close `motion`?"""
        return any(self._closed[c].motion == motion for c in closings)

    def motion_of(self, closing: bytes) -> bytes:
        return self._closed[closing].motion

    def rules(self, closings: frozenset[bytes]) -> Rules:
        return self._fold(closings)[0]

    def applied(self, closings: frozenset[bytes]) -> tuple[bytes, ...]:
        """The closings whose amendments apply for that causal past, in canonical order."""
        return self._fold(closings)[1]

    def _fold(self, closings: frozenset[bytes]) -> tuple[Rules, tuple[bytes, ...]]:
        cached = self._cache.get(closings)
        if cached is not None:
            return cached
        rules, applied = self.genesis, []
        seen: set[bytes] = set()
        position = self.order or (lambda c: self._closed[c].position)
        for raw in sorted(closings, key=position):
            closed = self._closed[raw]
            if closed.motion in seen:
                continue
            seen.add(closed.motion)
            if closed.amendment is not None:
                try:
                    rules = closed.amendment.apply(rules)
                except InvalidData:
                    continue
                applied.append(raw)
        result = (rules, tuple(applied))
        self._cache[closings] = result
        return result


def merge(a: frozenset[bytes], b: frozenset[bytes]) -> frozenset[bytes]:
    """a ∪ b, reusing a set that already holds the other (most entries know what their prev knew)."""
    if a >= b:
        return a
    if b >= a:
        return b
    return a | b


# ---- what the state shows ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CountedBallot:
    id: CID
    voter: str
    seq: int
    scores: Mapping[str, int]


@dataclass(frozen=True, slots=True)
class MotionState:
    id: CID
    author: str
    ts: int
    motion: Motion
    voting: Voting  # the voting rules in effect at the motion
    ballots: tuple[CID, ...]  # every valid ballot on it, by id
    closing: CID | None  # the closing that decided it (the first in canonical order)
    counted: tuple[CountedBallot, ...]  # the count's ballots, by voter: each one's latest (in the closing's list)
    tally: Tally
    amended: bool  # its amendment took effect
    closed_by: str | None = None  # who wrote the deciding closing
    closed_at: int | None = None  # its ts (ms)

    @property
    def closed_early(self) -> bool:
        """Closed before the closing time its members were told (only a version 1 proposer can, SPEC.md §18.1)."""
        return self.closed_at is not None and self.motion.closes is not None and self.closed_at < self.motion.closes

    @property
    def closed(self) -> bool:
        return self.closing is not None

    @property
    def winner(self) -> str | None:
        return self.tally.winner if self.closed else None


def motion_states(
    motions: Iterable[tuple[CID, str, int, Motion, Voting]],
    ballots: Iterable[tuple[CID, str, int, Ballot]],
    closings: Iterable[tuple[CID, str, int, Closing]],
    applied: frozenset[bytes],
    totals_first: bool = False,
) -> tuple[MotionState, ...]:
    """Every motion with its ballots and count. Inputs are the valid entries in canonical order:
    motions (id, author, ts, motion, voting in effect), ballots (id, author, seq, ballot) and closings (id, author,
    ts, closing);
    `applied` holds the closings whose amendments are in effect."""
    by_motion: dict[bytes, list[tuple[CID, str, int, Ballot]]] = {}
    for item in ballots:
        by_motion.setdefault(item[3].motion.raw, []).append(item)
    decided: dict[bytes, tuple[CID, Closing, str, int]] = {}
    for closing_id, closer, closed_ts, closing in closings:
        decided.setdefault(closing.motion.raw, (closing_id, closing, closer, closed_ts))  # the first in canonical order
    result = []
    for motion_id, author, ts, motion, voting in motions:
        mine = by_motion.get(motion_id.raw, [])
        closed = decided.get(motion_id.raw)
        if closed is not None:
            listed = {b.raw for b in closed[1].ballots}
            mine_counted = [b for b in mine if b[0].raw in listed]
        else:
            mine_counted = mine
        # voter -> their latest ballot: the last in canonical order, from whichever of their keys (SPEC.md
        # §19.3); within one chain that is the highest seq
        latest: dict[str, tuple[int, CID, Ballot]] = {}
        for cid, voter, seq, ballot in mine_counted:
            latest[voter] = (seq, cid, ballot)
        result.append(MotionState(
            id=motion_id, author=author, ts=ts, motion=motion, voting=voting,
            ballots=tuple(sorted((b[0] for b in mine), key=lambda c: c.raw)),
            closing=None if closed is None else closed[0],
            counted=tuple(CountedBallot(latest[v][1], v, latest[v][0], latest[v][2].scores) for v in sorted(latest)),
            tally=count(motion.options, voting, [latest[v][2].scores for v in sorted(latest)],
                        totals_first=totals_first),
            amended=closed is not None and closed[0].raw in applied,
            closed_by=None if closed is None else closed[2],
            closed_at=None if closed is None else closed[3],
        ))
    return tuple(result)


def rules_heads(closings: Iterable[tuple[CID, frozenset[bytes]]]) -> tuple[CID, ...]:
    """Of the closings (id, the closings in its causal past with itself), those no other one has in its
    past: what a new entry names in `rules` to have them all in its own."""
    items = list(closings)
    behind: set[bytes] = set()
    for cid, past in items:
        behind |= past - {cid.raw}
    return tuple(sorted((cid for cid, _ in items if cid.raw not in behind), key=lambda c: c.raw))
