"""Erasure across three real nodes (SPEC.md §20): Ana erases a contribution whose note holds something
private; every node drops the payload's bytes from its SQLite file (and its WAL), keeps the header, still
verifies, and shows the entry as erased in the history and the state.

`tally run` processes on loopback, linked with --peer, driven through the real CLI and SQLite files.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from running_nodes import Node, coop, ok, output, refused, running, until

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")

SECRET = "call-me-on-0612-SECRET-4f9c2e"


def holds(node: Node, marker: bytes) -> bool:
    """Whether the marker's bytes are anywhere in the node's SQLite file or its WAL."""
    files = [node.home / "tally.sqlite3", node.home / "tally.sqlite3-wal"]
    return any(marker in f.read_bytes() for f in files if f.exists())


def erased(node: Node, ledger: str) -> list[str]:
    return [e["id"] for e in (node.state(ledger) or {}).get("erased", [])]


def test_an_erased_payload_is_gone_from_every_store_and_the_chains_still_verify(tmp_path: Path) -> None:
    with running(tmp_path, ("ana", "ben", "cleo")) as nodes:
        ana, ben, cleo = nodes["ana"], nodes["ben"], nodes["cleo"]
        ledger = coop(nodes, "ana", "Erasure coop")
        kept = ok(ana.home, "contribute", ledger, "--action", "work", "--quantity", "1", "--unit", "hour")
        private = ok(ana.home, "contribute", ledger, "--action", "work", "--quantity", "5", "--unit", "hour",
                     "--note", SECRET)
        ben_first = ok(ben.home, "contribute", ledger, "--action", "work", "--quantity", "2", "--unit", "hour")
        for node in (ana, ben, cleo):
            until(lambda node=node: {p["id"] for p in (node.state(ledger) or {}).get("pending", [])}
                  >= {kept, private, ben_first}, f"the contributions at {node.name}")
        assert all(holds(n, SECRET.encode()) for n in (ana, ben, cleo))  # the test can see the bytes
        ok(ben.home, "endorse", private)
        until(lambda: "5" in json.dumps((cleo.state(ledger) or {}).get("totals", {})), "Ana's 5 hours at Cleo")

        refused(ben.home, "not_erasable", "erase", private)  # only the key that wrote it
        refused(ben.home, "not_erasable", "erase", ben_first)  # a chain's first entry names what admits its key
        erasure = ok(ana.home, "erase", private)  # through Ana's running node
        refused(ana.home, "not_erasable", "erase", private)  # once is enough

        for node in (ana, ben, cleo):
            until(lambda node=node: erased(node, ledger) == [private], f"the erasure at {node.name}",
                  logs=(node,))
            until(lambda node=node: not holds(node, SECRET.encode()), f"the bytes gone from {node.name}'s store",
                  logs=(node,))
        state = cleo.state(ledger) or {}
        assert state["erased"][0]["erased_by"] == erasure and state["erased"][0]["author"] == ana.did
        assert ana.did not in state["totals"]  # 1 hour pending, the erased 5 count for nothing
        assert {p["id"] for p in state["pending"]} == {kept, ben_first}
        assert len({(n.state(ledger) or {}).get("digest") for n in (ana, ben, cleo)}) == 1

        rows = [json.loads(line) for line in output(ben.home, "history", ledger, "--json").splitlines()]
        gone = next(r for r in rows if r["id"] == private)
        assert gone["status"] == "erased" and gone["author"] == ana.did and gone["note"] is None
        assert gone["quantity"] is None and gone["erased_by"] == erasure
        only = [json.loads(line) for line in output(ben.home, "history", ledger, "--json", "--status",
                                                     "erased").splitlines()]
        assert [r["id"] for r in only] == [private]
        text = output(ben.home, "history", ledger)
        assert f"erased\t-\t{ana.did}" in text and SECRET not in text
        for node in (ana, ben, cleo):
            assert output(node.home, "verify").splitlines()[-1].startswith("ok\t"), node.name
