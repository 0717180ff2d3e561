"""The per-ledger states of one link's sync conversation (SPEC §13.5) and their transitions.

`protocol/sync_engine.py` moves a ledger between these phases only through
`step()`, so this table is the whole state machine; SPEC §13.5 quotes it
(`tests/protocol/test_sync_engine.py` checks the quote matches the table).
"""

from __future__ import annotations

import enum
from typing import Final

from .errors import InvalidData


class Phase(enum.Enum):
    """Where one ledger stands on one link."""

    UNSHARED = "unshared"  # not named by both sides (or not replicated, or not visible to the peer)
    NAMED = "named"  # our `sub` named it; the peer's has not (yet)
    COMPARING = "comparing"  # shared, digests differ: fronts are crossing
    FETCHING = "fetching"  # the peer's front is complete: our wants are out (or a fork check)
    LEVEL = "level"  # we hold everything the peer advertised (`level` sent, or digests were equal)


class Event(enum.Enum):
    """What can happen to a ledger on a link."""

    NAME = "name"  # we name it in a `sub`
    SUB_EQUAL = "sub_equal"  # the peer's `sub` names it with our digest
    SUB_DIFFERS = "sub_differs"  # the peer's `sub` names it with another digest
    FRONT_PART = "front_part"  # a `front` with done = false
    FRONT_DONE = "front_done"  # the last part of the peer's `front`
    ASKED = "asked"  # a want of ours for it is sent or queued (plan, next window, gap, probe)
    ANSWERED = "answered"  # the last unanswered or queued want is answered (and no fork check waits)
    LEVEL = "level"  # the peer's `level`
    ENTS = "ents"  # an `ents` message of the ledger (answer or push)


#: (phase, event) -> next phase. A pair absent from the table is ignored when it concerns a
#: ledger not shared on the link (nothing is revealed) and refused with `protocol_error` otherwise.
TRANSITIONS: Final[dict[tuple[Phase, Event], Phase]] = {
    (Phase.UNSHARED, Event.NAME): Phase.NAMED,
    (Phase.UNSHARED, Event.SUB_EQUAL): Phase.LEVEL,
    (Phase.UNSHARED, Event.SUB_DIFFERS): Phase.COMPARING,
    (Phase.NAMED, Event.SUB_EQUAL): Phase.LEVEL,
    (Phase.NAMED, Event.SUB_DIFFERS): Phase.COMPARING,
    (Phase.NAMED, Event.FRONT_PART): Phase.COMPARING,
    (Phase.NAMED, Event.FRONT_DONE): Phase.FETCHING,
    (Phase.NAMED, Event.ENTS): Phase.NAMED,
    (Phase.NAMED, Event.ASKED): Phase.NAMED,
    (Phase.NAMED, Event.ANSWERED): Phase.NAMED,
    (Phase.COMPARING, Event.SUB_EQUAL): Phase.COMPARING,
    (Phase.COMPARING, Event.SUB_DIFFERS): Phase.COMPARING,
    (Phase.COMPARING, Event.FRONT_PART): Phase.COMPARING,
    (Phase.COMPARING, Event.FRONT_DONE): Phase.FETCHING,
    (Phase.COMPARING, Event.LEVEL): Phase.COMPARING,
    (Phase.COMPARING, Event.ENTS): Phase.COMPARING,
    (Phase.COMPARING, Event.ASKED): Phase.COMPARING,
    (Phase.COMPARING, Event.ANSWERED): Phase.COMPARING,
    (Phase.FETCHING, Event.ASKED): Phase.FETCHING,
    (Phase.FETCHING, Event.ANSWERED): Phase.LEVEL,
    (Phase.FETCHING, Event.LEVEL): Phase.FETCHING,
    (Phase.FETCHING, Event.ENTS): Phase.FETCHING,
    (Phase.FETCHING, Event.FRONT_PART): Phase.FETCHING,
    (Phase.FETCHING, Event.FRONT_DONE): Phase.FETCHING,
    (Phase.FETCHING, Event.SUB_EQUAL): Phase.FETCHING,
    (Phase.FETCHING, Event.SUB_DIFFERS): Phase.FETCHING,
    (Phase.LEVEL, Event.ASKED): Phase.LEVEL,
    (Phase.LEVEL, Event.ANSWERED): Phase.LEVEL,
    (Phase.LEVEL, Event.LEVEL): Phase.LEVEL,
    (Phase.LEVEL, Event.ENTS): Phase.LEVEL,
    (Phase.LEVEL, Event.FRONT_PART): Phase.LEVEL,
    (Phase.LEVEL, Event.FRONT_DONE): Phase.LEVEL,
    (Phase.LEVEL, Event.SUB_EQUAL): Phase.LEVEL,
    (Phase.LEVEL, Event.SUB_DIFFERS): Phase.LEVEL,
}

#: Events that are silently ignored for a ledger that is not shared (SPEC §13.4: reveal nothing).
IGNORED_UNSHARED: Final = frozenset({Event.FRONT_PART, Event.FRONT_DONE, Event.LEVEL, Event.ANSWERED})


def step(phase: Phase, event: Event) -> Phase:
    """The phase after `event`; `protocol_error` for a pair the conversation does not allow."""
    after = TRANSITIONS.get((phase, event))
    if after is not None:
        return after
    if phase is Phase.UNSHARED and event in IGNORED_UNSHARED:
        return phase
    raise InvalidData("protocol_error", f"{event.value} is not allowed while a ledger is {phase.value}")


def table_markdown() -> str:
    """The transition table as SPEC §13.5 quotes it."""
    rows = ["| phase | event | next |", "|---|---|---|"]
    rows += [f"| `{p.value}` | `{e.value}` | `{n.value}` |" for (p, e), n in TRANSITIONS.items()]
    return "\n".join(rows)
