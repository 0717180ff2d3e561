"""The CLI never bypasses a live node (SPEC.md §12, README "Running a node"): a node that holds the home but
does not answer makes a write fail with `node_unresponsive` and change nothing; the owner's CLI reaches the node
over its local channel (a Unix socket, mode 0600); only when no node runs does the CLI write to the store itself."""

from __future__ import annotations

import json
import os
import signal
import stat
from pathlib import Path

from running_nodes import ok, refused, run, run_process, start, stop_all


def ledgers(home: Path) -> list[str]:
    r = run(home, "ledger", "list", "--json")
    assert r.returncode == 0, r.stderr
    return [json.loads(line)["id"] for line in r.stdout.splitlines()]


def test_a_stopped_node_is_never_bypassed_and_a_dead_one_is(tmp_path: Path) -> None:
    home = tmp_path / "ana"
    did = ok(home, "init")
    node = start("ana", home, did)
    try:
        info = json.loads((home / "node.json").read_text())
        sock = Path(info["socket"])
        assert stat.S_ISSOCK(sock.stat().st_mode) and stat.S_IMODE(sock.stat().st_mode) == 0o600
        assert stat.S_IMODE(sock.parent.stat().st_mode) == 0o700 and not (home / "api.sock").exists()
        first = ok(home, "ledger", "create", "Before")
        os.kill(node.proc.pid, signal.SIGSTOP)  # alive, holding the home, answering nothing
        try:
            refused(home, "node_unresponsive", "ledger", "create", "While stuck")
            refused(home, "node_unresponsive", "member", "name", first, "Ana")
        finally:
            os.kill(node.proc.pid, signal.SIGCONT)
        assert ledgers(home) == [first]  # nothing was written behind the node's back
        # The local channel: with its TCP address useless, the CLI still reaches the node.
        (home / "node.json").write_text(json.dumps({**info, "address": "http://127.0.0.1:9"}))
        second = ok(home, "ledger", "create", "Over the socket")
        assert node.api("GET", f"/ledgers/{second}/state")[0] == 200
        (home / "node.json").write_text(json.dumps(info))
        # A second node on the same home is refused while this one lives, even when it does not answer.
        os.kill(node.proc.pid, signal.SIGSTOP)
        try:
            r = run_process(home, "run", "--listen", "127.0.0.1:0", "--offline", "--no-mdns", timeout=60)
            assert r.returncode == 1 and "error: already_running: " in r.stderr, r.stderr
        finally:
            os.kill(node.proc.pid, signal.SIGCONT)
        node.proc.kill()  # kill -9: node.json and the socket stay behind, the lock goes with the process
        node.proc.wait()
        third = ok(home, "ledger", "create", "No node runs")  # written to the store directly
        assert set(ledgers(home)) == {first, second, third}
    finally:
        stop_all([node])
