"""The simulation tier: many engines over a seeded network converge, whatever the network does."""

from __future__ import annotations

import math

import pytest
from simnet import Network, SimNode, holds_all, public_genesis, random_topology

from protocol import CID


def ledger_net(seed: int, nodes: int, *, loss: float = 0.0, jitter: float = 0.0) -> tuple[Network, CID]:
    net = Network(seed, loss=loss, jitter=jitter)
    for _ in range(nodes):
        net.add_node()
    genesis = public_genesis(net.nodes[0])
    for node in net.nodes[1:]:
        node.follow(genesis.id)
    return net, genesis.id


def bound(n: int) -> int:
    return math.ceil(math.log2(n) + math.log(n)) + 2


@pytest.mark.parametrize("seed", range(12))
def test_every_node_gets_every_entry_from_a_cold_start(seed: int) -> None:
    """Only the founder holds the genesis: it spreads (sub, front, want, ents), then the entries."""
    net, ledger = ledger_net(seed, 30, jitter=0.3)
    writers = net.rng.sample(net.nodes, 3)
    for w in writers:
        if w is not net.nodes[0]:
            w.stored([net.nodes[0].store.genesis[ledger.raw]])
        w.append(ledger, 5)
    random_topology(net, 2, net.rng)
    assert net.step_until(300, lambda: holds_all(net, ledger, 16))
    assert all(not n.violations for n in net.nodes)
    heads = {tuple(sorted(n.store.heads(ledger.raw).items())) for n in net.nodes}
    assert len(heads) == 1  # identical frontiers everywhere


@pytest.mark.parametrize("seed", range(3))
def test_gossip_rounds_stay_within_the_anti_entropy_bound(seed: int) -> None:
    net, ledger = ledger_net(seed, 150)
    genesis = net.nodes[0].store.genesis[ledger.raw]
    for node in net.nodes[1:]:
        node.stored([genesis])
    for w in net.rng.sample(net.nodes, 4):
        w.append(ledger, 10)
    random_topology(net, 3, net.rng)
    assert net.step_until(bound(150), lambda: holds_all(net, ledger, 41))


@pytest.mark.parametrize("seed", range(6))
def test_converges_with_loss_and_a_healed_partition(seed: int) -> None:
    net, ledger = ledger_net(seed, 60, loss=0.05)
    genesis = net.nodes[0].store.genesis[ledger.raw]
    for node in net.nodes[1:]:
        node.stored([genesis])
    for w in net.rng.sample(net.nodes, 3):
        w.append(ledger, 8)
    random_topology(net, 3, net.rng)
    half = set(range(30))
    net.at(1.0, lambda: net.partition(half))
    net.at(6.0, net.heal)
    assert net.step_until(400, lambda: holds_all(net, ledger, 25))
    assert net.broken > 0  # the network did interfere
    assert all(not n.violations for n in net.nodes)  # a lost frame is nobody's violation


def test_appends_during_the_run_reach_everyone() -> None:
    net, ledger = ledger_net(7, 40, jitter=0.4)
    genesis = net.nodes[0].store.genesis[ledger.raw]
    for node in net.nodes[1:]:
        node.stored([genesis])
    random_topology(net, 2, net.rng)
    writers = net.nodes[5:9]
    for i in range(10):
        for w in writers:
            net.at(0.3 * i + 0.1, lambda w=w: w.append(ledger, 1))
    assert net.step_until(200, lambda: holds_all(net, ledger, 41))


def test_a_node_restarted_empty_catches_up_from_its_peers() -> None:
    """A node loses its store (restore from an old backup): with safe restore it refetches its own chain."""
    net, ledger = ledger_net(3, 5)
    genesis = net.nodes[0].store.genesis[ledger.raw]
    for node in net.nodes[1:]:
        node.stored([genesis])
    writer = net.nodes[2]
    writer.append(ledger, 6)
    random_topology(net, 2, net.rng)
    assert net.step_until(100, lambda: holds_all(net, ledger, 7))
    # The writer comes back with an empty store, catching up: it asks for its own heads.
    for link in list(net.links):
        if writer in (link.a, link.b):
            net.break_link(link, redial=False)
    restored = SimNode(net, writer.index, writer.key)
    restored.catching_up = True
    net.nodes[writer.index] = restored
    for link in net.links:
        if link.a is writer:
            link.a = restored
        if link.b is writer:
            link.b = restored
        if restored in (link.a, link.b):
            net.at(net.now + 1, lambda link=link: net._redial(link))
    assert net.step_until(net.now + 100, lambda: len(restored.store.chains.get((ledger.raw, writer.public), [])) == 6)
    assert ("restored", 0, "") in restored.reports
    assert restored.store.follows == {ledger.raw}  # the ledger named in the answer is followed


def test_the_same_seed_gives_the_same_run() -> None:
    def once() -> tuple[float, int, int]:
        net, ledger = ledger_net(42, 25, loss=0.02, jitter=0.5)
        for w in net.nodes[3:6]:
            w.append(ledger, 4)
        random_topology(net, 2, net.rng)
        net.step_until(300, lambda: False)
        return net.now, net.messages, net.bytes

    assert once() == once()


@pytest.mark.parametrize("seed", range(4))
def test_nodes_restarted_from_their_stored_state_converge(seed: int) -> None:
    """Nodes go down mid-run, one after another, while others write, and come back with their store (all a node
    keeps across a restart: its links and engines, on both sides, are new); everyone ends with every entry."""
    net, ledger = ledger_net(seed, 40, jitter=0.3)
    genesis = net.nodes[0].store.genesis[ledger.raw]
    for node in net.nodes[1:]:
        node.stored([genesis])
    random_topology(net, 3, net.rng)
    writers = net.rng.sample(net.nodes, 4)
    for i in range(8):
        for w in writers:
            net.at(0.5 * i + 0.1, lambda w=w: w.append(ledger, 1))
    restarted = net.rng.sample(net.nodes, 8)

    def down(node: SimNode) -> None:
        node.up = False
        for link in list(net.links):
            if node in (link.a, link.b):
                net.break_link(link, redial=False)

    def up(node: SimNode) -> None:
        node.up = True
        for link in net.links:
            if node in (link.a, link.b):
                net._redial(link)

    for i, node in enumerate(restarted):
        net.at(0.4 * i + 0.2, lambda node=node: down(node))
        net.at(0.4 * i + 2.2, lambda node=node: up(node))
    assert net.step_until(400, lambda: holds_all(net, ledger, 1 + 8 * 4))
    assert net.broken >= len(restarted)  # the restarts did cut links
    assert all(not n.violations for n in net.nodes)
