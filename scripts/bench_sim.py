"""Gossip convergence of the sync engine at scale, in the deterministic simulator (tests/sim/).

    python scripts/bench_sim.py --nodes 1000 --json
    python scripts/bench_sim.py --nodes 1000 --loss 0.05 --partition --json

Topology: every node links to a random earlier node (so the graph is connected) and to
`degree - 1` more random nodes. Every node follows one public ledger and holds its genesis;
at round 0 the links come up and `writers` random nodes each hold `entries` new entries of
their own chains. A round is the one-way latency of a message. `rounds` is the number of
rounds until every node holds every entry; `bound` is Demers et al.'s anti-entropy bound
⌈log2 N + ln N⌉ + 2. With `--loss p` each message is lost with probability p, which breaks
its link (as a lost Noise frame does); the nodes redial after 2 rounds and resync. With
`--partition` the nodes are cut in two halves from round 1 to round 4.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "sim"))

from simnet import Network, holds_all, public_genesis, random_topology


def run(
    nodes: int, degree: int, writers: int, entries: int, loss: float, partition: bool, seed: int, limit: float
) -> dict[str, object]:
    started = time.perf_counter()
    net = Network(seed, loss=loss)
    for _ in range(nodes):
        net.add_node()
    genesis = public_genesis(net.nodes[0])
    for node in net.nodes[1:]:
        node.follow(genesis.id)
        node.stored([genesis])
    for node in net.rng.sample(net.nodes, min(writers, nodes)):
        node.append(genesis.id, entries)
    total = 1 + writers * entries
    random_topology(net, degree, net.rng)
    if partition:
        half = set(range(nodes // 2))
        net.at(1.0, lambda: net.partition(half))
        net.at(4.0, net.heal)
    converged = net.step_until(limit, lambda: holds_all(net, genesis.id, total))
    return {
        "nodes": nodes,
        "degree": degree,
        "links": len(net.links),
        "writers": writers,
        "entries": total,
        "loss": loss,
        "partition": partition,
        "seed": seed,
        "rounds": math.ceil(net.now),
        "bound": math.ceil(math.log2(nodes) + math.log(nodes)) + 2,
        "converged": converged,
        "messages": net.messages,
        "bytes": net.bytes,
        "broken_links": net.broken,
        "seconds": round(time.perf_counter() - started, 2),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--nodes", type=int, default=1000)
    ap.add_argument("--degree", type=int, default=3, help="random links each node makes (default 3)")
    ap.add_argument("--writers", type=int, default=4)
    ap.add_argument("--entries", type=int, default=25, help="entries each writer holds at round 0")
    ap.add_argument("--loss", type=float, default=0.0)
    ap.add_argument("--partition", action="store_true")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--limit", type=float, default=200.0, help="rounds before giving up")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    result = run(args.nodes, args.degree, args.writers, args.entries, args.loss, args.partition, args.seed, args.limit)
    if args.json:
        print(json.dumps(result))
    else:
        for k, v in result.items():
            print(f"{k:>14}: {v}")


if __name__ == "__main__":
    main()
