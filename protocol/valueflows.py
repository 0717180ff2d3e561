"""The ledger's entry payloads: ValueFlows events, endorsements, admissions.

Each `parse_*` takes a payload (a DAG-CBOR map) and returns a frozen record, or
raises InvalidData with the code a member will see. Parsing needs only the
payload and the ledger's rules; what depends on other entries (membership,
who endorses whom) is the state's business (protocol/state.py).
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass, fields
from datetime import UTC, date, datetime
from decimal import Decimal
from functools import lru_cache
from typing import Any, Final

from .cid import CID
from .decimals import exact, parse_decimal
from .errors import InvalidData
from .identity import public_key_from_did
from .names import check_name
from .rates import ACTIONS, MAX_CLASSIFICATION_CHARS
from .rules import Rules

EVENT_KIND: Final = "vf.event"
ENDORSE_KIND: Final = "vf.endorse"
ADMIT_KIND: Final = "member.admit"
LEAVE_KIND: Final = "member.leave"
ABOUT_KIND: Final = "member.about"
MAX_NAME_CHARS: Final = 80
# A name people read: no control characters, no leading or trailing space.
_NAME: Final = re.compile(r"[^\x00-\x1f\x7f\s](?:[^\x00-\x1f\x7f]*[^\x00-\x1f\x7f\s])?")
#: Kinds that only members may write (their payload names the author's admission as `member`).
MEMBER_PREFIXES: Final = ("ledger.", "vf.", "member.", "gov.", "key.")
#: Actions whose quantity is effort (time spent or used); the others move or change a resource.
EFFORT_ACTIONS: Final = frozenset({"work", "use"})
MAX_NOTE_CHARS: Final = 2000
MAX_CLASSIFICATIONS: Final = 8
MAX_SPONSORS_NAMED: Final = 64
# What a rate key may name after "ACTION:" (protocol/rules.py), so every priced classification can be logged.
_CLASSIFICATION: Final = re.compile(rf"[^\s\x00-\x1f\x7f]{{1,{MAX_CLASSIFICATION_CHARS}}}")

_EVENT_KEYS: Final = frozenset({
    "action", "provider", "receiver", "effortQuantity", "resourceQuantity", "resourceClassifiedAs",
    "hasPointInTime", "hasBeginning", "hasEnd", "note", "corrects", "member", "fulfills",
})


def needs_membership(kind: str) -> bool:
    return kind.startswith(MEMBER_PREFIXES) and kind != "ledger.genesis"


@dataclass(frozen=True, slots=True)
class Quantity:
    value: Decimal
    unit: str


@dataclass(frozen=True, slots=True)
class Event:
    """A ValueFlows EconomicEvent. Agents are did:keys, or the ledger's id for the coop itself."""

    action: str
    provider: str
    receiver: str
    quantity: Quantity
    effort: bool  # effortQuantity (work, use) or resourceQuantity
    classifications: tuple[str, ...]
    point: str | None
    beginning: str | None
    end: str | None
    note: str
    corrects: CID | None
    member: CID
    fulfills: CID | None = None  # a pledge (vf.commitment) this transfer pays (protocol/pledges.py)
    #: seconds since the epoch of `point`, else `beginning` (None without either): parsed once, here, not on
    #: every page that sorts or dates events
    at: float | None = None

    @property
    def classification(self) -> str | None:
        return self.classifications[0] if self.classifications else None


@dataclass(frozen=True, slots=True)
class Endorsement:
    event: CID
    accept: bool
    note: str
    member: CID


@dataclass(frozen=True, slots=True)
class Admission:
    """A sponsorship: the author vouches for `agent`; `with_` names earlier sponsorships it saw."""

    agent: str
    with_: tuple[CID, ...]
    member: CID


@dataclass(frozen=True, slots=True)
class Leave:
    member: CID


@dataclass(frozen=True, slots=True)
class About:
    """What a member says about themselves in a ledger: the name the others see."""

    name: str
    member: CID


def check_keys(body: dict[str, Any], allowed: frozenset[str], kind: str) -> None:
    if body.keys() <= allowed:  # the usual case, without building a set
        return
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise InvalidData("unknown_field", f"{kind} has unknown field(s): {', '.join(unknown)}")


def _link(body: dict[str, Any], key: str, kind: str, *, required: bool = True) -> CID | None:
    value = body.get(key)
    if value is None and not required:
        return None
    if not isinstance(value, CID):
        raise InvalidData("bad_reference", f"{kind}.{key} must be a link to an entry")
    return value


def _text(body: dict[str, Any], key: str, limit: int) -> str:
    value = body.get(key, "")
    if not isinstance(value, str) or len(value) > limit:
        raise InvalidData("bad_field", f"{key} must be text of at most {limit} characters")
    return value


def _agent(value: object, key: str, ledger: CID) -> str:
    """A did:key, or the ledger's id (the coop itself)."""
    return _party(value, key, str(ledger))


def _party(value: object, key: str, coop: str) -> str:
    """`_agent` with the ledger's id as text, made once per payload rather than once per agent."""
    if value == coop:
        return coop
    if type(value) is str and value in _DIDS:  # a str subclass is checked, not looked up
        return value
    if not isinstance(value, str):
        raise InvalidData("bad_agent", f"{key} must be a did:key or the ledger's id")
    try:
        public_key_from_did(value)
    except InvalidData as exc:
        raise InvalidData("bad_agent", f"{key}: {exc.message}") from None
    if type(value) is str and len(_DIDS) < _DIDS_KEPT:
        _DIDS.add(value)
    return value


#: did:keys found valid before: a ledger's events name its few members again and again; bounded.
_DIDS: Final[set[str]] = set()
_DIDS_KEPT: Final = 4096


@lru_cache(maxsize=16)
def _coop(ledger: bytes) -> str:
    """A ledger's id as text (the coop as an agent), by its bytes: a fold parses one ledger's events in a row."""
    return str(CID(ledger))


def parse_time(value: object, key: str) -> datetime:
    """An ISO 8601 date (midnight UTC) or date-time; a date-time must carry its offset (Z or ±hh:mm)."""
    if not isinstance(value, str) or not 8 <= len(value) <= 40:
        raise InvalidData("bad_time", f"{key} must be an ISO 8601 date or date-time")
    try:
        if "T" not in value:
            d = date.fromisoformat(value)
            return datetime(d.year, d.month, d.day, tzinfo=UTC)
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise InvalidData("bad_time", f"{key} {value!r} is not an ISO 8601 date or date-time") from None
    if parsed.tzinfo is None:
        raise InvalidData("bad_time", f"{key} {value!r} needs a UTC offset, e.g. 2026-11-27T10:00:00Z")
    return parsed


@lru_cache(maxsize=4096)
def _seconds(value: str) -> float:
    """`parse_time(value).timestamp()`, remembered: a ledger's events repeat their days and times."""
    return parse_time(value, "time").timestamp()


def _at(value: object, key: str) -> float:
    """Seconds since the epoch of a time in a payload; a refused one is parsed again to name its key."""
    if type(value) is str:  # a str subclass is parsed, not looked up
        try:
            return _seconds(value)
        except InvalidData:
            pass
    return parse_time(value, key).timestamp()


def instant(value: str) -> float:
    """Seconds since the epoch of a validated time."""
    return parse_time(value, "time").timestamp()


def _quantity(value: object, key: str, rules: Rules) -> Quantity:
    if not isinstance(value, dict) or value.keys() != _QUANTITY_KEYS:
        raise InvalidData("bad_quantity", f"{key} must be {{hasNumericalValue, hasUnit}}")
    text, unit = value["hasNumericalValue"], value["hasUnit"]
    if type(text) is str and type(unit) is str:  # str subclasses are parsed, not looked up
        seen = _QUANTITIES.get((text, unit))
        if seen is not None:  # its number was valid and more than 0; its unit may not be this ledger's
            if unit not in rules.units:
                _unknown_unit(unit, rules)
            return seen
    number = parse_decimal(text, f"{key}.hasNumericalValue")
    if number <= 0:
        raise InvalidData("bad_quantity", f"{key}.hasNumericalValue must be more than 0")
    if not isinstance(unit, str) or unit not in rules.units:
        _unknown_unit(unit, rules)
    quantity = Quantity(number, sys.intern(unit))
    if type(text) is str and type(unit) is str and len(_QUANTITIES) < _QUANTITIES_KEPT:
        _QUANTITIES[text, unit] = quantity
    return quantity


def _unknown_unit(unit: object, rules: Rules) -> None:
    units = ", ".join(rules.units)
    raise InvalidData("unknown_unit", f"unit {unit!r:.40} is not one of this ledger's units: {units}")


_QUANTITY_KEYS: Final = frozenset({"hasNumericalValue", "hasUnit"})
#: Quantities parsed before (immutable), by their text and unit: a ledger's quantities repeat ("1" hour), so a
#: fold parses each once and keeps one record of it; bounded, so any text cannot fill it.
_QUANTITIES: Final[dict[tuple[str, str], Quantity]] = {}
_QUANTITIES_KEPT: Final = 4096


def _classifications(classes: object) -> bool:
    """A list of at most MAX_CLASSIFICATIONS names a rate key may hold."""
    if not isinstance(classes, list) or len(classes) > MAX_CLASSIFICATIONS:
        return False
    for c in classes:
        if type(c) is str and c in _CLASSES:
            continue
        if not isinstance(c, str) or not _CLASSIFICATION.fullmatch(c):
            return False
        if type(c) is str and len(_CLASSES) < _CLASSES_KEPT:
            _CLASSES.add(c)
    return True


#: Classifications found valid before: a ledger names the same skills again and again; bounded.
_CLASSES: Final[set[str]] = set()
_CLASSES_KEPT: Final = 4096


#: What an event without resourceClassifiedAs is parsed as; told apart from any value a payload holds by identity.
_NO_CLASSES: Final[list[str]] = []


def parse_event(body: dict[str, Any], *, author: str, ledger: CID, rules: Rules) -> Event:
    # The usual values are taken inline (no call): a fold parses every event; the calls check (and refuse) the rest.
    if not body.keys() <= _EVENT_KEYS:
        check_keys(body, _EVENT_KEYS, EVENT_KIND)
    action = body.get("action")
    if not isinstance(action, str) or action not in ACTIONS:
        raise InvalidData("unknown_action", f"action {action!r:.40} is not a ValueFlows action")
    effort = action in EFFORT_ACTIONS
    want_key, other_key = ("effortQuantity", "resourceQuantity") if effort else ("resourceQuantity", "effortQuantity")
    if want_key not in body:
        raise InvalidData("bad_quantity", f"a {action} event takes {want_key}")
    if other_key in body:
        raise InvalidData("bad_quantity", f"a {action} event takes {want_key}, not {other_key}")
    quantity = _quantity(body[want_key], want_key, rules)
    coop = _coop(ledger.raw)
    provider = body.get("provider", author)
    if type(provider) is not str or provider not in _DIDS:
        provider = _party(provider, "provider", coop)
    receiver = body.get("receiver", coop)
    if receiver is not coop:
        receiver = _party(receiver, "receiver", coop)
    if author not in (provider, receiver) and not rules.log_for_others:
        raise InvalidData("not_party", "the author must be the provider or the receiver (the rules do not allow "
                          "logging for others)")
    classes = body.get("resourceClassifiedAs", _NO_CLASSES)
    if classes is not _NO_CLASSES and not _classifications(classes):
        raise InvalidData("bad_field", f"resourceClassifiedAs must be a list of at most {MAX_CLASSIFICATIONS} names "
                          f"of 1 to {MAX_CLASSIFICATION_CHARS} characters without spaces")
    point, beginning, end = body.get("hasPointInTime"), body.get("hasBeginning"), body.get("hasEnd")
    if point is not None and (beginning is not None or end is not None):
        raise InvalidData("bad_time_range", "give hasPointInTime, or hasBeginning and hasEnd, not both")
    at = None
    if point is not None:
        at = _at(point, "hasPointInTime")
    if (beginning is None) != (end is None):
        raise InvalidData("bad_time_range", "hasBeginning and hasEnd go together")
    if beginning is not None and end is not None:
        at = _at(beginning, "hasBeginning")
        if at > _at(end, "hasEnd"):
            raise InvalidData("bad_time_range", "hasBeginning is after hasEnd")
    note = body.get("note", "")
    if type(note) is not str or len(note) > MAX_NOTE_CHARS:
        note = _text(body, "note", MAX_NOTE_CHARS)
    corrects = body.get("corrects")
    if corrects is not None and not isinstance(corrects, CID):
        _link(body, "corrects", EVENT_KIND, required=False)
    member = body.get("member")
    if not isinstance(member, CID):
        member = member_link(body, EVENT_KIND)
    fulfills = body.get("fulfills")
    if fulfills is not None and not isinstance(fulfills, CID):
        _link(body, "fulfills", EVENT_KIND, required=False)
    # Names that recur across a ledger's events are kept once (sys.intern): a fold keeps every event it applied.
    # Made through its slots: a frozen dataclass's __init__ sets each field with object.__setattr__ (twice the cost).
    event: Event = _new(Event)
    _EV_ACTION(event, sys.intern(action))
    _EV_PROVIDER(event, sys.intern(provider))
    _EV_RECEIVER(event, sys.intern(receiver))
    _EV_QUANTITY(event, quantity)
    _EV_EFFORT(event, effort)
    _EV_CLASSIFICATIONS(event, () if classes is _NO_CLASSES else tuple([sys.intern(c) for c in classes]))
    _EV_POINT(event, point)
    _EV_BEGINNING(event, beginning)
    _EV_END(event, end)
    _EV_NOTE(event, note)
    _EV_CORRECTS(event, corrects)
    _EV_MEMBER(event, member)
    _EV_FULFILLS(event, fulfills)
    _EV_AT(event, at)
    return event


_new: Final = object.__new__
(_EV_ACTION, _EV_PROVIDER, _EV_RECEIVER, _EV_QUANTITY, _EV_EFFORT, _EV_CLASSIFICATIONS, _EV_POINT, _EV_BEGINNING,
 _EV_END, _EV_NOTE, _EV_CORRECTS, _EV_MEMBER, _EV_FULFILLS, _EV_AT) = (
    vars(Event)[f.name].__set__ for f in fields(Event))
_EN_EVENT, _EN_ACCEPT, _EN_NOTE, _EN_MEMBER = (vars(Endorsement)[f.name].__set__ for f in fields(Endorsement))


def member_link(body: dict[str, Any], kind: str) -> CID:
    value = body.get("member")
    if not isinstance(value, CID):
        raise InvalidData("not_member", f"{kind} must name the author's admission (or the genesis) as member")
    return value


_ENDORSE_KEYS: Final = frozenset({"event", "verdict", "note", "member"})


def parse_endorsement(body: dict[str, Any]) -> Endorsement:
    # The usual shape checked inline; anything else by the checks below, which raise what they raise.
    event, verdict, member, note = body.get("event"), body.get("verdict"), body.get("member"), body.get("note", "")
    if (body.keys() <= _ENDORSE_KEYS and (verdict == "accept" or verdict == "reject") and isinstance(event, CID)
            and isinstance(member, CID) and type(note) is str and len(note) <= MAX_NOTE_CHARS):
        endorsement: Endorsement = _new(Endorsement)
        _EN_EVENT(endorsement, event)
        _EN_ACCEPT(endorsement, verdict == "accept")
        _EN_NOTE(endorsement, note)
        _EN_MEMBER(endorsement, member)
        return endorsement
    check_keys(body, _ENDORSE_KEYS, ENDORSE_KIND)
    verdict = body.get("verdict")
    if verdict not in ("accept", "reject"):
        raise InvalidData("bad_field", "verdict must be accept or reject")
    event = _link(body, "event", ENDORSE_KIND)
    assert event is not None
    return Endorsement(event, verdict == "accept", _text(body, "note", MAX_NOTE_CHARS), member_link(body, ENDORSE_KIND))


def parse_admission(body: dict[str, Any], ledger: CID) -> Admission:
    check_keys(body, frozenset({"agent", "with", "member"}), ADMIT_KIND)
    agent = _agent(body.get("agent"), "agent", ledger)
    if agent == str(ledger):
        raise InvalidData("bad_agent", "agent must be a did:key")
    named = body.get("with", [])
    if not isinstance(named, list) or len(named) > MAX_SPONSORS_NAMED or not all(isinstance(c, CID) for c in named):
        raise InvalidData("bad_reference", f"with must list at most {MAX_SPONSORS_NAMED} links to sponsorships")
    return Admission(agent, tuple(sorted(set(named), key=lambda c: c.raw)), member_link(body, ADMIT_KIND))


def parse_leave(body: dict[str, Any]) -> Leave:
    check_keys(body, frozenset({"member", "note"}), LEAVE_KIND)
    _text(body, "note", MAX_NOTE_CHARS)
    return Leave(member_link(body, LEAVE_KIND))


def parse_about(body: dict[str, Any]) -> About:
    check_keys(body, frozenset({"name", "member"}), ABOUT_KIND)
    name = body.get("name")
    if not isinstance(name, str) or not 1 <= len(name) <= MAX_NAME_CHARS or not _NAME.fullmatch(name):
        raise InvalidData("bad_field", f"name must be text of 1 to {MAX_NAME_CHARS} characters, without control "
                          "characters or spaces at either end")
    return About(check_name(name, "name"), member_link(body, ABOUT_KIND))


def claim_value(event: Event, rules: Rules) -> Decimal:
    """The contribution's claim value under `rules`: quantity × rate (0 without a rate)."""
    rate = rules.rate(event.action, event.classification, event.quantity.unit)
    if rate is None:
        return Decimal(0)
    with exact():
        return event.quantity.value * rate
