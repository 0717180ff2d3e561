"""Score-voting motions, ballots and closings, and the rule amendments they pass.

Three kinds, all written by members (their payload names `member`, SPEC.md §18):

- `gov.motion`: a title, two or more options, an optional closing time and an
  optional amendment of the ledger's rules;
- `gov.vote`: a ballot, one whole score per option it does not leave blank;
- `gov.close`: the end of the vote; it lists the ballots it counts, so anyone
  can recompute the tally from the entries alone.

The count is plain score voting (`count`, protocol/score_voting.py): the highest
total wins, or, when the rules say blanks are "no-opinion", the highest average
among the options scored on at least `quorum` of the ballots. Ties go to an
automatic runoff among the tied options (STAR's rule), then to the option listed first.

An amendment is a partial rules table (`Amendment`, protocol/amendments.py); a motion that carries one
passes when its first option wins, and from its closing entry on the rules in
effect are the genesis rules with every passed amendment in the entry's causal
past applied in canonical order (`RulesInEffect`). Parsing needs only the
payload; what depends on other entries is checked by protocol/state.py.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from types import MappingProxyType
from typing import Any, Final

from .amendments import Amendment
from .cid import CID
from .errors import InvalidData
from .rules import Rules, Voting
from .score_voting import Tally, count
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
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)


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
