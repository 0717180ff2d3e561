"""The sync protocol's messages and pure helpers (protocol/sync.py, SPEC.md §13)."""

from __future__ import annotations

import hashlib
from typing import Any

import cbor2
import pytest
from hypothesis import given
from hypothesis import strategies as st
from protocol_helpers import FAST, cid_of, cids, follow, genesis, key

from protocol import dagcbor
from protocol.cid import CID
from protocol.entry import MAX_HEADER_BYTES, MAX_PAYLOAD_BYTES, Entry
from protocol.errors import InvalidData
from protocol.sync import (
    MAX_CODE_CHARS,
    MAX_HEADS_PER_FRONT,
    MAX_LEDGERS_PER_SUB,
    MAX_MESSAGE_BYTES,
    MAX_TEXT_CHARS,
    MESSAGE_TYPES,
    WANT_MAX,
    Ents,
    Err,
    Fork,
    Front,
    Level,
    Message,
    Own,
    RateLimit,
    Sent,
    Sub,
    Want,
    check_ents,
    decode_message,
    encode_message,
    ents_messages,
    front_messages,
    frontier_digest,
    plan,
)

LEDGER = cid_of(b"ledger")
OTHER_ID = cid_of(b"other")
AUTHOR = bytes(range(32))
DIGEST = bytes(32)
MAX_SEQ = 2**53 - 1


def refused(data: bytes) -> str:
    with pytest.raises(InvalidData) as info:
        decode_message(data)
    return info.value.code


def raw(t: str, **fields: Any) -> bytes:
    """A message map encoded canonically as given, valid or not."""
    return dagcbor.encode({"t": t, **fields})


# --- strategies ------------------------------------------------------------------------------------

authors = st.binary(min_size=32, max_size=32)
digests = st.binary(min_size=32, max_size=32)
seqs = st.integers(min_value=1, max_value=MAX_SEQ)
heads_items = st.tuples(authors, seqs, cids)
own_items = st.tuples(cids, seqs, cids)
raw_entries = st.tuples(
    st.binary(max_size=64), st.none() | st.binary(max_size=64)
)

messages: st.SearchStrategy[Message] = st.one_of(
    st.builds(Sub, st.lists(st.tuples(cids, digests), max_size=8).map(tuple)),
    st.builds(Front, cids, st.lists(heads_items, max_size=8).map(tuple), st.booleans()),
    st.builds(Want, cids, authors, seqs, st.integers(min_value=1, max_value=WANT_MAX)),
    st.builds(Ents, cids, authors, st.lists(raw_entries, min_size=1, max_size=6).map(tuple)),
    st.builds(Sent, cids, authors, st.integers(min_value=0, max_value=MAX_SEQ)),
    st.builds(Level, cids, digests),
    st.builds(Fork, st.binary(max_size=200)),
    st.builds(Own, st.none() | st.lists(own_items, max_size=8).map(tuple)),
    st.builds(Err, st.text(max_size=MAX_CODE_CHARS), st.text(max_size=MAX_TEXT_CHARS)),
)

# One valid instance of every type, to break one field at a time.
VALID: dict[str, Message] = {
    "sub": Sub(((LEDGER, DIGEST),)),
    "front": Front(LEDGER, ((AUTHOR, 3, OTHER_ID),), True),
    "want": Want(LEDGER, AUTHOR, 1, 10),
    "ents": Ents(LEDGER, AUTHOR, ((b"header", b"payload"),)),
    "sent": Sent(LEDGER, AUTHOR, 3),
    "level": Level(LEDGER, DIGEST),
    "fork": Fork(b"proof"),
    "own": Own(((LEDGER, 3, OTHER_ID),)),
    "err": Err("bad_message", "why"),
}


def test_valid_table_covers_every_type() -> None:
    assert set(VALID) == set(MESSAGE_TYPES)
    for t, message in VALID.items():
        assert t == message.T
        assert decode_message(encode_message(message)) == message


# --- round trips -----------------------------------------------------------------------------------


@FAST
@given(messages)
def test_every_message_round_trips(message: Message) -> None:
    data = encode_message(message)
    decoded = decode_message(data)
    assert decoded == message
    assert type(decoded) is type(message)
    assert encode_message(decoded) == data
    value = dagcbor.decode(data, max_bytes=MAX_MESSAGE_BYTES)
    assert value["t"] == message.T


def test_own_question_and_empty_answer_differ() -> None:
    question, answer = Own(None), Own(())
    assert decode_message(encode_message(question)) == question
    assert decode_message(encode_message(answer)) == answer
    assert encode_message(question) != encode_message(answer)


def test_message_bytes() -> None:
    assert encode_message(Sub(())).hex() == "a2617463737562676c65646765727380"


def test_want_uses_the_key_from() -> None:
    value = dagcbor.decode(encode_message(Want(LEDGER, AUTHOR, 5, 7)), max_bytes=MAX_MESSAGE_BYTES)
    assert value == {"t": "want", "ledger": LEDGER, "author": AUTHOR, "from": 5, "limit": 7}


# --- refusals --------------------------------------------------------------------------------------


@pytest.mark.parametrize("t", sorted(VALID))
def test_missing_key_is_bad_message(t: str) -> None:
    fields = VALID[t].fields()
    for name in fields:
        rest = {k: v for k, v in fields.items() if k != name}
        assert refused(raw(t, **rest)) == "bad_message", name


@pytest.mark.parametrize("t", sorted(VALID))
def test_extra_key_is_bad_message(t: str) -> None:
    assert refused(raw(t, **VALID[t].fields(), x=1)) == "bad_message"
    assert refused(raw(t, **VALID[t].fields(), v=1)) == "bad_message"


def fields_with(t: str, **changes: Any) -> bytes:
    return raw(t, **{**VALID[t].fields(), **changes})


HEAD = [AUTHOR, 3, OTHER_ID]
OWN_HEAD = [LEDGER, 3, OTHER_ID]

BAD_FIELDS: list[tuple[str, dict[str, Any]]] = [
    # sub
    ("sub", {"ledgers": None}),
    ("sub", {"ledgers": {"a": 1}}),
    ("sub", {"ledgers": [LEDGER]}),
    ("sub", {"ledgers": [[LEDGER]]}),
    ("sub", {"ledgers": [[LEDGER, DIGEST, 1]]}),
    ("sub", {"ledgers": [[LEDGER.raw, DIGEST]]}),
    ("sub", {"ledgers": [[str(LEDGER), DIGEST]]}),
    ("sub", {"ledgers": [[LEDGER, bytes(31)]]}),
    ("sub", {"ledgers": [[LEDGER, bytes(33)]]}),
    ("sub", {"ledgers": [[LEDGER, "00" * 32]]}),
    # front
    ("front", {"ledger": LEDGER.raw}),
    ("front", {"heads": None}),
    ("front", {"heads": [HEAD[:2]]}),
    ("front", {"heads": [[*HEAD, 1]]}),
    ("front", {"heads": [[bytes(31), 3, OTHER_ID]]}),
    ("front", {"heads": [[bytes(33), 3, OTHER_ID]]}),
    ("front", {"heads": [[AUTHOR, 0, OTHER_ID]]}),
    ("front", {"heads": [[AUTHOR, -1, OTHER_ID]]}),
    ("front", {"heads": [[AUTHOR, MAX_SEQ + 1, OTHER_ID]]}),
    ("front", {"heads": [[AUTHOR, True, OTHER_ID]]}),
    ("front", {"heads": [[AUTHOR, "3", OTHER_ID]]}),
    ("front", {"heads": [[AUTHOR, 3, OTHER_ID.raw]]}),
    ("front", {"done": 1}),
    ("front", {"done": None}),
    # want
    ("want", {"ledger": None}),
    ("want", {"author": bytes(31)}),
    ("want", {"author": bytes(33)}),
    ("want", {"author": "did:key:z6Mk"}),
    ("want", {"from": 0}),
    ("want", {"from": -1}),
    ("want", {"from": True}),
    ("want", {"from": MAX_SEQ + 1}),
    ("want", {"limit": 0}),
    ("want", {"limit": WANT_MAX + 1}),
    ("want", {"limit": True}),
    ("want", {"limit": "10"}),
    # ents
    ("ents", {"ledger": b"ledger"}),
    ("ents", {"author": bytes(31)}),
    ("ents", {"entries": []}),
    ("ents", {"entries": None}),
    ("ents", {"entries": [b"header"]}),
    ("ents", {"entries": [[b"header"]]}),
    ("ents", {"entries": [[b"header", b"payload", b"x"]]}),
    ("ents", {"entries": [["header", b"payload"]]}),
    ("ents", {"entries": [[None, b"payload"]]}),
    ("ents", {"entries": [[b"header", "payload"]]}),
    ("ents", {"entries": [[b"header", 0]]}),
    ("ents", {"entries": [[b"h" * (MAX_HEADER_BYTES + 1), b"payload"]]}),
    ("ents", {"entries": [[b"header", b"p" * (MAX_PAYLOAD_BYTES + 1)]]}),
    # sent
    ("sent", {"ledger": 1}),
    ("sent", {"author": bytes(31)}),
    ("sent", {"upto": -1}),
    ("sent", {"upto": False}),
    ("sent", {"upto": MAX_SEQ + 1}),
    ("sent", {"upto": None}),
    # level
    ("level", {"ledger": DIGEST}),
    ("level", {"digest": bytes(31)}),
    ("level", {"digest": bytes(33)}),
    ("level", {"digest": None}),
    # fork
    ("fork", {"proof": None}),
    ("fork", {"proof": "proof"}),
    ("fork", {"proof": [b"a", b"b"]}),
    # own
    ("own", {"heads": False}),
    ("own", {"heads": {}}),
    ("own", {"heads": [OWN_HEAD[:2]]}),
    ("own", {"heads": [[LEDGER.raw, 3, OTHER_ID]]}),
    ("own", {"heads": [[LEDGER, 0, OTHER_ID]]}),
    ("own", {"heads": [[LEDGER, True, OTHER_ID]]}),
    ("own", {"heads": [[LEDGER, 3, None]]}),
    # err
    ("err", {"code": None}),
    ("err", {"code": b"bad_message"}),
    ("err", {"code": "c" * (MAX_CODE_CHARS + 1)}),
    ("err", {"message": 1}),
    ("err", {"message": "m" * (MAX_TEXT_CHARS + 1)}),
]


@pytest.mark.parametrize(("t", "changes"), BAD_FIELDS, ids=[f"{t}-{i}" for i, (t, _) in enumerate(BAD_FIELDS)])
def test_bad_field_is_bad_message(t: str, changes: dict[str, Any]) -> None:
    assert refused(fields_with(t, **changes)) == "bad_message"


@pytest.mark.parametrize(
    ("t", "name", "limit"),
    [
        ("sub", "ledgers", MAX_LEDGERS_PER_SUB),
        ("front", "heads", MAX_HEADS_PER_FRONT),
        ("ents", "entries", WANT_MAX),
        ("own", "heads", MAX_LEDGERS_PER_SUB),
    ],
)
def test_too_many_items_is_bad_message(t: str, name: str, limit: int) -> None:
    # Items of one byte each: the count is refused before any item is looked at.
    data = fields_with(t, **{name: [0] * (limit + 1)})
    assert len(data) <= MAX_MESSAGE_BYTES
    assert refused(data) == "bad_message"


def test_limits_at_the_edge_are_accepted() -> None:
    assert decode_message(fields_with("want", limit=WANT_MAX)) == Want(LEDGER, AUTHOR, 1, WANT_MAX)
    assert decode_message(fields_with("want", **{"from": MAX_SEQ})) == Want(LEDGER, AUTHOR, MAX_SEQ, 10)
    assert decode_message(fields_with("sent", upto=0)) == Sent(LEDGER, AUTHOR, 0)
    edge = [[b"h" * MAX_HEADER_BYTES, b"p" * MAX_PAYLOAD_BYTES], [b"h", None]]
    assert decode_message(fields_with("ents", entries=edge)) == Ents(
        LEDGER, AUTHOR, ((b"h" * MAX_HEADER_BYTES, b"p" * MAX_PAYLOAD_BYTES), (b"h", None))
    )
    err = Err("c" * MAX_CODE_CHARS, "m" * MAX_TEXT_CHARS)
    assert decode_message(encode_message(err)) == err
    full = Front(LEDGER, ((AUTHOR, 3, OTHER_ID),) * MAX_HEADS_PER_FRONT, True)
    assert decode_message(fields_with("front", heads=[HEAD] * MAX_HEADS_PER_FRONT)) == full


@pytest.mark.parametrize(
    "value",
    [[], ["sub"], 1, "sub", b"sub", None, {}, {"ledgers": []}, {"t": 1, "ledgers": []}, {"t": None},
     {"t": b"sub", "ledgers": []}],
)
def test_not_a_typed_map_is_bad_message(value: Any) -> None:
    assert refused(dagcbor.encode(value)) == "bad_message"


@pytest.mark.parametrize("t", ["hello", "Sub", "SUB", "subs", "", "t", "want2"])
def test_unknown_type_is_unknown_message(t: str) -> None:
    assert refused(raw(t)) == "unknown_message"
    assert refused(raw(t, ledgers=[], x=1)) == "unknown_message"


def test_non_canonical_cbor_is_bad_encoding() -> None:
    valid = encode_message(VALID["want"])
    assert decode_message(valid) == VALID["want"]
    unsorted = cbor2.dumps({"ledgers": [], "t": "sub"})  # "t" sorts first (shorter key)
    assert refused(unsorted) == "bad_encoding"
    assert refused(valid + b"\x00") == "bad_encoding"  # trailing bytes
    # limit 10 as 0x180a instead of 0x0a
    long_limit = valid.replace(bytes.fromhex("656c696d69740a"), bytes.fromhex("656c696d6974180a"))
    assert long_limit != valid
    assert refused(long_limit) == "bad_encoding"
    assert refused(cbor2.dumps({"t": "sent", "upto": 1.0, "ledger": b"", "author": b""})) == "bad_encoding"
    assert refused(bytes.fromhex("bf61746373756260ff")) == "bad_encoding"  # indefinite-length map
    assert refused(b"") == "bad_encoding"


def test_a_malformed_link_is_bad_encoding() -> None:
    # tag 42 over a CID of version 2: refused by the codec, before the message is looked at
    bad_link = cbor2.CBORTag(42, b"\x00\x02\x71\x12\x20" + bytes(32))
    assert refused(cbor2.dumps({"t": "level", "ledger": bad_link, "digest": DIGEST}, canonical=True)) == (
        "bad_encoding"
    )


def test_oversize_message() -> None:
    assert refused(b"\x00" * (MAX_MESSAGE_BYTES + 1)) == "oversize"
    big = Fork(b"x" * MAX_MESSAGE_BYTES)
    with pytest.raises(InvalidData) as info:
        encode_message(big)
    assert info.value.code == "oversize"
    assert refused(raw("fork", proof=b"x" * MAX_MESSAGE_BYTES)) == "oversize"
    # the largest fork message that fits is accepted
    fits = Fork(b"x" * (MAX_MESSAGE_BYTES - len(encode_message(Fork(b""))) - 2))
    assert len(encode_message(fits)) == MAX_MESSAGE_BYTES
    assert decode_message(encode_message(fits)) == fits


# --- frontiers -------------------------------------------------------------------------------------

frontiers = st.dictionaries(authors, st.tuples(seqs, cids), max_size=12)


def test_frontier_digest_definition() -> None:
    assert frontier_digest({}) == hashlib.sha256(b"\x80").digest()
    assert frontier_digest({}).hex() == "76be8b528d0075f7aae98d6fa57a6d3c83ae480a8469e668d7b0af968995ac71"
    one = {AUTHOR: (3, OTHER_ID)}
    expected = b"\x81\x83\x58\x20" + AUTHOR + b"\x03\xd8\x2a\x58\x25\x00" + OTHER_ID.raw
    assert frontier_digest(one) == hashlib.sha256(expected).digest()


@FAST
@given(frontiers, st.randoms(use_true_random=False))
def test_frontier_digest_is_order_independent(heads: dict[bytes, tuple[int, CID]], rnd: Any) -> None:
    items = list(heads.items())
    rnd.shuffle(items)
    assert frontier_digest(dict(items)) == frontier_digest(heads)
    expected = [[a, s, c] for a, (s, c) in sorted(heads.items())]
    assert frontier_digest(heads) == hashlib.sha256(dagcbor.encode(expected)).digest()


@FAST
@given(frontiers.filter(bool), st.data())
def test_frontier_digest_changes_with_any_head(heads: dict[bytes, tuple[int, CID]], data: st.DataObject) -> None:
    before = frontier_digest(heads)
    author = data.draw(st.sampled_from(sorted(heads)))
    seq, cid = heads[author]
    change = data.draw(st.sampled_from(["seq", "id", "author", "drop", "add"]))
    changed = dict(heads)
    if change == "seq":
        changed[author] = (data.draw(seqs.filter(lambda s: s != seq)), cid)
    elif change == "id":
        changed[author] = (seq, data.draw(cids.filter(lambda c: c != cid)))
    elif change == "author":
        other = data.draw(authors.filter(lambda a: a not in heads))
        del changed[author]
        changed[other] = (seq, cid)
    elif change == "drop":
        del changed[author]
    else:
        changed[data.draw(authors.filter(lambda a: a not in heads))] = (seq, cid)
    assert frontier_digest(changed) != before


def many_heads(n: int) -> dict[bytes, tuple[int, CID]]:
    return {hashlib.sha256(b"%d" % i).digest(): (MAX_SEQ - i, cid_of(b"%d" % i)) for i in range(n)}


@pytest.mark.parametrize(
    "n", [0, 1, 2, MAX_HEADS_PER_FRONT - 1, MAX_HEADS_PER_FRONT, MAX_HEADS_PER_FRONT + 1, 2 * MAX_HEADS_PER_FRONT + 1]
)
def test_front_messages_split_and_reassemble(n: int) -> None:
    heads = many_heads(n)
    fronts = front_messages(LEDGER, heads)
    assert len(fronts) == max(1, -(-n // MAX_HEADS_PER_FRONT))
    assert [f.done for f in fronts] == [False] * (len(fronts) - 1) + [True]
    assert all(f.ledger == LEDGER for f in fronts)
    assert all(len(f.heads) <= MAX_HEADS_PER_FRONT for f in fronts)
    assert all(len(f.heads) == MAX_HEADS_PER_FRONT for f in fronts[:-1])
    joined = [h for f in fronts for h in f.heads]
    assert [h[0] for h in joined] == sorted(heads)  # sorted by author across parts
    assert {a: (s, c) for a, s, c in joined} == heads
    for f in fronts:
        data = encode_message(f)  # the largest seqs and full parts still fit one frame
        assert len(data) <= MAX_MESSAGE_BYTES
        assert decode_message(data) == f


@FAST
@given(frontiers)
def test_front_messages_reassemble(heads: dict[bytes, tuple[int, CID]]) -> None:
    fronts = front_messages(LEDGER, heads)
    assert fronts[-1].done and not any(f.done for f in fronts[:-1])
    assert {a: (s, c) for f in fronts for a, s, c in f.heads} == heads


# --- plan ------------------------------------------------------------------------------------------

small_authors = st.sampled_from([bytes([i]) * 32 for i in range(6)])
small_ids = st.sampled_from([cid_of(b"%d" % i) for i in range(3)])
small_frontiers = st.dictionaries(
    small_authors, st.tuples(st.integers(min_value=1, max_value=3 * WANT_MAX), small_ids), max_size=6
)


@FAST
@given(small_frontiers, small_frontiers)
def test_plan(mine: dict[bytes, tuple[int, CID]], theirs: dict[bytes, tuple[int, CID]]) -> None:
    p = plan(LEDGER, mine, theirs)
    ahead = {a for a, (s, _) in theirs.items() if s > mine.get(a, (0, None))[0]}
    assert [w.author for w in p.wants] == sorted(ahead)
    for want in p.wants:
        my_seq = mine.get(want.author, (0, None))[0]
        gap = theirs[want.author][0] - my_seq
        assert want.ledger == LEDGER
        assert want.start == my_seq + 1
        assert want.limit == min(WANT_MAX, gap)
        assert 1 <= want.limit <= WANT_MAX  # a valid want
        assert decode_message(encode_message(want)) == want
    assert p.behind == sum(theirs[a][0] - mine.get(a, (0, None))[0] for a in ahead)
    expected_suspects = [
        (a, s, c)
        for a, (s, c) in sorted(theirs.items())
        if a in mine and (s < mine[a][0] or (s == mine[a][0] and c != mine[a][1]))
    ]
    assert list(p.suspects) == expected_suspects


def test_plan_cases() -> None:
    a, b, c, d = (bytes([i]) * 32 for i in range(4))
    x, y = cid_of(b"x"), cid_of(b"y")
    mine = {a: (5, x), b: (5, x), c: (5, x), d: (7, x)}
    new = b"\xff" * 32  # a chain we lack entirely
    theirs = {a: (5, x), b: (5, y), c: (3, y), d: (7 + WANT_MAX + 10, y), new: (2, y)}
    p = plan(LEDGER, mine, theirs)
    assert p.wants == (Want(LEDGER, d, 8, WANT_MAX), Want(LEDGER, new, 1, 2))
    assert p.suspects == ((b, 5, y), (c, 3, y))
    assert p.behind == 2 + WANT_MAX + 10
    assert plan(LEDGER, mine, mine) == plan(LEDGER, mine, {}) == plan(LEDGER, {}, {})
    assert plan(LEDGER, mine, {}).wants == () and plan(LEDGER, mine, {}).behind == 0


# --- ents ------------------------------------------------------------------------------------------

entry_sizes = st.lists(
    st.tuples(
        st.integers(min_value=1, max_value=MAX_HEADER_BYTES),
        st.none() | st.integers(min_value=1, max_value=MAX_PAYLOAD_BYTES),
    ),
    max_size=40,
)


def check_split(
    entries: list[tuple[bytes, bytes | None]], ledger: CID = LEDGER, author: bytes = AUTHOR
) -> list[Ents]:
    messages = ents_messages(ledger, author, entries)
    assert [e for m in messages for e in m.entries] == entries  # same entries, same order
    for m in messages:
        assert m.ledger == ledger and m.author == author
        assert 1 <= len(m.entries) <= WANT_MAX
        data = encode_message(m)
        assert len(data) <= MAX_MESSAGE_BYTES
        assert decode_message(data) == m
    return messages


@FAST
@given(entry_sizes)
def test_ents_messages_fit_frames(sizes: list[tuple[int, int | None]]) -> None:
    entries = [(b"h" * h, None if p is None else b"p" * p) for h, p in sizes]
    messages = check_split(entries)
    assert (not messages) == (not entries)


def test_ents_messages_largest_entries() -> None:
    entries: list[tuple[bytes, bytes | None]] = [(b"h" * MAX_HEADER_BYTES, b"p" * MAX_PAYLOAD_BYTES)] * 20
    messages = check_split(entries)
    assert len(messages) > 1


def test_ents_messages_split_at_want_max() -> None:
    entries: list[tuple[bytes, bytes | None]] = [(b"h", None)] * (2 * WANT_MAX + 1)
    messages = check_split(entries)
    assert [len(m.entries) for m in messages] == [WANT_MAX, WANT_MAX, 1]


def test_ents_messages_of_nothing() -> None:
    assert ents_messages(LEDGER, AUTHOR, []) == []


A, B = key(1), key(2)
G = genesis(A, body={"name": "Coop", "visibility": "public"})


def chain(author: Any, ledger: CID, n: int, *, first: Entry | None = None, size: int = 8) -> list[Entry]:
    out: list[Entry] = [] if first is None else [first]
    while len(out) < n:
        out.append(follow(author, out[-1] if out else None, ledger, body={"n": len(out), "pad": "x" * size}))
    return out


def test_ents_messages_keep_a_real_chain_consecutive() -> None:
    entries = chain(A, G.id, 12, first=G, size=MAX_PAYLOAD_BYTES - 64)
    messages = check_split([(e.header_raw, e.payload_raw) for e in entries], G.id, A.public_key)
    assert len(messages) > 1
    done = 0
    for m in messages:
        part = entries[done : done + len(m.entries)]
        check_ents(m, part)
        assert part[0].seq == done + 1
        done += len(part)


# --- check_ents ------------------------------------------------------------------------------------


def ents_of(ledger: CID, author: bytes, entries: list[Entry]) -> Ents:
    return Ents(ledger, author, tuple((e.header_raw, e.payload_raw) for e in entries))


def check_refused(message: Ents, entries: list[Entry]) -> str:
    with pytest.raises(InvalidData) as info:
        check_ents(message, entries)
    return info.value.code


def test_check_ents_accepts_consecutive_entries_of_the_named_chain() -> None:
    mine = chain(A, G.id, 4, first=G)
    check_ents(ents_of(G.id, A.public_key, mine), mine)
    check_ents(ents_of(G.id, A.public_key, mine[2:]), mine[2:])
    theirs = chain(B, G.id, 3)
    check_ents(ents_of(G.id, B.public_key, theirs), theirs)


def test_check_ents_refuses_another_chain() -> None:
    mine = chain(A, G.id, 3, first=G)
    theirs = chain(B, G.id, 3)
    other_ledger = chain(A, cid_of(b"another ledger"), 3)
    assert check_refused(ents_of(G.id, A.public_key, theirs), theirs) == "protocol_error"
    assert check_refused(ents_of(G.id, B.public_key, mine), mine) == "protocol_error"
    mixed = [mine[0], theirs[1]]
    assert check_refused(ents_of(G.id, A.public_key, mixed), mixed) == "protocol_error"
    assert check_refused(ents_of(G.id, A.public_key, other_ledger), other_ledger) == "protocol_error"
    assert check_refused(ents_of(cid_of(b"another ledger"), A.public_key, mine), mine) == "protocol_error"


def test_check_ents_refuses_non_consecutive_seqs() -> None:
    mine = chain(A, G.id, 4, first=G)
    for bad in ([mine[0], mine[2]], [mine[1], mine[0]], [mine[1], mine[1]], [mine[0], mine[1], mine[3]]):
        assert check_refused(ents_of(G.id, A.public_key, bad), bad) == "protocol_error"


# --- rate limit ------------------------------------------------------------------------------------


def test_rate_limit_burst_then_refusal_then_refill() -> None:
    limit = RateLimit(rate=2.0, burst=3.0)
    now = 100.0
    assert [limit.allow(now) for _ in range(4)] == [True, True, True, False]
    assert not limit.allow(now + 0.1)  # 0.2 of a token: not enough
    assert limit.allow(now + 0.5)  # one token back after half a second
    assert not limit.allow(now + 0.5)
    now += 60  # a long pause refills up to the burst, no more
    assert [limit.allow(now) for _ in range(4)] == [True, True, True, False]


def test_rate_limit_cost() -> None:
    limit = RateLimit(rate=1.0, burst=5.0)
    assert limit.allow(0.0, cost=5.0)
    assert not limit.allow(0.0, cost=1.0)
    assert not limit.allow(2.0, cost=3.0)  # two tokens back: a cost of 3 waits
    assert limit.allow(3.0, cost=3.0)


@FAST
@given(
    st.floats(min_value=0.5, max_value=50.0),
    st.integers(min_value=1, max_value=20),
    st.lists(st.floats(min_value=0.0, max_value=2.0), min_size=1, max_size=200),
)
def test_rate_limit_never_exceeds_rate_plus_burst(rate: float, burst: int, steps: list[float]) -> None:
    limit = RateLimit(rate=rate, burst=float(burst))
    now = 0.0
    allowed = 0
    for step in steps:
        now += step
        allowed += limit.allow(now)
    assert allowed <= burst + rate * now + 1e-9
