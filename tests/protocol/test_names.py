"""Names people read (SPEC.md §16.1 "Names"): bad_name as a validity rule, confusable skeletons (TR39)."""

from __future__ import annotations

import unicodedata

import pytest
from test_state import A, B, C, Coop, problem

from protocol import InvalidData
from protocol.confusables import VERSION, prototypes
from protocol.names import check_name, check_not_confusable, normalize, resembles, skeleton
from protocol.rules import Rules

CYRILLIC_ALICE = "\u0410lice"  # А (U+0410) then "lice"
BAD = [
    "\u202eecilA",  # right-to-left override
    "Ali\u2066ce",  # a bidi isolate
    "\u200b\u200b",  # only zero-width spaces
    "\u200d",  # only a zero-width joiner
    "\u00ad\u2060\ufeff",  # only invisible characters
    "Ali\u0085ce",  # a C1 control (NEL)
    "Ali\u2028ce",  # a line separator
    "Cafe\u0301",  # NFD: e + combining acute, not NFC
]


@pytest.mark.parametrize("name", BAD)
def test_unreadable_names_are_bad_name(name: str) -> None:
    with pytest.raises(InvalidData) as exc:
        check_name(name, "name")
    assert exc.value.code == "bad_name"


@pytest.mark.parametrize("name", ["Alice", "Café", "李小龍", "Zoë & co", "👩\u200d🔧 Ana", "علی\u200cرضا"])
def test_readable_names_pass(name: str) -> None:
    assert check_name(name, "name") == name  # a zero-width joiner inside a name is fine; only-invisible is not


def test_a_member_about_with_a_bad_name_is_invalid_evidence() -> None:
    coop = Coop([A])
    entries = [coop.append(A, "member.about", {"name": name, "member": coop.id}) for name in BAD]
    state = coop.state()
    assert [problem(state, e) for e in entries] == ["bad_name"] * len(BAD) and state.names == {}


def test_a_ledger_name_that_is_unreadable_is_bad_name_and_a_typed_one_is_normalised() -> None:
    with pytest.raises(InvalidData) as exc:
        Rules.from_config({}, name="Bike\u202e coop", creator=A.did)
    assert exc.value.code == "bad_name"
    rules = Rules.from_config({}, name="  Cafe\u0301 coop ", creator=A.did)
    assert rules.name == "Café coop" and unicodedata.is_normalized("NFC", rules.name)
    assert Rules.from_body(rules.to_body()).name == "Café coop"
    assert normalize(" Cafe\u0301 ") == "Café"


def test_skeletons_follow_tr39() -> None:
    assert VERSION == "13.0.0" and len(prototypes()) > 6000
    assert skeleton(CYRILLIC_ALICE) == skeleton("Alice")
    assert skeleton("paypal") == skeleton("pаypаl")  # two Cyrillic а
    assert skeleton("l0g") == skeleton("lOg")  # digit zero and capital O share a prototype
    assert skeleton("Alice") != skeleton("Alicia")
    assert skeleton("alice") != skeleton("Alice")  # case is not confusable by TR39


def test_a_name_that_reads_as_another_members_is_confusable_name() -> None:
    names = {A.did: "Alice", B.did: "Bob"}
    for copy in (CYRILLIC_ALICE, "Alice"):
        assert resembles(copy, C.did, names) == A.did
        with pytest.raises(InvalidData) as exc:
            check_not_confusable(copy, C.did, names)
        assert exc.value.code == "confusable_name" and A.did in exc.value.message
    check_not_confusable("Alice", A.did, names)  # one's own name again is fine
    check_not_confusable("Carol", C.did, names)
    assert resembles("Bob", B.did, names) is None
