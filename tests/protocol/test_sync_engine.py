"""The sans-IO sync engine (protocol/sync_engine.py): one link's conversation, driven by plain calls."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from hypothesis import given
from hypothesis import strategies as st
from protocol_helpers import FAST, cid_of, follow, genesis, key

from protocol import CID, CODES, Entry
from protocol.fork import ForkProof
from protocol.sync import (
    WANT_MAX,
    Ents,
    Err,
    Fork,
    Front,
    Level,
    Message,
    Own,
    Sent,
    Sub,
    Want,
    encode_message,
    frontier_digest,
)
from protocol.sync_engine import (
    EMPTY_DIGEST,
    MAX_FRONT_HEADS,
    PEER_WANTS_QUEUED,
    REQUEST_BURST,
    Action,
    Close,
    KeepFork,
    LedgerFacts,
    Report,
    Send,
    Serve,
    Store,
    StoreResult,
    SyncEngine,
    Tail,
    Verify,
)
from protocol.sync_table import IGNORED_UNSHARED, TRANSITIONS, Event, Phase, step, table_markdown

SPEC = Path(__file__).resolve().parents[2] / "SPEC.md"
A, B, C = key(1), key(2), key(3)
G = genesis(A, body={"name": "Coop", "visibility": "public"})
L = G.id


def chain(author: Any, n: int) -> list[Entry]:
    out: list[Entry] = [G] if author is A else []
    while len(out) < n:
        out.append(follow(author, out[-1] if out else None, L))
    return out


def heads(entries: list[Entry]) -> dict[bytes, tuple[int, CID]]:
    return {entries[-1].header.author: (entries[-1].seq, entries[-1].id)} if entries else {}


def facts(entries: list[Entry], *, genesis: bool = True, visible: bool = True) -> LedgerFacts:
    return LedgerFacts(L, True, genesis, visible, heads(entries))


def sent(actions: list[Action]) -> list[Message]:
    return [a.message for a in actions if isinstance(a, Send)]


def closed(actions: list[Action]) -> str | None:
    return next((a.code for a in actions if isinstance(a, Close)), None)


def engine(**kw: Any) -> SyncEngine:
    return SyncEngine(A.public_key, B.public_key, **kw)


# ---- the table --------------------------------------------------------------------


def test_spec_quotes_the_transition_table() -> None:
    assert table_markdown() in SPEC.read_text()


def test_absent_pairs_are_refused_or_ignored() -> None:
    for phase in Phase:
        for event in Event:
            if (phase, event) in TRANSITIONS:
                assert step(phase, event) is TRANSITIONS[(phase, event)]
            elif phase is Phase.UNSHARED and event in IGNORED_UNSHARED:
                assert step(phase, event) is Phase.UNSHARED
            else:
                try:
                    step(phase, event)
                except Exception as exc:
                    assert getattr(exc, "code", None) == "protocol_error"
                else:
                    raise AssertionError(f"{phase} {event} neither in the table nor refused")


# ---- the conversation, SPEC §13.10 ----------------------------------------------------


def test_the_spec_example_from_the_founders_side() -> None:
    """A holds L's entries 1-3; B follows L without its genesis (SPEC §13.10)."""
    mine = chain(A, 3)
    e = engine()
    out = e.start([facts(mine)], 0.0)
    assert sent(out) == [Sub(((L, frontier_digest(heads(mine))),))]
    # B answers with an empty frontier and its front.
    out = e.receive(Sub(((L, EMPTY_DIGEST),)), 0.1, [facts(mine)])
    assert sent(out) == [Front(L, ((A.public_key, 3, mine[-1].id),), True)]
    out = e.receive(Front(L, (), True), 0.2)
    assert sent(out) == [Level(L, frontier_digest(heads(mine)))]
    want = Want(L, A.public_key, 1, 3)
    out = e.receive(want, 0.3)
    assert out == [Serve(want)]
    rows = [(x.seq, x.header_raw, x.payload_raw) for x in mine]
    out = e.served(want, rows, 0.4)
    msgs = sent(out)
    assert msgs[0] == Ents(L, A.public_key, tuple((x.header_raw, x.payload_raw) for x in mine))
    assert msgs[1] == Sent(L, A.public_key, 3)
    # Entry 4 appended locally: pushed, B holds 3.
    fourth = follow(A, mine[-1], L)
    out = e.offer([fourth], 1.0)
    assert sent(out) == [Ents(L, A.public_key, ((fourth.header_raw, fourth.payload_raw),))]


def test_the_spec_example_from_the_followers_side() -> None:
    mine = chain(A, 3)
    e = SyncEngine(B.public_key, A.public_key, catching_up=True)
    out = e.start([facts([], genesis=False, visible=False)], 0.0)
    assert sent(out) == [Sub(()), Own(None)]
    ledgers, follow_them = e.lookup(Sub(((L, frontier_digest(heads(mine))),)))
    assert ledgers == (L,) and not follow_them
    out = e.receive(Sub(((L, frontier_digest(heads(mine))),)), 0.1, [facts([], genesis=False, visible=False)])
    assert sent(out) == [Sub(((L, EMPTY_DIGEST),)), Front(L, (), True)]
    out = e.receive(Own(()), 0.2, [])
    assert Report("restored") in out
    out = e.receive(Front(L, ((A.public_key, 3, mine[-1].id),), True), 0.3)
    assert sent(out) == [Want(L, A.public_key, 1, 3)]
    ents = Ents(L, A.public_key, tuple((x.header_raw, x.payload_raw) for x in mine))
    out = e.receive(ents, 0.4)
    assert out == [Verify(0, ents)]
    out = e.receive(Sent(L, A.public_key, 3), 0.4)
    assert out == []  # waits for its entries to be stored
    out = e.verified(0, mine, None, 0.5)
    assert out == [Store(0, tuple(mine))]
    out = e.stored(0, StoreResult((3, mine[-1].id), 3), 0.6)
    assert [type(m) for m in sent(out)] == [Level]


# ---- the push stall -------------------------------------------------------------------


def test_a_peer_that_got_our_entries_elsewhere_still_gets_pushes() -> None:
    """The stall: our front advertised seq 5; the peer's (older) front said 1 and it then got 2-5 from
    another link, so it never asked us. Its `level` must end "still fetching", or no push ever goes."""
    mine = chain(A, 5)
    e = engine()
    e.start([facts(mine)], 0.0)
    e.receive(Sub(((L, EMPTY_DIGEST),)), 0.1, [facts(mine)])
    e.receive(Front(L, ((A.public_key, 1, mine[0].id),), True), 0.2)
    sixth = follow(A, mine[-1], L)
    assert sent(e.offer([sixth], 0.3)) == []  # still fetching as far as we know: pushing would duplicate
    e.receive(Level(L, frontier_digest(heads(mine))), 0.4)
    seventh = follow(A, sixth, L)
    out = e.offer([seventh], 0.5)
    # The peer holds 5: the run 6-7 is read from the store and pushed, not skipped.
    assert out == [Tail(L, A.public_key, 6)]
    rows = [(x.seq, x.header_raw, x.payload_raw) for x in (sixth, seventh)]
    msgs = sent(e.tail_read(L, A.public_key, rows, 0.6))
    assert msgs == [Ents(L, A.public_key, tuple((x.header_raw, x.payload_raw) for x in (sixth, seventh)))]


def test_a_run_that_does_not_follow_what_the_peer_holds_is_filled_from_the_store() -> None:
    mine = chain(A, 3)
    e = engine()
    e.start([facts(mine)], 0.0)
    e.receive(Sub(((L, frontier_digest(heads(mine))),)), 0.1, [facts(mine)])
    later = chain(A, 6)[3:]
    assert e.offer(later[2:], 0.2) == [Tail(L, A.public_key, 4)]


# ---- refusals and metering --------------------------------------------------------------


def level_engine() -> SyncEngine:
    mine = chain(A, 2)
    e = engine()
    e.start([facts(mine)], 0.0)
    e.receive(Sub(((L, frontier_digest(heads(mine))),)), 0.0, [facts(mine)])
    return e


def test_a_damaged_entry_is_asked_again_once_and_only_where_its_ledger_is_shared() -> None:
    unshared = engine()
    unshared.start([facts(chain(A, 2))], 0.0)
    assert unshared.refetch(L, A.public_key, 2, 0.1) == []  # the peer may not see it: nothing is asked
    e = level_engine()
    assert sent(e.refetch(L, A.public_key, 2, 1.0)) == [Want(L, A.public_key, 2, 1)]
    assert e.refetch(L, A.public_key, 2, 1.1) == []  # once per link
    # the answer is one entry; no further window is asked for, though the peer holds more
    e.known[L.raw][A.public_key] = 5
    assert sent(e.receive(Sent(L, A.public_key, 2), 2.0)) == []
    assert e.outstanding == {} and not list(e.queued)


def test_sent_without_a_want_is_a_protocol_error() -> None:
    e = level_engine()
    out = e.receive(Sent(L, A.public_key, 3), 1.0)
    assert sent(out)[0] == Err("protocol_error", "sent for a want we did not make")
    assert closed(out) == "protocol_error"
    assert e.receive(Level(L, bytes(32)), 2.0) == []  # a closed engine ignores everything


def test_entries_of_an_unshared_ledger_are_refused() -> None:
    e = engine()
    e.start([], 0.0)
    g = chain(A, 1)
    assert closed(e.receive(Ents(L, A.public_key, ((g[0].header_raw, g[0].payload_raw),)), 0.1)) == "protocol_error"


def test_a_failed_verification_is_the_peers_violation() -> None:
    e = level_engine()
    other = chain(C, 1)
    out = e.receive(Ents(L, C.public_key, ((other[0].header_raw, other[0].payload_raw),)), 0.1)
    assert isinstance(out[0], Verify)
    from protocol import InvalidData

    out = e.verified(0, [], InvalidData("bad_signature", "no"), 0.2)
    assert closed(out) == "bad_signature"


def test_every_message_is_charged_err_level_and_fork_too() -> None:
    e = level_engine()
    unknown = CID(L.raw[:-1] + b"\x00")
    for i in range(int(REQUEST_BURST) - 1):  # the peer's sub took one token
        assert closed(e.receive(Level(unknown, bytes(32)), 0.0)) is None, i
    assert closed(e.receive(Err("x", "y"), 0.0)) == "rate_limited"


def test_level_of_made_up_ledgers_is_not_remembered() -> None:
    e = level_engine()
    for i in range(300):
        e.receive(Level(cid_of(b"%d" % i), bytes(32)), i * 0.01)
    assert len(e.level_theirs) == 1 and len(e.phase) == 1 and len(e.known) == 1


def test_err_reaches_the_log_once_per_link() -> None:
    e = level_engine()
    reports = [a for i in range(50) for a in e.receive(Err("bad", "x" * 1024), i * 0.01) if isinstance(a, Report)]
    assert reports == [Report("peer_err", text="bad: " + "x" * 200)]


def test_wants_beyond_the_queue_are_rate_limited() -> None:
    e = level_engine()
    out: list[Action] = []
    for i in range(PEER_WANTS_QUEUED + 2):
        out = e.receive(Want(L, A.public_key, 1, 1), i * 0.01)  # the first is being served: the rest wait
    assert closed(out) == "rate_limited"


def test_huge_fronts_are_cut_off() -> None:
    mine = chain(A, 2)
    e = engine()
    e.start([facts(mine)], 0.0)
    e.receive(Sub(((L, EMPTY_DIGEST),)), 0.0, [facts(mine)])
    out: list[Action] = []
    n = 0
    while closed(out) is None and n <= MAX_FRONT_HEADS:
        part = tuple(((n + i).to_bytes(32, "big"), 1, L) for i in range(600))
        out = e.receive(Front(L, part, False), n / 600.0)
        n += 600
    assert closed(out) == "rate_limited" and n <= MAX_FRONT_HEADS + 600


def test_fork_proofs_of_ledgers_not_replicated_are_not_kept() -> None:
    e = level_engine()
    made_up = cid_of(b"made-up ledger")
    one = follow(C, None, made_up)
    two = follow(C, None, made_up, body={"other": 1})
    proof = ForkProof.of(one, two)
    assert e.receive(Fork(proof.encode()), 0.1) == []
    mine = chain(A, 2)
    ours_a = follow(C, None, L)
    ours_b = follow(C, None, L, body={"x": 2})
    out = e.receive(Fork(ForkProof.of(ours_a, ours_b).encode()), 0.2)
    assert len(out) == 1 and isinstance(out[0], KeepFork)
    assert out[0].proof.encode() == ForkProof.of(ours_a, ours_b).encode()
    assert mine  # the ledger is shared: its proofs are for the driver to keep (author check there)


def test_a_bad_fork_proof_is_a_violation() -> None:
    e = level_engine()
    assert closed(e.receive(Fork(b"\xa0"), 0.1)) == "bad_fork_proof"


def test_a_want_of_a_ledger_the_peer_may_not_see_gets_nothing() -> None:
    e = engine()
    e.start([facts(chain(A, 2), visible=False)], 0.0)
    want = Want(L, A.public_key, 1, WANT_MAX)
    assert sent(e.receive(want, 0.1)) == [Sent(L, A.public_key, 0)]


def test_a_one_shot_sync_closes_when_level_both_ways() -> None:
    mine = chain(A, 2)
    e = engine(one_shot=True)
    e.start([facts(mine)], 0.0)
    out = e.receive(Sub(((L, frontier_digest(heads(mine))),)), 0.1, [facts(mine)])
    assert Close(None, "done") in out


def test_the_next_window_is_asked_while_a_full_one_is_answered() -> None:
    """SPEC §13.5 step 5: a full window's want goes with the next window's, so the link never idles."""
    e = engine()
    e.start([facts(chain(A, 1))], 0.0)
    e.receive(Sub(((L, EMPTY_DIGEST),)), 0.0, [facts(chain(A, 1))])
    c = C.public_key
    out = e.receive(Front(L, ((c, 3000, L),), True), 0.0)
    assert [m for m in sent(out) if isinstance(m, Want)] == [Want(L, c, 1, WANT_MAX), Want(L, c, 1025, WANT_MAX)]
    # The first answer was full: the second want is the chain's now, and the third window is asked.
    assert [m for m in sent(e.receive(Sent(L, c, 1024), 0.1)) if isinstance(m, Want)] == [Want(L, c, 2049, 952)]
    assert [m for m in sent(e.receive(Sent(L, c, 2048), 0.2)) if isinstance(m, Want)] == []  # the last, short
    assert [m for m in sent(e.receive(Sent(L, c, 3000), 0.3)) if isinstance(m, Want)] == []
    assert closed(e.receive(Sent(L, c, 3000), 0.4)) == "protocol_error"  # no want is left unanswered


def test_a_short_answer_asks_no_further_window() -> None:
    e = engine()
    e.start([facts(chain(A, 1))], 0.0)
    e.receive(Sub(((L, EMPTY_DIGEST),)), 0.0, [facts(chain(A, 1))])
    c = C.public_key
    e.receive(Front(L, ((c, 3000, L),), True), 0.0)
    assert [m for m in sent(e.receive(Sent(L, c, 500), 0.1)) if isinstance(m, Want)] == []  # the peer lacks 501
    assert [m for m in sent(e.receive(Sent(L, c, 1024), 0.2)) if isinstance(m, Want)] == []  # nothing from 1025
    assert e.next_timer() is None


def test_an_unanswered_want_times_out() -> None:
    mine = chain(A, 1)
    e = engine()
    e.start([facts(mine)], 0.0)
    e.receive(Sub(((L, EMPTY_DIGEST),)), 0.0, [facts(mine)])
    e.receive(Front(L, ((C.public_key, 4, L),), True), 0.0)
    deadline = e.next_timer()
    assert deadline is not None
    assert e.handle_timer(deadline - 1) == []
    assert closed(e.handle_timer(deadline)) == "link_timeout"


# ---- no input crashes the engine --------------------------------------------------------------

LEDGERS = [L, cid_of(b"other ledger")]
AUTHORS = [A.public_key, B.public_key, C.public_key]
ENTRIES = chain(A, 4)

seqs = st.integers(1, 6)
links = st.sampled_from(LEDGERS)
authors = st.sampled_from(AUTHORS)
ids = st.sampled_from([e.id for e in ENTRIES])
messages = st.one_of(
    st.builds(
        lambda items: Sub(tuple(items)),
        st.lists(st.tuples(links, st.sampled_from([EMPTY_DIGEST, bytes(32)])), max_size=3),
    ),
    st.builds(
        lambda lg, hs, d: Front(lg, tuple(sorted(hs)), d),
        links,
        st.lists(st.tuples(authors, seqs, ids), max_size=3, unique_by=lambda h: h[0]),
        st.booleans(),
    ),
    st.builds(Want, links, authors, seqs, st.integers(1, WANT_MAX)),
    st.builds(
        lambda lg, au, n: Ents(lg, au, tuple((e.header_raw, e.payload_raw) for e in ENTRIES[:n])),
        links,
        authors,
        st.integers(1, 4),
    ),
    st.builds(Sent, links, authors, st.integers(0, 6)),
    st.builds(Level, links, st.just(bytes(32))),
    st.builds(Fork, st.binary(max_size=20)),
    st.builds(Own, st.one_of(st.none(), st.lists(st.tuples(links, seqs, ids), max_size=2).map(tuple))),
    st.builds(Err, st.text(max_size=5), st.text(max_size=5)),
)


def drive(e: SyncEngine, actions: list[Action], now: float) -> list[Action]:
    """Answer the engine's requests as a store holding ENTRIES would, and collect everything."""
    seen: list[Action] = []
    work = list(actions)
    while work:
        a = work.pop(0)
        seen.append(a)
        if isinstance(a, Serve):
            rows = [(x.seq, x.header_raw, x.payload_raw) for x in ENTRIES if x.seq >= a.want.start]
            work += e.served(a.want, rows, now)
        elif isinstance(a, Tail):
            work += e.tail_read(a.ledger, a.author, [], now)
        elif isinstance(a, Verify):
            work += e.verified(a.job, list(ENTRIES[: len(a.ents.entries)]), None, now)
        elif isinstance(a, Store):
            work += e.stored(a.job, StoreResult((a.entries[-1].seq, a.entries[-1].id), len(a.entries)), now)
    return seen


@FAST
@given(st.lists(messages, max_size=25), st.booleans(), st.booleans())
def test_no_sequence_of_messages_crashes_the_engine(script: list[Message], one_shot: bool, catching_up: bool) -> None:
    e = SyncEngine(A.public_key, B.public_key, one_shot=one_shot, catching_up=catching_up)
    drive(e, e.start([facts(ENTRIES)], 0.0), 0.0)
    for i, m in enumerate(script):
        now = i * 0.01
        parsed, out = e.parse(encode_message(m), now)
        drive(e, out, now)
        if parsed is None:
            continue
        ledgers, _ = e.lookup(parsed)
        known = [LedgerFacts(lg, lg == L, lg == L, lg == L, heads(ENTRIES) if lg == L else {}) for lg in ledgers]
        for a in drive(e, e.receive(parsed, now, known), now):
            if isinstance(a, Close) and a.code is not None:
                assert a.code in CODES
            if isinstance(a, Send):
                encode_message(a.message)  # never sends what it would refuse itself
    assert e.pending_jobs >= 0


def test_spec_lists_the_engine_limits() -> None:
    text = SPEC.read_text()
    for name in ("PEER_WANTS_QUEUED", "MAX_FRONT_HEADS", "MAX_NAMED_LEDGERS", "WANT_TIMEOUT_S"):
        assert re.search(rf"`{name} = [0-9_.,]+`", text), name


def engine_in(phase: Phase) -> SyncEngine:
    """An engine whose ledger L is in `phase` (the peer B holds C's chain further than we do)."""
    mine = chain(A, 2)
    e = engine()
    e.start([facts(mine, visible=phase is not Phase.UNSHARED)], 0.0)
    if phase in (Phase.COMPARING, Phase.FETCHING):
        e.receive(Sub(((L, EMPTY_DIGEST),)), 0.0, [facts(mine)])
    if phase is Phase.FETCHING:
        e.receive(Front(L, ((C.public_key, 3, L),), True), 0.0)
    if phase is Phase.LEVEL:
        e.receive(Sub(((L, frontier_digest(heads(mine))),)), 0.0, [facts(mine)])
    assert e.phase.get(L.raw, Phase.UNSHARED) is phase
    return e


@FAST
@given(st.sampled_from(list(Phase)), messages)
def test_every_phase_and_message_pair_is_handled_or_refused_with_a_code(phase: Phase, m: Message) -> None:
    e = engine_in(phase)
    parsed, out = e.parse(encode_message(m), 0.1)
    assert parsed is not None and out == []
    ledgers, _ = e.lookup(parsed)
    known = [LedgerFacts(lg, lg == L, lg == L, lg == L, heads(ENTRIES) if lg == L else {}) for lg in ledgers]
    for a in drive(e, e.receive(parsed, 0.1, known), 0.1):
        if isinstance(a, Close) and a.code is not None:
            assert a.code in CODES
            assert e.closed and e.failure is not None and e.failure.code == a.code
    assert e.phase.get(L.raw, Phase.UNSHARED) in Phase
