"""Identities that outlive their keys (SPEC.md §19; protocol/keys.py and its part of protocol/state.py):
pre-rotation, devices, revocation and recovery by the coop, each checked through the state of a ledger."""

from __future__ import annotations

import random
from typing import Any

import pytest
from protocol_helpers import LedgerBuilder, key

from protocol import GENESIS_KIND, Entry, InvalidData, LocalError, SigningKey, create_entry, key_ops
from protocol.amendments import Amendment
from protocol.kel import KeyLog, start_log
from protocol.keys import next_digest
from protocol.rules import Rules
from protocol.state import FINAL, INVALID, VALID, WAITING, LedgerState, compute_state

A, B, C = key(301), key(302), key(303)
A2, A3, THIEF, PHONE, NEW = key(311), key(312), key(313), key(314), key(315)


class Ledger(LedgerBuilder):
    """A ledger whose founders are its members, with the key events of §19 at hand."""

    def work(self, author: SigningKey, hours: str = "2", **fields: Any) -> Entry:
        return self.append(author, "vf.event", {"action": "work",
                                                "effortQuantity": {"hasNumericalValue": hours, "hasUnit": "hour"},
                                                **fields})

    def incept(self, author: SigningKey, next_key: SigningKey) -> Entry:
        return self.append(author, "key.incept", {"next": next_digest(next_key.public_key)})

    def rotate(self, new: SigningKey, identity: SigningKey, prior: Entry, last: Entry, next_key: SigningKey) -> Entry:
        return self.append(new, "key.rotate", {"identity": identity.did, "prior": prior.id, "last": last.id,
                                               "next": next_digest(next_key.public_key)})


def code(state: LedgerState, entry: Entry) -> str:
    assert state.status[entry.id.raw] == INVALID, state.status[entry.id.raw]
    return next(p.code for p in state.invalid if p.id == entry.id)


def refused(coop: Ledger, entry: Entry) -> str:
    """The code the whole ledger gives `entry` (appended before the state is computed)."""
    return code(coop.state(), entry)


def test_a_rotation_keeps_the_identity_and_cuts_the_old_key_off_after_its_last_entry() -> None:
    coop = Ledger([A, B])
    before = coop.work(A)
    incept = coop.incept(A, A2)
    rotation = coop.rotate(A2, A, incept, incept, A3)
    after = coop.work(A2, "3")
    late = coop.work(A, "5")  # the old key, after the last entry the rotation let count
    state = coop.state()
    assert state.status[rotation.id.raw] == VALID
    assert code(state, late) == "key_rotated"
    mine = {c.id: c for c in state.contributions}
    assert mine[before.id].author == mine[after.id].author == A.did  # the identity, not the key
    assert mine[after.id].event.provider == A.did
    ident = state.identities[A.did]
    assert (ident.key, ident.event, ident.next) == (A2.did, rotation.id, next_digest(A3.public_key))
    assert state.agent_of(A2.did) == A.did and state.agent_of(A.did) == A.did
    # B endorses the rotated key's contribution: it counts for A.
    coop.append(B, "vf.endorse", {"event": after.id, "verdict": "accept"})
    assert coop.state().contribution(after.id).status == FINAL  # type: ignore[union-attr]


def test_a_thief_with_only_the_current_key_cannot_rotate() -> None:
    coop = Ledger([A, B])
    incept = coop.incept(A, A2)
    # The thief holds A's key, not the committed next one: their rotation is refused.
    stolen = coop.rotate(THIEF, A, incept, incept, THIEF)
    state = coop.state()
    assert code(state, stolen) == "bad_key_event"
    assert state.identities[A.did].key == A.did
    assert refused(coop, coop.work(THIEF)) == "key_not_authorized"
    # Nor incept again to commit to a key of their own.
    assert refused(coop, coop.incept(A, THIEF)) == "bad_key_event"
    # The owner rotates with the key kept offline and voids what the thief wrote after `last`.
    forged = coop.work(A, "40")
    coop.rotate(A2, A, incept, incept, A3)
    state = coop.state()
    assert code(state, forged) == "key_rotated"
    assert state.identities[A.did].key == A2.did


def test_rotations_chain_and_each_commits_to_the_next() -> None:
    coop = Ledger([A, B])
    incept = coop.incept(A, A2)
    first = coop.rotate(A2, A, incept, incept, A3)
    second = coop.rotate(A3, A, first, first, A)  # any key may be committed next, even an old one's seed
    state = coop.state()
    assert state.status[second.id.raw] == VALID and state.identities[A.did].key == A3.did
    assert refused(coop, coop.work(A2)) == "key_rotated"
    # A second rotation from the same prior needs the same next key: seq 1 again is a fork of that key.
    replay = create_entry(A3, ledger=coop.id, seq=2, prev=second.id, ts=5_000, kind="key.rotate",
                          body={"member": coop.id, "identity": A.did, "prior": first.id, "last": first.id,
                                "next": next_digest(A.public_key)})
    assert code(compute_state(coop.genesis, [*coop.entries, replay]), replay) == "bad_key_event"


def test_the_state_of_key_events_does_not_depend_on_arrival_order() -> None:
    coop = Ledger([A, B])
    coop.work(A)
    incept = coop.incept(A, A2)
    coop.work(A, "4")
    rotation = coop.rotate(A2, A, incept, incept, A3)
    coop.work(A2)
    coop.work(A)
    grant = coop.append(A2, "key.device", {"key": PHONE.public_key, "name": "phone"})
    coop.append(PHONE, "vf.event", {"action": "work", "grant": grant.id,
                                     "effortQuantity": {"hasNumericalValue": "1", "hasUnit": "hour"}})
    expected = coop.state()
    rng = random.Random(7)
    for _ in range(5):
        shuffled = coop.entries[:]
        rng.shuffle(shuffled)
        assert coop.state(shuffled).digest == expected.digest
    # Without the rotation, the rotated-in key's entries wait for it and the old key's count.
    without = coop.state([e for e in coop.entries if e.id != rotation.id])
    assert without.digest != expected.digest
    assert sum(1 for s in without.status.values() if s == WAITING) >= 3


def test_a_device_writes_as_its_member_and_one_ballot_counts() -> None:
    coop = Ledger([A, B])
    grant = coop.append(A, "key.device", {"key": PHONE.public_key, "name": "phone"})
    # The device's first entry names its grant in `key`; later ones follow in its chain.
    phone_work = coop.append(PHONE, "vf.event", {"action": "work", "grant": grant.id,
                                                   "effortQuantity": {"hasNumericalValue": "1", "hasUnit": "hour"}})
    assert refused(coop, coop.append(A, "vf.endorse", {"event": phone_work.id, "verdict": "accept"})) \
        == "self_endorsement"
    motion = coop.append(B, "gov.motion", {"title": "Paint?", "options": ["yes", "no"]})
    laptop_ballot = coop.append(A, "gov.vote", {"motion": motion.id, "scores": {"yes": 5}})
    phone_ballot = coop.append(PHONE, "gov.vote", {"motion": motion.id, "scores": {"no": 5}})
    close = coop.append(B, "gov.close", {"motion": motion.id,
                                         "ballots": sorted([laptop_ballot.id, phone_ballot.id], key=lambda c: c.raw)})
    state = coop.state()
    assert state.status[phone_work.id.raw] == "pending"
    assert state.contribution(phone_work.id).author == A.did  # type: ignore[union-attr]
    assert state.status[close.id.raw] == VALID
    tally = next(m for m in state.motions if m.id == motion.id).tally
    assert tally.totals == {"yes": 0, "no": 5}  # one ballot for A: the later one (the phone's)
    assert [d.key for d in state.identities[A.did].devices] == [PHONE.did]
    assert state.agent_of(PHONE.did) == A.did


def test_an_unauthorized_device_and_a_stolen_grant_are_refused() -> None:
    coop = Ledger([A, B])
    alone = coop.work(PHONE)  # no grant: a stranger
    assert refused(coop, alone) == "not_member"
    coop2 = Ledger([A, B])
    grant = coop2.append(A, "key.device", {"key": PHONE.public_key, "name": "phone"})
    other = coop2.append(THIEF, "vf.event", {"action": "work", "grant": grant.id,
                                               "effortQuantity": {"hasNumericalValue": "1", "hasUnit": "hour"}})
    assert refused(coop2, other) == "key_not_authorized"
    assert refused(coop2, coop2.append(A, "key.device", {"key": A.public_key})) == "bad_key_event"


def test_a_revoked_device_counts_up_to_its_last_entry() -> None:
    coop = Ledger([A, B])
    grant = coop.append(A, "key.device", {"key": PHONE.public_key, "name": "phone"})
    kept = coop.append(PHONE, "vf.event", {"action": "work", "grant": grant.id,
                                            "effortQuantity": {"hasNumericalValue": "1", "hasUnit": "hour"}})
    lost = coop.work(PHONE, "9")
    revoke = coop.append(A, "key.revoke", {"device": grant.id, "last": kept.id})
    state = coop.state()
    assert state.status[revoke.id.raw] == VALID
    assert state.status[kept.id.raw] == "pending" and code(state, lost) == "key_revoked"
    assert refused(coop, coop.work(PHONE)) == "key_revoked"
    device = state.identities[A.did].devices[0]
    assert device.revoked == revoke.id and state.identities[A.did].writers() == (A.did,)
    # Only the identity's keys revoke its devices.
    assert refused(coop, coop.append(B, "key.revoke", {"device": grant.id, "last": None})) == "bad_key_event"


def test_recovery_needs_the_quorum_of_other_members() -> None:
    coop = Ledger([A, B, C], validation={"accept": 2, "reject": 2})
    old = coop.work(A)
    first = coop.append(B, "key.recover", {"identity": A.did, "key": NEW.public_key})
    early = coop.append(NEW, "vf.event", {"action": "work", "grant": first.id,
                                           "effortQuantity": {"hasNumericalValue": "1", "hasUnit": "hour"}})
    assert refused(coop, early) == "key_not_authorized"  # one approval of two
    assert refused(coop, coop.append(A, "key.recover", {"identity": A.did, "key": NEW.public_key})) \
        == "self_recovery"
    # C names the latest entry of A it holds: what A wrote up to there still counts after the recovery.
    second = coop.append(C, "key.recover", {"identity": A.did, "key": NEW.public_key, "with": [first.id],
                                            "last": old.id})
    recovered = create_entry(key(316), ledger=coop.id, seq=1, prev=None, ts=9_000, kind="vf.event",
                             body={"member": coop.id, "action": "work", "grant": second.id,
                                   "effortQuantity": {"hasNumericalValue": "1", "hasUnit": "hour"}})
    # Another key naming the completed approval is not the key it approved.
    assert code(compute_state(coop.genesis, [*coop.entries, recovered]), recovered) == "key_not_authorized"
    # The key the quorum approved writes as A, from its first entry naming the completing approval.
    back = create_entry(NEW, ledger=coop.id, seq=1, prev=None, ts=9_000, kind="vf.event",
                        body={"member": coop.id, "action": "work", "grant": second.id,
                              "effortQuantity": {"hasNumericalValue": "3", "hasUnit": "hour"}})
    entries = [e for e in coop.entries if e.id != early.id] + [back]
    state = compute_state(coop.genesis, entries)
    assert state.status[second.id.raw] == VALID
    assert state.contribution(back.id).author == A.did  # type: ignore[union-attr]
    assert state.status[old.id.raw] == "pending"  # what A wrote before the recovery still counts
    ident = state.identities[A.did]
    assert ident.key == NEW.did and ident.recovered == second.id
    # The lost key's entries the recovery did not know of no longer count.
    stale = create_entry(A, ledger=coop.id, seq=old.seq + 2, prev=coop.heads[A.public_key].id, ts=9_500,
                         kind="vf.event", body={"member": coop.id, "action": "work",
                                                "effortQuantity": {"hasNumericalValue": "7", "hasUnit": "hour"}})
    assert code(compute_state(coop.genesis, [*entries, stale]), stale) == "key_rotated"


def test_the_recovery_quorum_rule_replaces_the_admission_quorum() -> None:
    # K = 2 for contributions and admissions, but one other member may recover a key: [recovery] quorum = 1.
    lenient = Ledger([A, B, C], validation={"accept": 2, "reject": 2}, recovery={"quorum": 1})
    approval = lenient.append(B, "key.recover", {"identity": A.did, "key": NEW.public_key})
    back = lenient.append(NEW, "vf.event", {"action": "work", "grant": approval.id,
                                            "effortQuantity": {"hasNumericalValue": "1", "hasUnit": "hour"}})
    state = lenient.state()
    assert state.status[back.id.raw] == "pending" and state.identities[A.did].key == NEW.did
    # K = 1, but recovering a key takes two other members.
    strict = Ledger([A, B, C], recovery={"quorum": 2})
    first = strict.append(B, "key.recover", {"identity": A.did, "key": NEW.public_key})
    early = strict.append(NEW, "vf.event", {"action": "work", "grant": first.id,
                                            "effortQuantity": {"hasNumericalValue": "1", "hasUnit": "hour"}})
    assert refused(strict, early) == "key_not_authorized"
    # An amendment may change the quorum; the approvals after its closing are counted under it.
    assert Amendment.from_config({"recovery": {"quorum": 1}}).apply(strict.state().rules).recovery == 1
    assert Amendment.from_config({"validation": {"accept": 3}}).apply(strict.state().rules).recovery == 2


def test_ledgers_without_key_events_keep_their_digest_shape() -> None:
    coop = Ledger([A, B])
    coop.work(A)
    state = coop.state()
    assert state.identities == {}
    assert state.agent_of(A.did) == A.did


def test_key_ops_build_what_the_state_accepts() -> None:
    coop = Ledger([A, B, C], validation={"accept": 2, "reject": 2})
    state = coop.state()
    with pytest.raises(LocalError) as refused_:
        key_ops.rotate(state, A.did, current=A.did, new_key=A2.public_key, after=A3.public_key, last=coop.id, ts=1)
    assert refused_.value.code == "bad_key_event"  # nothing committed to yet
    with pytest.raises(LocalError) as refused_:
        key_ops.approve_recovery(state, A.did, A.did, NEW.did, None, 1)
    assert refused_.value.code == "self_recovery"
    first = key_ops.approve_recovery(state, B.did, A.did, NEW.did, None, 1)
    first_entry = coop.append(B, first.kind, first.body)
    state = coop.state()
    assert state.recoveries[A.did, NEW.did] == (first_entry.id,)
    second = key_ops.approve_recovery(state, C.did, A.did, NEW.did, None, 2)
    assert second.body["with"] == [first_entry.id]
    second_entry = coop.append(C, second.kind, second.body)
    state = coop.state()
    assert key_ops.grant_for(state, A.did, NEW.did) == second_entry.id
    assert key_ops.grant_for(state, A.did, PHONE.did) is None
    device = key_ops.add_device(state, B.did, PHONE.did, "phone", 3)
    grant = coop.append(B, device.kind, device.body)
    state = coop.state()
    assert key_ops.grant_for(state, B.did, PHONE.did) == grant.id
    incept = key_ops.incept(state, C.did, A2.public_key, 4)
    coop.append(C, incept.kind, incept.body)
    assert not key_ops.needs_inception(coop.state(), C.did)


def founded_by(author: SigningKey, log: KeyLog, *, name: str = "New coop") -> Entry:
    rules = Rules.from_config({}, name=name, creator=log.identity, proof=log)
    return create_entry(author, ledger=None, seq=1, prev=None, ts=1_000, kind=GENESIS_KIND, body=rules.to_body())


def test_a_rotated_member_founds_a_ledger_as_their_identity_with_their_key_log() -> None:
    log = start_log(A, next_digest(A2.public_key)).extended(A2, next_digest(A3.public_key))
    genesis = founded_by(A2, log)  # A's inception key is gone; A2 signs, and its log shows it is A's
    work = create_entry(A2, ledger=genesis.id, seq=2, prev=genesis.id, ts=2_000, kind="vf.event",
                        body={"member": genesis.id, "action": "work",
                              "effortQuantity": {"hasNumericalValue": "2", "hasUnit": "hour"}})
    incept = create_entry(A2, ledger=genesis.id, seq=3, prev=work.id, ts=3_000, kind="key.incept",
                          body={"member": genesis.id, "next": next_digest(A3.public_key)})
    state = compute_state(genesis, [genesis, work, incept])
    assert state.members == (A.did,) and state.status[incept.id.raw] == VALID
    assert state.contribution(work.id).author == A.did  # type: ignore[union-attr]
    assert state.identities[A.did].key == A2.did and state.agent_of(A2.did) == A.did
    assert Rules.from_body(genesis.body or {}).creator == log
    # A genesis by a key the log does not end at writes as itself: not the founder it names.
    other = founded_by(A3, log)
    stray = create_entry(A3, ledger=other.id, seq=2, prev=other.id, ts=2_000, kind="vf.event",
                         body={"member": other.id, "action": "work",
                               "effortQuantity": {"hasNumericalValue": "2", "hasUnit": "hour"}})
    assert code(compute_state(other, [other, stray]), stray) == "not_member"


def test_a_forged_key_log_is_not_rules() -> None:
    log = start_log(A, next_digest(A2.public_key))
    body = founded_by(A, log).body or {}
    (key, following, sig), = log.steps
    for steps, why in (([[key, following, bytes(64)]], "does not verify"),
                       ([[A2.public_key, following, sig]], "the identity's own key"),
                       ([[key, following, sig], [THIEF.public_key, bytes(32), bytes(64)]], "committed to")):
        with pytest.raises(InvalidData) as refused_:
            Rules.from_body({**body, "creator": {"identity": A.did, "keys": steps}})
        assert refused_.value.code == "bad_rules" and why in refused_.value.message
    with pytest.raises(InvalidData) as refused_:
        Rules.from_config({"founders": [B.did]}, name="Coop", creator=B.did, proof=log)
    assert refused_.value.code == "bad_rules"  # the log's identity must be a founder


def test_a_member_who_wrote_nothing_is_recovered_through_their_admission() -> None:
    coop = Ledger([A, B])
    admit = coop.append(A, "member.admit", {"agent": C.did})
    blind = coop.append(B, "key.recover", {"identity": C.did, "key": NEW.public_key})
    assert refused(coop, blind) == "not_member"  # C's admission is not in its causal past
    built = key_ops.approve_recovery(coop.state(), B.did, C.did, NEW.did, None, 9)
    assert built.body["last"] == admit.id  # the node names it
    approval = coop.append(B, built.kind, built.body)
    assert coop.state().status[approval.id.raw] == VALID
    assert refused(coop, coop.append(B, "key.recover", {"identity": C.did, "key": PHONE.public_key,
                                                        "last": blind.id})) == "bad_key_event"
