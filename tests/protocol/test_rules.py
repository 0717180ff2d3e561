"""A ledger's rules (protocol/rules.py and what it reads with): the TOML form, defaults, every refusal, the genesis
round trip."""

from __future__ import annotations

import itertools
import re
import tomllib
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocol import InvalidData, SigningKey, dagcbor
from protocol.amendments import Amendment
from protocol.buckets import Bucket
from protocol.decimals import MAX_DECIMAL_PLACES, format_decimal, parse_decimal
from protocol.names import check_name
from protocol.rates import ACTIONS
from protocol.rules import UNIT_PATTERN, Rules, Validation, Voting

DIDS = [SigningKey(bytes([i]) * 32).did for i in range(1, 7)]
CREATOR, ANA, BEN = DIDS[0], DIDS[1], DIDS[2]
VF_TTL = Path(__file__).resolve().parents[1] / "data" / "valueflows" / "all_vf.TTL"  # see tests/data/README.md

#: The form coops write by hand (README "Ledger rules"), exactly.
EXAMPLE_TOML = f"""
visibility = "members"            # or "public"
founders = ["{CREATOR}", "{ANA}"]
units = ["hour", "euro", "day"]
[validation]
accept = 2                        # K
reject = 1                        # R
[rates.work]
hour = "20"                       # claim value of one hour of work
[rates."work:engineering"]
hour = "30"                       # action:classification beats the action's own rate
[rates.transfer]
euro = "1"
[rates.use]
day = "25"
[[buckets]]
name = "reserve"
percent = "10"
recipient = "ledger"              # the coop itself (the ledger's id), or a did:key
[[buckets]]
name = "members"
percent = "90"
mode = "straight"                 # or "remaining"
claims = "equity"                 # or "debt", "once"
[voting]
min = 0
max = 5
blank = "zero"                    # or "no-opinion"
"""

EXAMPLE_BODY: dict[str, Any] = {
    "name": "Bike coop",
    "visibility": "members",
    "purpose": "",
    "founders": sorted([CREATOR, ANA]),
    "units": ["hour", "euro", "day"],
    "validation": {"accept": 2, "reject": 1},
    "rates": {"work": {"hour": "20"}, "work:engineering": {"hour": "30"}, "transfer": {"euro": "1"},
              "use": {"day": "25"}},
    "buckets": [
        {"name": "reserve", "percent": "10", "recipient": "ledger", "mode": "straight", "claims": "equity",
         "actions": []},
        {"name": "members", "percent": "90", "recipient": None, "mode": "straight", "claims": "equity",
         "actions": []},
    ],
    "voting": {"min": 0, "max": 5, "blank": "zero", "quorum": "0.5"},
    "log_for_others": False,
    "version": 2,
    "pledge_claims": False,
}

DEFAULT_BODY: dict[str, Any] = {
    "name": "Bike coop",
    "visibility": "members",
    "purpose": "",
    "founders": [CREATOR],
    "units": ["hour", "euro", "day"],
    "validation": {"accept": 1, "reject": 1},
    "rates": {"work": {"hour": "1"}, "transfer": {"euro": "1"}, "use": {"day": "1"}},
    "buckets": [{"name": "members", "percent": "100", "recipient": None, "mode": "straight", "claims": "equity",
                 "actions": []}],
    "voting": {"min": 0, "max": 5, "blank": "zero", "quorum": "0.5"},
    "log_for_others": False,
    "version": 2,
    "pledge_claims": False,
}


def from_config(config: dict[str, Any], **kw: Any) -> Rules:
    return Rules.from_config(config, name=kw.pop("name", "Bike coop"), creator=kw.pop("creator", CREATOR), **kw)


def refused(config: dict[str, Any]) -> InvalidData:
    with pytest.raises(InvalidData) as info:
        from_config(config)
    return info.value


def bucket(**fields: Any) -> dict[str, Any]:
    return {"name": "members", "percent": "100", **fields}


# ---- the hand-written form ---------------------------------------------------------


def test_the_example_file_parses() -> None:
    rules = from_config(tomllib.loads(EXAMPLE_TOML))
    assert rules.to_body() == EXAMPLE_BODY
    assert rules.founders == tuple(sorted([CREATOR, ANA]))
    assert rules.validation == Validation(accept=2, reject=1)
    assert rules.buckets[0] == Bucket("reserve", Decimal(10), "ledger", "straight", "equity")
    assert rules.buckets[1] == Bucket("members", Decimal(90), None, "straight", "equity", ())
    assert rules.voting == Voting(min=0, max=5, blank="zero", quorum=Decimal("0.5"))
    assert rules.log_for_others is False


def test_the_example_round_trips_through_a_genesis_body() -> None:
    rules = from_config(tomllib.loads(EXAMPLE_TOML))
    body = rules.to_body()
    assert Rules.from_body(body) == rules
    block = dagcbor.encode(body)
    assert dagcbor.encode(rules.to_body()) == block  # stable
    decoded = dagcbor.decode(block, max_bytes=len(block))
    assert Rules.from_body(decoded) == rules
    assert dagcbor.encode(Rules.from_body(decoded).to_body()) == block


def test_rates_classification_beats_action_per_unit() -> None:
    rules = from_config({**tomllib.loads(EXAMPLE_TOML), "rates": {
        "work": {"hour": "20", "day": "150"}, "work:engineering": {"hour": "30"}, "use": {"day": "25"},
    }})
    assert rules.rate("work", "engineering", "hour") == Decimal(30)
    assert rules.rate("work", "engineering", "day") == Decimal(150)  # falls back to the action's rate for that unit
    assert rules.rate("work", None, "hour") == Decimal(20)
    assert rules.rate("work", "cooking", "hour") == Decimal(20)
    assert rules.rate("use", None, "hour") is None
    assert rules.rate("cite", None, "hour") is None
    assert rules.rate("transfer", None, "euro") is None  # rates replace the defaults, they are not merged


def test_rates_take_integers_and_classifications_may_be_uris() -> None:
    rules = from_config({"rates": {"work": {"hour": 20}, "work:https://skills.example/eng#backend": {"hour": "32.50"}}})
    assert rules.rate("work", "https://skills.example/eng#backend", "hour") == Decimal("32.5")
    assert rules.to_body()["rates"] == {"work": {"hour": "20"}, "work:https://skills.example/eng#backend":
                                        {"hour": "32.5"}}


def test_optional_keys() -> None:
    rules = from_config({
        "purpose": "Repair bikes together", "log_for_others": True, "voting": {"quorum": "0.25", "blank": "no-opinion"},
        "buckets": [bucket(name="work", percent="60", actions=["work", "deliverService"], claims="debt"),
                    bucket(name="tools", percent="40", actions=["use"], recipient=BEN, claims="once")],
    })
    assert rules.purpose == "Repair bikes together" and rules.log_for_others is True
    assert rules.voting == Voting(0, 5, "no-opinion", Decimal("0.25"))
    assert rules.buckets[0].actions == ("deliverService", "work")  # a set: stored sorted
    assert rules.buckets[1].recipient == BEN
    assert Rules.from_body(rules.to_body()) == rules


def test_the_recovery_quorum_is_optional_and_written_only_when_set() -> None:
    plain = from_config({"validation": {"accept": 3}})
    assert "recovery" not in plain.to_body() and plain.recovery == 3  # the admission quorum
    rules = from_config({"validation": {"accept": 3}, "recovery": {"quorum": 2}})
    assert rules.to_body()["recovery"] == {"quorum": 2} and rules.recovery == 2
    assert Rules.from_body(rules.to_body()) == rules
    for bad, code in (({"recovery": {"quorum": 0}}, "bad_rules"), ({"recovery": {"quorum": "2"}}, "bad_rules"),
                      ({"recovery": {"quorm": 2}}, "unknown_rule_key"),
                      ({"version": 1, "recovery": {"quorum": 2}}, "bad_rules")):
        with pytest.raises(InvalidData) as refused:
            from_config(bad)
        assert refused.value.code == code, bad
    version1 = {k: v for k, v in from_config({"version": 1}).to_body().items()}
    with pytest.raises(InvalidData) as refused:
        Rules.from_body({**version1, "recovery": {"quorum": 2}})
    assert refused.value.code == "unknown_rule_key"



def test_the_time_zone_is_optional_spelled_as_iana_names_and_written_only_when_set() -> None:
    plain = from_config({})
    assert "timezone" not in plain.to_body() and plain.timezone is None  # shown in UTC; the body is unchanged
    for name in ("Europe/Berlin", "UTC", "America/Argentina/Buenos_Aires", "Etc/GMT+3"):
        rules = from_config({"timezone": name})
        assert rules.to_body()["timezone"] == name and Rules.from_body(rules.to_body()) == rules
    for bad, code in (({"timezone": "../etc/passwd"}, "bad_rules"), ({"timezone": "/etc/localtime"}, "bad_rules"),
                      ({"timezone": "Europe/Berlin "}, "bad_rules"), ({"timezone": 1}, "bad_rules"),
                      ({"timezone": "A/" + "b" * 70}, "bad_rules"), ({"timezone": "a/b/c/d"}, "bad_rules"),
                      ({"version": 1, "timezone": "UTC"}, "bad_rules")):
        with pytest.raises(InvalidData) as refused:
            from_config(bad)
        assert refused.value.code == code, bad
    version1 = from_config({"version": 1}).to_body()
    with pytest.raises(InvalidData) as refused:
        Rules.from_body({**version1, "timezone": "UTC"})
    assert refused.value.code == "unknown_rule_key"
    # amendable: members may move the ledger to another zone by vote
    moved = Amendment.from_config({"timezone": "Europe/Madrid"}).apply(from_config({"timezone": "Europe/Berlin"}))
    assert moved.timezone == "Europe/Madrid"
    with pytest.raises(InvalidData) as refused:
        Amendment.from_config({"timezone": "Europe/../passwd"})
    assert refused.value.code == "bad_amendment"


# ---- defaults --------------------------------------------------------------------------


def test_defaults() -> None:
    assert from_config({}).to_body() == DEFAULT_BODY


def test_public_forces_visibility_and_the_file_may_say_public() -> None:
    assert from_config({}, public=True).visibility == "public"
    assert from_config({"visibility": "members"}, public=True).visibility == "public"
    assert from_config({"visibility": "public"}).visibility == "public"


def test_name_is_trimmed() -> None:
    assert from_config({}, name="  Bike coop ").name == "Bike coop"


def test_remaining_mode() -> None:
    rules = from_config({"buckets": [
        bucket(name="reserve", percent="20", mode="remaining", recipient="ledger"),
        bucket(name="loans", percent="50", mode="remaining", claims="debt"),
        bucket(name="members", percent="100", mode="remaining"),
    ]})
    assert [b.percent for b in rules.buckets] == [Decimal(20), Decimal(50), Decimal(100)]
    assert Rules.from_body(rules.to_body()) == rules


def test_version_2_mixes_straight_buckets_off_the_top_with_remaining_ones() -> None:
    rules = from_config({"buckets": [
        bucket(name="reserve", percent="10", recipient="ledger"),
        bucket(name="education", percent="5", recipient="ledger"),
        bucket(name="members", percent="100", mode="remaining"),
    ]})
    assert [b.mode for b in rules.buckets] == ["straight", "straight", "remaining"]
    assert Rules.from_body(rules.to_body()) == rules


def test_a_genesis_without_version_is_version_1_and_keeps_its_encoding() -> None:
    old = {k: v for k, v in DEFAULT_BODY.items() if k not in ("version", "pledge_claims")}
    rules = Rules.from_body(old)
    assert (rules.version, rules.pledge_claims) == (1, True)
    assert rules.to_body() == old  # so the ids and digests of existing ledgers do not change
    assert from_config({"version": 1}).to_body() == old
    with pytest.raises(InvalidData) as info:
        Rules.from_body({**old, "pledge_claims": True})
    assert info.value.code == "unknown_rule_key"
    for version in (1, 3, "2"):
        with pytest.raises(InvalidData) as info:
            Rules.from_body({**DEFAULT_BODY, "version": version})
        assert info.value.code == "bad_rules"
    with pytest.raises(InvalidData) as info:
        Rules.from_body({k: v for k, v in DEFAULT_BODY.items() if k != "pledge_claims"})
    assert info.value.code == "bad_rules" and "pledge_claims" in info.value.message


# ---- refusals: each code, each naming its key ---------------------------------------------


REFUSALS: list[tuple[dict[str, Any], str, str]] = [
    # unknown keys, by their full dotted name
    ({"colour": "red"}, "unknown_rule_key", "colour"),
    ({"name": "x"}, "unknown_rule_key", "name"),  # the name comes from the command line
    ({"validation": {"acept": 2}}, "unknown_rule_key", "validation.acept"),
    ({"voting": {"quorom": "0.5"}}, "unknown_rule_key", "voting.quorom"),
    ({"buckets": [bucket(recipent="ledger")]}, "unknown_rule_key", "buckets[0].recipent"),
    ({"buckets": [bucket(percent="50"), bucket(name="b", percent="50", mdoe="straight")]}, "unknown_rule_key",
     "buckets[1].mdoe"),
    # wrong types
    ({"units": "hour"}, "bad_rules", "units"),
    ({"units": ["hour", 3]}, "bad_rules", "units[1]"),
    ({"founders": CREATOR}, "bad_rules", "founders"),
    ({"validation": 2}, "bad_rules", "validation"),
    ({"validation": {"accept": "2"}}, "bad_rules", "validation.accept"),
    ({"validation": {"reject": True}}, "bad_rules", "validation.reject"),
    ({"rates": ["work"]}, "bad_rules", "rates"),
    ({"rates": {"work": "20"}}, "bad_rules", "rates.work"),
    ({"buckets": {"name": "members"}}, "bad_rules", "buckets"),
    ({"buckets": ["members"]}, "bad_rules", "buckets[0]"),
    ({"voting": {"max": "5"}}, "bad_rules", "voting.max"),
    ({"purpose": 5}, "bad_rules", "purpose"),
    ({"log_for_others": "no"}, "bad_rules", "log_for_others"),
    ({"log_for_others": 0}, "bad_rules", "log_for_others"),
    ({"visibility": "secret"}, "bad_rules", "visibility"),
    ({"buckets": [bucket(actions="work")]}, "bad_rules", "buckets[0].actions"),
    # floats, anywhere
    ({"rates": {"work": {"hour": 20.0}}}, "bad_quantity", "rates.work.hour"),
    ({"rates": {"work:engineering": {"hour": 2.5}}}, "bad_quantity", 'rates."work:engineering".hour'),
    ({"validation": {"accept": 2.0}}, "bad_quantity", "validation.accept"),
    ({"voting": {"quorum": 0.5}}, "bad_quantity", "voting.quorum"),
    ({"buckets": [bucket(percent=100.0)]}, "bad_quantity", "buckets[0].percent"),
    ({"purpose": float("nan")}, "bad_quantity", "purpose"),
    # quantities
    ({"rates": {"work": {"hour": "-1"}}}, "bad_quantity", "rates.work.hour"),
    ({"rates": {"work": {"hour": "1e3"}}}, "bad_quantity", "rates.work.hour"),
    ({"rates": {"work": {"hour": "2,5"}}}, "bad_quantity", "rates.work.hour"),
    ({"rates": {"work": {"hour": " 2"}}}, "bad_quantity", "rates.work.hour"),
    ({"rates": {"work": {"hour": ".5"}}}, "bad_quantity", "rates.work.hour"),
    ({"rates": {"work": {"hour": "NaN"}}}, "bad_quantity", "rates.work.hour"),
    ({"rates": {"work": {"hour": "0." + "0" * MAX_DECIMAL_PLACES + "1"}}}, "bad_quantity", "rates.work.hour"),
    ({"rates": {"work": {"hour": 10**18}}}, "bad_quantity", "rates.work.hour"),
    ({"rates": {"work": {"hour": True}}}, "bad_quantity", "rates.work.hour"),
    ({"buckets": [bucket(percent="0")]}, "bad_quantity", "buckets[0].percent"),
    ({"buckets": [bucket(percent="100.5")]}, "bad_quantity", "buckets[0].percent"),
    ({"voting": {"quorum": "1.5"}}, "bad_quantity", "voting.quorum"),
    ({"voting": {"quorum": "-0.1"}}, "bad_quantity", "voting.quorum"),
    # actions and units
    ({"rates": {"wrok": {"hour": "1"}}}, "unknown_action", "rates.wrok"),
    ({"rates": {"Work": {"hour": "1"}}}, "unknown_action", "rates.Work"),
    ({"rates": {"labour:eng": {"hour": "1"}}}, "unknown_action", 'rates."labour:eng"'),
    ({"buckets": [bucket(actions=["work", "labour"])]}, "unknown_action", "buckets[0].actions[1]"),
    ({"rates": {"work": {"km": "1"}}}, "unknown_unit", "rates.work.km"),
    ({"units": ["hour"]}, "unknown_unit", "rates.transfer.euro"),  # the default rates need their units
    ({"rates": {"work:": {"hour": "1"}}}, "bad_rules", 'rates."work:"'),
    ({"rates": {"work:deep work": {"hour": "1"}}}, "bad_rules", 'rates."work:deep work"'),
    ({"rates": {"work": {}}}, "bad_rules", "rates.work"),
    ({"units": []}, "bad_rules", "units"),
    ({"units": ["Hour"], "rates": {}}, "bad_rules", "units[0]"),
    ({"units": ["hour", "hour"], "rates": {}}, "bad_rules", "units[1]"),
    ({"units": ["h" * 33], "rates": {}}, "bad_rules", "units[0]"),
    ({"units": ["2h"], "rates": {}}, "bad_rules", "units[0]"),
    # founders
    ({"founders": ["did:key:z6Mknope"]}, "bad_did", "founders[0]"),
    ({"founders": [CREATOR, "alice"]}, "bad_did", "founders[1]"),
    ({"founders": [CREATOR, ANA, CREATOR]}, "bad_rules", "founders[2]"),
    ({"founders": [ANA]}, "bad_rules", "founders"),  # the creator founds the ledger
    ({"founders": []}, "bad_rules", "founders"),
    # validation
    ({"validation": {"accept": 0}}, "bad_rules", "validation.accept"),
    ({"validation": {"reject": -1}}, "bad_rules", "validation.reject"),
    # buckets
    ({"buckets": []}, "bad_rules", "buckets"),
    ({"buckets": [{"percent": "100"}]}, "bad_rules", "buckets[0].name"),
    ({"buckets": [{"name": "members"}]}, "bad_rules", "buckets[0].percent"),
    ({"buckets": [bucket(name="")]}, "bad_rules", "buckets[0].name"),
    ({"buckets": [bucket(name=" members")]}, "bad_rules", "buckets[0].name"),
    ({"buckets": [bucket(percent="50"), bucket(percent="50")]}, "bad_rules", "buckets[1].name"),
    ({"buckets": [bucket(percent="90")]}, "bad_rules", "buckets"),
    ({"buckets": [bucket(percent="60"), bucket(name="b", percent="60")]}, "bad_rules", "buckets"),
    ({"buckets": [bucket(recipient="bob")]}, "unknown_bucket_recipient", "buckets[0].recipient"),
    ({"buckets": [bucket(recipient="did:key:z6Mknope")]}, "unknown_bucket_recipient", "buckets[0].recipient"),
    ({"buckets": [bucket(recipient="Ledger")]}, "unknown_bucket_recipient", "buckets[0].recipient"),
    ({"buckets": [bucket(recipient=5)]}, "unknown_bucket_recipient", "buckets[0].recipient"),
    ({"buckets": [bucket(mode="fixed")]}, "bad_rules", "buckets[0].mode"),
    ({"buckets": [bucket(claims="stock")]}, "bad_rules", "buckets[0].claims"),
    ({"buckets": [bucket(actions=["work", "work"])]}, "bad_rules", "buckets[0].actions[1]"),
    ({"version": 1, "buckets": [bucket(percent="50"), bucket(name="b", percent="100", mode="remaining")]},
     "bad_rules", "buckets[1].mode"),
    ({"buckets": [bucket(name="b", percent="50", mode="remaining"), bucket(percent="100")]}, "bad_rules",
     "buckets[1].mode"),
    ({"buckets": [bucket(name="b", percent="100"), bucket(percent="100", mode="remaining")]}, "bad_rules",
     "buckets"),
    ({"buckets": [bucket(name="b", percent="10"), bucket(percent="90", mode="remaining")]}, "bad_rules",
     "buckets[1].percent"),
    ({"version": 3}, "bad_rules", "version"),
    ({"version": 1, "pledge_claims": False}, "bad_rules", "pledge_claims"),
    ({"buckets": [bucket(name="a", percent="10", mode="remaining"), bucket(percent="90", mode="remaining")]},
     "bad_rules", "buckets[1].percent"),
    # voting
    ({"voting": {"min": 5, "max": 5}}, "bad_rules", "voting.min"),
    ({"voting": {"min": 3, "max": 1}}, "bad_rules", "voting.min"),
    ({"voting": {"min": -1}}, "bad_rules", "voting.min"),
    ({"voting": {"max": 101}}, "bad_rules", "voting.max"),
    ({"voting": {"blank": "abstain"}}, "bad_rules", "voting.blank"),
]


@pytest.mark.parametrize(("config", "code", "key"), REFUSALS, ids=[f"{c}:{k}" for _, c, k in REFUSALS])
def test_refusals_name_the_key(config: dict[str, Any], code: str, key: str) -> None:
    exc = refused(config)
    assert exc.code == code, exc
    assert exc.message.startswith(f"{key}: "), exc.message


def test_every_rules_code_is_exercised() -> None:
    assert {code for _, code, _ in REFUSALS} == {
        "unknown_rule_key", "bad_rules", "unknown_action", "unknown_unit", "bad_quantity", "unknown_bucket_recipient",
        "bad_did",
    }


def test_toml_floats_are_refused() -> None:
    config = tomllib.loads('[rates.work]\nhour = 20.5\n')
    exc = refused(config)
    assert (exc.code, exc.message.split(":")[0]) == ("bad_quantity", "rates.work.hour")
    assert '"2.5"' in exc.message  # says how to write it


def test_toml_dates_are_a_wrong_type() -> None:
    exc = refused(tomllib.loads("purpose = 2024-05-01\n"))
    assert exc.code == "bad_rules" and exc.message.startswith("purpose: ")


def test_deep_nesting_is_refused_before_it_is_walked() -> None:
    deep: Any = "x"
    for _ in range(500):
        deep = [deep]
    exc = refused({"units": deep})
    assert exc.code == "bad_rules"


def test_a_bad_ledger_name() -> None:
    for name in ("", "   ", "x" * 201):
        with pytest.raises(InvalidData) as info:
            from_config({}, name=name)
        assert info.value.code == "bad_rules" and info.value.message.startswith("name: ")


# ---- direct construction (what state.py and tests build) ----------------------------------------


def test_dataclasses_validate_and_normalize_on_construction() -> None:
    b = Bucket("m", "100.00", None, "straight", "equity", ("work", "use"))  # type: ignore[arg-type]
    assert b.percent == Decimal(100) and str(b.percent) == "100" and b.actions == ("use", "work")
    with pytest.raises(InvalidData) as info:
        Bucket("m", Decimal(0), None, "straight", "equity")
    assert info.value.code == "bad_quantity"
    with pytest.raises(InvalidData):
        Validation(0, 1)
    with pytest.raises(InvalidData):
        Voting(0, 5, "zero", Decimal("1.01"))
    rules = from_config({})
    with pytest.raises(InvalidData):
        Rules(**{**_fields(rules), "buckets": ()})
    unsorted = Rules(**{**_fields(rules), "founders": (BEN, ANA)})
    assert unsorted.founders == tuple(sorted((ANA, BEN)))


def _fields(rules: Rules) -> dict[str, Any]:
    return {name: getattr(rules, name) for name in Rules.__dataclass_fields__}


def test_rules_are_frozen() -> None:
    rules = from_config({})
    with pytest.raises(AttributeError):
        rules.name = "other"  # type: ignore[misc]
    with pytest.raises(TypeError):
        rules.rates["work"] = {}
    with pytest.raises(TypeError):
        rules.rates["work"]["hour"] = Decimal(2)


# ---- genesis bodies: strict ------------------------------------------------------------------


def body_refused(body: dict[str, Any]) -> InvalidData:
    with pytest.raises(InvalidData) as info:
        Rules.from_body(body)
    return info.value


def test_every_key_is_required_in_a_genesis_body() -> None:
    for key in DEFAULT_BODY:
        if key == "version":  # without it the body is version 1 (test_a_genesis_without_version_is_version_1…)
            continue
        body = {k: v for k, v in DEFAULT_BODY.items() if k != key}
        exc = body_refused(body)
        assert exc.code == "bad_rules" and exc.message.startswith(f"{key}: required"), exc
    for table, key in (("validation", "accept"), ("voting", "quorum")):
        inner = {k: v for k, v in DEFAULT_BODY[table].items() if k != key}
        exc = body_refused({**DEFAULT_BODY, table: inner})
        assert exc.code == "bad_rules" and exc.message.startswith(f"{table}.{key}: required"), exc
    for key in ("recipient", "actions", "mode", "claims"):
        inner = {k: v for k, v in DEFAULT_BODY["buckets"][0].items() if k != key}
        exc = body_refused({**DEFAULT_BODY, "buckets": [inner]})
        assert exc.code == "bad_rules" and exc.message.startswith(f"buckets[0].{key}: required"), exc


def test_an_old_genesis_body_is_not_rules() -> None:
    exc = body_refused({"name": "Bike coop", "visibility": "members"})
    assert exc.code == "bad_rules"


@pytest.mark.parametrize(
    ("change", "code", "key"),
    [
        ({"extra": 1}, "unknown_rule_key", "extra"),
        ({"voting": {**DEFAULT_BODY["voting"], "quorum": "0.50"}}, "bad_quantity", "voting.quorum"),
        ({"voting": {**DEFAULT_BODY["voting"], "quorum": 1}}, "bad_quantity", "voting.quorum"),
        ({"rates": {"work": {"hour": "1.0"}}, "units": ["hour"]}, "bad_quantity", "rates.work.hour"),
        ({"rates": {"work": {"hour": 1}}, "units": ["hour"]}, "bad_quantity", "rates.work.hour"),
        ({"rates": {"work": {"hour": "-0"}}, "units": ["hour"]}, "bad_quantity", "rates.work.hour"),
        ({"buckets": [{**DEFAULT_BODY["buckets"][0], "percent": 100}]}, "bad_quantity", "buckets[0].percent"),
        ({"buckets": [{**DEFAULT_BODY["buckets"][0], "percent": "100.0"}]}, "bad_quantity", "buckets[0].percent"),
        ({"buckets": [{**DEFAULT_BODY["buckets"][0], "actions": ["work", "use"]}]}, "bad_rules", "buckets[0].actions"),
        ({"founders": sorted(DIDS[:2], reverse=True)}, "bad_rules", "founders"),
        ({"name": " Bike coop"}, "bad_rules", "name"),
        ({"log_for_others": None}, "bad_rules", "log_for_others"),
        ({"units": ("hour",), "rates": {"work": {"hour": 1.5}}}, "bad_quantity", "rates.work.hour"),
    ],
)
def test_genesis_bodies_must_be_canonical(change: dict[str, Any], code: str, key: str) -> None:
    exc = body_refused({**DEFAULT_BODY, **change})
    assert exc.code == code, exc
    assert exc.message.startswith(f"{key}: "), exc.message


# ---- decimals ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "canonical"),
    [("2.50", "2.5"), ("10", "10"), ("10.000", "10"), ("0.0", "0"), ("-0", "0"), ("-0.00", "0"), ("007.10", "7.1"),
     ("-2.50", "-2.5"), (25, "25"), (0, "0"), (Decimal("1E+2"), "100"), (Decimal("1.20E-5"), "0.000012"),
     ("0." + "0" * 17 + "1", "0." + "0" * 17 + "1"), ("9" * 18 + "." + "9" * 18, "9" * 18 + "." + "9" * 18)],
)
def test_decimals_are_canonical(given: object, canonical: str) -> None:
    d = parse_decimal(given, "x")
    assert format_decimal(d) == canonical
    assert d == Decimal(canonical)


@pytest.mark.parametrize(
    "bad", [2.5, 1.0, True, None, [1], "1e3", "1E3", "+1", " 1", "1 ", "1.", ".1", "", "-", "1_000", "١", "Infinity",
            "NaN", Decimal("NaN"), Decimal("Infinity"), "1." + "0" * 19, 10**18, -(10**18), "1" * 19],
)
def test_inexact_decimals_are_refused(bad: object) -> None:
    with pytest.raises(InvalidData) as info:
        parse_decimal(bad, "rates.work.hour")
    assert info.value.code == "bad_quantity" and info.value.message.startswith("rates.work.hour: ")


def test_format_decimal_refuses_non_finite() -> None:
    with pytest.raises(ValueError):
        format_decimal(Decimal("NaN"))


exact_decimals = st.builds(
    lambda n, places, negative: Decimal(-n if negative else n).scaleb(-places),
    st.integers(0, 10**18 - 1), st.integers(0, MAX_DECIMAL_PLACES), st.booleans(),
)


@given(exact_decimals)
def test_decimal_strings_round_trip(d: Decimal) -> None:
    text = format_decimal(d)
    assert re.fullmatch(r"-?(0|[1-9][0-9]*)(\.[0-9]*[1-9])?", text) and text != "-0"
    assert parse_decimal(text, "x") == d
    assert format_decimal(parse_decimal(text, "x")) == text


# ---- generated rules round-trip ---------------------------------------------------------------


def _shares(cuts: list[int]) -> list[Decimal]:
    """Positive percents with two decimals summing to exactly 100."""
    points = [0, *sorted(set(cuts)), 10000]
    return [Decimal(b - a).scaleb(-2) for a, b in itertools.pairwise(points)]


def _readable(name: str) -> bool:
    """A ledger name the rules accept (names.check_name refuses controls, bidi controls, invisible-only, non-NFC)."""
    try:
        return bool(name) and check_name(name, "name") == name
    except InvalidData:
        return False


@st.composite
def rules_strategy(draw: st.DrawFn) -> Rules:
    units = draw(st.lists(st.from_regex(UNIT_PATTERN, fullmatch=True), min_size=1, max_size=4, unique=True))
    keys = draw(st.lists(
        st.tuples(st.sampled_from(sorted(ACTIONS)), st.none() | st.from_regex(r"[a-z][a-z0-9:/#.-]{0,20}",
                                                                                fullmatch=True))
        .map(lambda t: t[0] if t[1] is None else f"{t[0]}:{t[1]}"),
        max_size=5, unique=True,
    ))
    rates = {
        key: draw(st.dictionaries(st.sampled_from(units), exact_decimals.map(abs), min_size=1, max_size=len(units)))
        for key in keys
    }
    mode = draw(st.sampled_from(["straight", "remaining"]))
    if mode == "straight":
        percents = _shares(draw(st.lists(st.integers(1, 9999), max_size=3)))
    else:
        head = draw(st.lists(st.integers(1, 10000).map(lambda n: Decimal(n).scaleb(-2)), max_size=3))
        percents = [*head, Decimal(100)]
    names = draw(st.lists(
        st.text(st.characters(codec="utf-8", categories=["L", "N", "Zs"]), min_size=1, max_size=12)
        .filter(lambda s: s == s.strip() and s.isprintable() and _readable(s)),
        min_size=len(percents), max_size=len(percents), unique=True,
    ))
    buckets = tuple(
        Bucket(
            name, percent, draw(st.sampled_from([None, "ledger", *DIDS])), mode,
            draw(st.sampled_from(["equity", "debt", "once"])),
            tuple(draw(st.lists(st.sampled_from(sorted(ACTIONS)), max_size=3, unique=True))),
        )
        for name, percent in zip(names, percents, strict=True)
    )
    low = draw(st.integers(0, 99))
    return Rules(
        name=draw(st.text(min_size=1, max_size=40).map(str.strip).filter(_readable)),
        purpose=draw(st.text(max_size=60)),
        visibility=draw(st.sampled_from(["members", "public"])),
        founders=tuple(draw(st.lists(st.sampled_from(DIDS), min_size=1, max_size=4, unique=True))),
        units=tuple(units),
        validation=Validation(draw(st.integers(1, 20)), draw(st.integers(1, 20))),
        rates=rates,
        buckets=buckets,
        voting=Voting(low, draw(st.integers(low + 1, 100)), draw(st.sampled_from(["zero", "no-opinion"])),
                      Decimal(draw(st.integers(0, 10**6))).scaleb(-6)),
        log_for_others=draw(st.booleans()),
        recovery_quorum=draw(st.one_of(st.none(), st.integers(1, 20))),
        timezone=draw(st.sampled_from([None, "UTC", "Europe/Berlin", "America/Argentina/Buenos_Aires"])),
    )


@given(rules_strategy())
def test_generated_rules_round_trip(rules: Rules) -> None:
    body = rules.to_body()
    assert Rules.from_body(body) == rules
    block = dagcbor.encode(body)
    assert dagcbor.encode(rules.to_body()) == block
    again = Rules.from_body(dagcbor.decode(block, max_bytes=len(block)))
    assert again == rules and dagcbor.encode(again.to_body()) == block


@pytest.mark.slow
@given(rules_strategy())
def test_a_genesis_body_is_also_a_valid_config(rules: Rules) -> None:
    """The API's `rules` object takes the genesis form too (without the name)."""
    config = {k: v for k, v in rules.to_body().items() if k != "name"}
    assert Rules.from_config(config, name=rules.name, creator=rules.founders[0]) == rules


# ---- the vocabulary ---------------------------------------------------------------------------


def test_actions_are_the_19_of_valueflows() -> None:
    assert len(ACTIONS) == 19
    ttl = VF_TTL.read_text()
    declared = set(re.findall(r"^vf:(\w+) a\s+owl:NamedIndividual ,\s*\n\s*vf:Action ;", ttl, flags=re.M))
    assert declared == ACTIONS


# ---- the documentation ------------------------------------------------------------------------

README = (Path(__file__).resolve().parents[2] / "README.md").read_text()


def _readme_section() -> str:
    start = README.index("## Ledger rules\n")
    return README[start:README.index("\n## ", start + 1)]


def test_the_readme_example_parses() -> None:
    section = _readme_section()
    lines = section.splitlines()
    first = next(i for i, line in enumerate(lines) if line.startswith("    "))
    block = []
    for line in lines[first:]:
        if line and not line.startswith("    "):
            break
        block.append(line[4:])
    text = "\n".join(block).replace('"did:key:z6Mk…ana"', f'"{CREATOR}"').replace('"did:key:z6Mk…ben"', f'"{ANA}"')
    rules = from_config(tomllib.loads(text))
    assert rules.founders == tuple(sorted([CREATOR, ANA])) and rules.validation == Validation(2, 1)
    assert [b.name for b in rules.buckets] == ["reserve", "members"]


def test_the_readme_documents_every_key_and_code() -> None:
    section = _readme_section()
    keys = {"visibility", "purpose", "founders", "units", "log_for_others", "[validation]", "accept", "reject",
            "[[buckets]]", "name", "percent", "recipient", "mode", "claims", "actions", "[voting]", "min", "max",
            "blank", "quorum", "[recovery]", "timezone"}
    assert {k for k in keys if f"`{k}`" not in section} == set()
    assert "`[rates.ACTION]`" in section and '`[rates."ACTION:CLASSIFICATION"]`' in section
    for code in ("bad_rules", "unknown_rule_key", "bad_quantity", "unknown_action", "unknown_unit",
                 "unknown_bucket_recipient", "bad_did"):
        assert f"`{code}`" in section, code
    for action in ACTIONS:
        assert f"`{action}`" in section, action
