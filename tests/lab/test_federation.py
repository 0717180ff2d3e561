"""Federation by configuration on real hosts: two coops' nodes on different lab hosts, linked only
through each one's `tally.toml` (no flags, mDNS off), converge; one restarts and they converge again."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import pytest
from lab_helpers import PORT, lab, url, wait_for

pytestmark = pytest.mark.slow

A, B = 1, 2  # lab hosts of coop A's and coop B's nodes


def write_config(home: Path, host: int, peer: int) -> None:
    (home / "tally.toml").write_text(
        f'listen = "10.77.0.{host}:{PORT}"\n'
        f'peers = ["{url(peer)}"]\n'
        "mdns = false\n"
        "[limits]\nshutdown_timeout_s = 10\n"
    )


def test_two_coops_federate_through_tally_toml_and_converge_after_a_restart(tmp_path: Path) -> None:
    with lab(2, tmp_path) as the_lab:
        home = {A: the_lab.home("coop-a"), B: the_lab.home("coop-b")}
        did = {i: the_lab.init(home[i]) for i in (A, B)}
        write_config(home[A], A, B)
        write_config(home[B], B, A)
        nodes = {i: the_lab.start(i, home[i], listen=False) for i in (A, B)}  # listen comes from tally.toml

        def append(i: int, ledger: str, n: int) -> str:
            return the_lab.ok(i, home[i], "append", "--ledger", ledger, "--kind", "note.text",
                              "--body", json.dumps({"n": n}))

        # each coop's public ledger, each followed by the other coop's node
        ledger = {A: the_lab.ok(A, home[A], "ledger", "create", "Coop A", "--public"),
                  B: the_lab.ok(B, home[B], "ledger", "create", "Coop B", "--public")}
        assert the_lab.ok(A, home[A], "follow", ledger[B]) == ledger[B]
        assert the_lab.ok(B, home[B], "follow", ledger[A]) == ledger[A]
        for n in range(2):
            append(A, ledger[A], n)
            append(B, ledger[B], n)

        def check_peers() -> None:
            """Each lists the other once: its did, its configured URL, found by `config`, linked.
            (Both dial each other and one link stays, whichever dialed first.)"""
            for i, other in ((A, B), (B, A)):
                def listed(i: int = i, other: int = other) -> bool:
                    rows = the_lab.peers(nodes[i])
                    return [(r["id"], r["address"], r["found"], r["connected"]) for r in rows] == [
                        (did[other], url(other), "config", True)]

                wait_for(f"h{i} lists h{other} once, linked, found by config", listed, 15, every=0.3)

        def converged() -> bool:
            return all(the_lab.entries(home[A], ledger[i]) == the_lab.entries(home[B], ledger[i])
                       and len(the_lab.entries(home[A], ledger[i])) >= 3 for i in (A, B))

        wait_for("both coops' nodes hold both ledgers", converged, 45, every=0.5)
        check_peers()
        for i in (A, B):
            log = nodes[i].log()
            assert f"address=http://10.77.0.{i}:{PORT} " in log and " mdns=false" in log and " peers=1 " in log
            assert "mdns started" not in log

        # B restarts; A writes meanwhile; B catches up from its configured peer, then writes
        assert nodes[B].stop(signal.SIGTERM) == 0
        missed = append(A, ledger[A], 10)
        restarted = time.monotonic()
        nodes[B] = the_lab.start(B, home[B], listen=False)
        later = append(B, ledger[B], 11)  # retried while B is catching up (safe restore with config peers)
        wait_for("B has the entry A wrote while B was down",
                 lambda: missed in the_lab.entries(home[B], ledger[A]), 60, every=0.3)
        wait_for("A has B's entry written after the restart",
                 lambda: later in the_lab.entries(home[A], ledger[B]), 60, every=0.3)
        wait_for("converged again", converged, 30, every=0.5)
        print(f"converged again {time.monotonic() - restarted:.1f} s after B restarted")
        check_peers()
        assert "safe restore done" in nodes[B].log()
