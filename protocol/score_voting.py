"""Score voting: the count of a motion's ballots under the voting rules in effect (SPEC.md §18.2).

Plain score voting: the highest total wins, or, when the rules say blanks are "no-opinion", the highest
average among the options scored on at least `quorum` of the ballots. Ties go to an automatic runoff among
the tied options (STAR's rule), then to the option listed first.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from types import MappingProxyType

from .rules import Voting

#: How a tie on the ranking measure was broken (MotionState.tie_break).
RUNOFF, TOTAL, LISTED_FIRST = "runoff", "total", "listed-first"


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
