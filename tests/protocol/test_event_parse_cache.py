"""`parse_event` remembers quantities, classifications, times and did:keys it parsed before
(protocol/valueflows.py): with those remembered it returns exactly what it returns with nothing remembered,
the same record or the same refusal (code and message), whatever rules, and whatever was remembered under
other rules. `parse_endorsement` checks the usual shape inline: it refuses as its documented checks do."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from protocol_helpers import FAST, key

from protocol import InvalidData
from protocol.cid import CID
from protocol.identity import public_key_from_did
from protocol.rules import Rules
from protocol.valueflows import (
    _CLASSES,
    _DIDS,
    _QUANTITIES,
    Endorsement,
    Event,
    _coop,
    _seconds,
    parse_endorsement,
    parse_event,
    parse_time,
)

A = key(1)
B = key(2)
LEDGER = CID(bytes.fromhex("01711220") + bytes(range(32)))
MEMBER = CID(bytes.fromhex("01711220") + bytes(range(1, 33)))
RULES = [Rules.from_config({"units": units, "rates": {}}, name="coop", creator=A.did) for units in
         (["hour", "euro"], ["hour"], ["euro", "day"])]

numbers = st.one_of(st.sampled_from(["1", "2.5", "2.50", "0", "-1", "0.0", "1e3", " 1", "007", "1.", ""]),
                    st.integers(-2, 3).map(str), st.integers(-2, 3), st.floats(0.5, 2), st.none())
units = st.one_of(st.sampled_from(["hour", "euro", "day", "Hour", ""]), st.integers(0, 1), st.none())
quantities = st.one_of(
    st.fixed_dictionaries({"hasNumericalValue": numbers, "hasUnit": units}),
    st.fixed_dictionaries({"hasNumericalValue": numbers}),
    st.fixed_dictionaries({"hasNumericalValue": numbers, "hasUnit": units, "extra": st.just(1)}),
    st.sampled_from([None, "1 hour", ["1", "hour"]]),
)
times = st.one_of(
    st.sampled_from(["2025-03-04", "2025-03-04T10:00:00Z", "2025-03-04T09:00:00+01:00", "2025-03-04T10:00:00",
                     "2025-02-30", "2025-3-4", "yesterday", "2025-03-04T10:00:00.5Z", "20250304", ""]),
    st.datetimes().map(lambda d: d.isoformat() + "Z"), st.dates().map(str), st.integers(0, 10), st.none(),
)
classes = st.one_of(
    st.lists(st.one_of(st.sampled_from(["design", "repair", "x" * 64, "x" * 65, "two words", "", "tab\t"]),
                       st.text(max_size=5), st.integers(0, 2)), max_size=9),
    st.sampled_from([None, "design", ("design",)]),
)

parties = st.sampled_from([A.did, B.did, str(LEDGER), "did:key:z6Mk", "did:web:x", A.did + "x", None, 1])
notes = st.sampled_from(["", "fixed the roof", "x" * 2000, "x" * 2001, None, 1, ["a"]])
links = st.sampled_from([MEMBER, LEDGER, None, str(MEMBER), b"\x01", 0])


@st.composite
def bodies(draw: st.DrawFn) -> dict[str, Any]:
    action = draw(st.sampled_from(["work", "use", "transfer", "cite", "produce", "dance"]))
    body: dict[str, Any] = {"action": action, "member": MEMBER}
    body[draw(st.sampled_from(["effortQuantity", "resourceQuantity"]))] = draw(quantities)
    for name, values in (("hasPointInTime", times), ("hasBeginning", times), ("hasEnd", times),
                         ("resourceClassifiedAs", classes), ("provider", parties), ("receiver", parties),
                         ("note", notes), ("corrects", links), ("fulfills", links), ("member", links)):
        if draw(st.booleans()):
            body[name] = draw(values)
    return body


def outcome(body: dict[str, Any], rules: Rules) -> Event | tuple[str, str]:
    try:
        return parse_event(body, author=A.did, ledger=LEDGER, rules=rules)
    except InvalidData as exc:
        return exc.code, exc.message


def forget() -> None:
    _QUANTITIES.clear()
    _CLASSES.clear()
    _seconds.cache_clear()
    _DIDS.clear()
    _coop.cache_clear()


@FAST
@given(st.lists(st.tuples(bodies(), st.sampled_from(RULES)), min_size=1, max_size=6))
def test_what_is_remembered_changes_nothing(parses: list[tuple[dict[str, Any], Rules]]) -> None:
    cold = {}
    for i, (body, _) in enumerate(parses):
        for j, rules in enumerate(RULES):
            forget()
            cold[i, j] = outcome(body, rules)
    forget()
    # Each parse remembering what those before it parsed, then everything remembered, under every rules.
    for i, (body, rules) in enumerate(parses):
        assert outcome(body, rules) == cold[i, RULES.index(rules)]
    for i, (body, _) in enumerate(parses):
        for j, rules in enumerate(RULES):
            assert outcome(body, rules) == cold[i, j]
    for (i, _), event in cold.items():
        if isinstance(event, Event):  # the time is the general parse's
            body = parses[i][0]
            when = body.get("hasPointInTime", body.get("hasBeginning"))
            assert event.at == (None if when is None else parse_time(when, "time").timestamp())
            for party in (event.provider, event.receiver):  # the coop, or a did:key (which raises otherwise)
                assert party == str(LEDGER) or public_key_from_did(party)


def test_the_coop_is_the_ledger_the_event_is_parsed_for() -> None:
    body = {"action": "work", "member": MEMBER, "effortQuantity": {"hasNumericalValue": "1", "hasUnit": "hour"},
            "receiver": str(LEDGER)}
    assert parse_event(body, author=A.did, ledger=LEDGER, rules=RULES[0]).receiver == str(LEDGER)
    with pytest.raises(InvalidData) as refused:
        parse_event(body, author=A.did, ledger=MEMBER, rules=RULES[0])
    assert refused.value.code == "bad_agent"
    assert parse_event({**body, "receiver": str(MEMBER)}, author=A.did, ledger=MEMBER, rules=RULES[0]).receiver \
        == str(MEMBER)


def test_a_remembered_quantity_is_still_refused_where_its_unit_is_not_a_unit() -> None:
    body = {"action": "work", "member": MEMBER, "effortQuantity": {"hasNumericalValue": "3", "hasUnit": "euro"}}
    forget()
    assert isinstance(outcome(body, RULES[0]), Event)
    assert _QUANTITIES  # remembered
    assert outcome(body, RULES[1]) == ("unknown_unit", "unit 'euro' is not one of this ledger's units: hour")


ABSENT = object()
# Mostly the usual shape, so that each check is reached often with the others passing.
ENDORSE_PARTS = {
    "event": st.sampled_from([MEMBER, MEMBER, MEMBER, LEDGER, ABSENT, None, str(MEMBER), 1]),
    "verdict": st.sampled_from(["accept", "accept", "reject", ABSENT, "Accept", "", None, True]),
    "note": st.one_of(st.just(ABSENT), notes),
    "member": st.sampled_from([MEMBER, MEMBER, LEDGER, ABSENT, None, str(MEMBER), b"\x01"]),
    "extra": st.sampled_from([ABSENT, ABSENT, ABSENT, 1]),
}


@FAST
@given(st.fixed_dictionaries(ENDORSE_PARTS).map(lambda d: {k: v for k, v in d.items() if v is not ABSENT}))
def test_an_endorsement_is_refused_by_its_first_failing_check(body: dict[str, Any]) -> None:
    # The checks in their order (protocol/valueflows.py parse_endorsement), each with its code.
    expected: Endorsement | tuple[str, str]
    note = body.get("note", "")
    if "extra" in body:
        expected = ("unknown_field", "vf.endorse has unknown field(s): extra")
    elif body.get("verdict") not in ("accept", "reject"):
        expected = ("bad_field", "verdict must be accept or reject")
    elif not isinstance(body.get("event"), CID):
        expected = ("bad_reference", "vf.endorse.event must be a link to an entry")
    elif not isinstance(note, str) or len(note) > 2000:
        expected = ("bad_field", "note must be text of at most 2000 characters")
    elif not isinstance(body.get("member"), CID):
        expected = ("not_member", "vf.endorse must name the author's admission (or the genesis) as member")
    else:
        expected = Endorsement(body["event"], body["verdict"] == "accept", note, body["member"])
    try:
        got: Endorsement | tuple[str, str] = parse_endorsement(body)
    except InvalidData as exc:
        got = exc.code, exc.message
    assert got == expected
