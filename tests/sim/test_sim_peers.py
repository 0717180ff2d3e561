"""The simulation tier: forks, the push stall, members-only ledgers and hostile peers."""

from __future__ import annotations

from itertools import pairwise

from simnet import LinkEnd, Network, SimNode, holds_all, public_genesis

from protocol import CID, Entry, SigningKey, create_entry
from protocol.fork import ForkProof
from protocol.sync import Ents, Fork, Front, Level, Message, Sent, Want, encode_message


def setup(n: int, seed: int = 1, visibility: str = "public") -> tuple[Network, Entry]:
    net = Network(seed)
    for _ in range(n):
        net.add_node()
    g = public_genesis(net.nodes[0], visibility=visibility)
    for node in net.nodes[1:]:
        node.follow(g.id)
        node.stored([g])
    return net, g


def end_of(node: SimNode, peer: SimNode) -> LinkEnd:
    return next(e for e in node.ends if e.peer is peer)


def inject(net: Network, victim: SimNode, attacker: SimNode, message: Message | bytes) -> None:
    """Deliver a frame from `attacker` to `victim` on their link, as the wire would."""
    data = message if isinstance(message, bytes) else encode_message(message)
    net._deliver(end_of(victim, attacker), data)


def signed(key: SigningKey, ledger: CID, seq: int, prev: CID | None, body: dict[str, int]) -> Entry:
    return create_entry(key, ledger=ledger, seq=seq, prev=prev, ts=1000, kind="vf.event", body=body)


# ---- the push stall ----------------------------------------------------------------


def test_pushes_reach_a_peer_that_fetched_our_entries_over_another_link() -> None:
    """The stall of issue 13: B sends its front, then gets A's entries from C before A's front
    arrives; B asks A for nothing. A must still push B its next entries, whatever the latencies."""
    for slow in (3.0, 5.0, 8.0, 12.0):
        stalled_peer_gets_pushes(slow)


def stalled_peer_gets_pushes(slow: float) -> None:
    net, g = setup(3)
    a, b, c = net.nodes
    a.append(g.id, 5)
    net.connect(a, c, latency=1.0)
    net.connect(c, b, latency=slow / 2)
    ab = net.connect(a, b, latency=slow)
    assert net.step_until(100, lambda: holds_all(net, g.id, 6))
    net.quiet(200)
    for link in list(net.links):
        if link is not ab:
            net.break_link(link, redial=False)
    a.append(g.id, 2)
    assert net.step_until(net.now + 3 * slow, lambda: b.store.count(g.id.raw) == 8), slow


# ---- forks ----------------------------------------------------------------------------


def test_a_fork_is_found_and_its_proof_reaches_every_node() -> None:
    net, g = setup(6)
    forker = net.nodes[5]
    first = signed(forker.key, g.id, 1, None, {"n": 1})
    one = signed(forker.key, g.id, 2, first.id, {"n": 2})
    other = signed(forker.key, g.id, 2, first.id, {"n": 3})
    net.nodes[1].stored([first, one])
    net.nodes[4].stored([first, other])
    chain = net.nodes[:5]
    for x, y in pairwise(chain):
        net.connect(x, y)
    net.quiet(200)
    for node in net.nodes[:5]:
        assert len(node.store.forks) == 1, node.index
        kept = node.store.chains[(g.id.raw, forker.public)]
        assert kept[-1].id in (one.id, other.id)  # the entry stored first stays; the other is only proven


def test_fork_proofs_of_made_up_ledgers_are_neither_kept_nor_gossiped() -> None:
    net, g = setup(3)
    victim, friend, _ = net.nodes
    attacker = net.add_node()
    net.connect(victim, friend)
    net.connect(victim, attacker)
    net.quiet(50)
    fresh = attacker.key
    for i in range(300):
        made_up = CID(g.id.raw[:-4] + i.to_bytes(4, "big"))
        a = signed(fresh, made_up, 1, None, {"n": 1})
        b = signed(fresh, made_up, 1, None, {"n": 2})
        net.now += 0.01  # under the request rate: metering is not what stops them
        inject(net, victim, attacker, Fork(ForkProof.of(a, b).encode()))
    # Its own fork in the real ledger is not kept either: its author has no chain there.
    a = signed(fresh, g.id, 1, None, {"n": 1})
    b = signed(fresh, g.id, 1, None, {"n": 2})
    inject(net, victim, attacker, Fork(ForkProof.of(a, b).encode()))
    net.quiet(50)
    assert victim.store.forks == {} and friend.store.forks == {}
    assert victim.violations == []


def test_members_only_fork_proofs_never_reach_a_non_member() -> None:
    net, g = setup(3, visibility="members")
    founder, member, outsider = net.nodes
    for node in (founder, member):
        node.members[g.id.raw] = {founder.public, member.public}
    outsider.store.chains.clear()  # it follows the ledger id but holds nothing of it
    outsider.store.genesis.clear()
    first = signed(member.key, g.id, 1, None, {"n": 1})
    member.stored([first])
    founder.stored([first])
    net.connect(founder, member)
    net.connect(member, outsider)
    net.connect(founder, outsider)
    net.quiet(100)
    twin = signed(member.key, g.id, 1, None, {"n": 9})
    founder.stored([])  # nothing new; the fork arrives from the member's other device:
    inject(net, founder, member, Ents(g.id, member.public, ((twin.header_raw, twin.payload_raw),)))
    net.quiet(100)
    assert len(founder.store.forks) == 1 and len(member.store.forks) == 1
    assert outsider.store.forks == {} and outsider.store.count(g.id.raw) == 0


# ---- hostile peers ------------------------------------------------------------------------


def test_a_flood_of_level_messages_leaves_nothing_behind() -> None:
    net, g = setup(2)
    victim, attacker = net.nodes
    net.connect(victim, attacker)
    net.quiet(20)
    engine = end_of(victim, attacker).engine
    for i in range(3000):
        net.now += 0.006
        inject(net, victim, attacker, Level(CID(g.id.raw[:-4] + i.to_bytes(4, "big")), bytes(32)))
    assert len(engine.level_theirs) <= 1 and len(engine.phase) == 1 and len(engine.known) <= 1
    assert victim.violations == []


def test_a_burst_beyond_the_request_rate_ends_the_link() -> None:
    net, g = setup(2)
    victim, attacker = net.nodes
    net.connect(victim, attacker)
    net.quiet(20)
    for _ in range(401):
        inject(net, victim, attacker, Level(g.id, bytes(32)))
    assert victim.violations == ["rate_limited"]


def test_garbage_bad_signatures_and_unasked_sents_are_violations_and_store_nothing() -> None:
    net, g = setup(2)
    victim, attacker = net.nodes
    entry = signed(attacker.key, g.id, 1, None, {"n": 1})
    bad = bytearray(entry.header_raw)
    bad[entry.header_raw.index(entry.header.sig) + 5] ^= 1  # inside the signature
    cases: list[tuple[Message | bytes, str]] = [
        (b"\xff\x00", "bad_encoding"),
        (Sent(g.id, attacker.public, 3), "protocol_error"),
        (Ents(g.id, attacker.public, ((bytes(bad), entry.payload_raw),)), "bad_signature"),
        (
            Ents(CID(g.id.raw[:-1] + b"\x01"), attacker.public, ((entry.header_raw, entry.payload_raw),)),
            "protocol_error",
        ),
    ]
    for message, code in cases:
        victim.violations.clear()
        link = net.connect(victim, attacker)
        net.quiet(20)
        inject(net, victim, attacker, message)
        assert victim.violations == [code]
        assert victim.store.count(g.id.raw) == 1
        net.quiet(20)
        assert not link.alive


def test_huge_frontiers_are_cut_off() -> None:
    net, g = setup(2)
    victim, attacker = net.nodes
    attacker.append(g.id, 1)
    net.connect(victim, attacker, latency=50.0)  # the real conversation stays out of the way
    net.now = 1.0
    for part in range(20):
        net.now += 0.01
        heads = tuple(((part * 600 + i).to_bytes(32, "big"), 1, g.id) for i in range(600))
        inject(net, victim, attacker, Front(g.id, heads, False))
        if victim.violations:
            break
    assert victim.violations == ["rate_limited"]


def test_wants_for_a_ledger_the_peer_may_not_see_reveal_nothing() -> None:
    net, g = setup(2, visibility="members")
    owner, stranger = net.nodes
    owner.members[g.id.raw] = {owner.public}
    stranger.store.chains.clear()
    stranger.store.genesis.clear()
    net.connect(owner, stranger)
    net.quiet(20)
    seen: list[bytes] = []
    net.tamper = lambda src, dst, data: seen.append(data) or data if src is owner else data
    inject(net, owner, stranger, Want(g.id, owner.public, 1, 10))
    net.quiet(20)
    assert seen == [encode_message(Sent(g.id, owner.public, 0))]
