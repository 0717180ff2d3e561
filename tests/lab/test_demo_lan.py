"""`tally demo --lan` on a real LAN (network namespaces, `scripts/lab.sh`): the demo's three nodes
announce themselves by mDNS, so a node on another host, started with no `--peer` and no tally.toml,
finds and links all three. Skips with the reason where the machine cannot make a lab."""

from __future__ import annotations

import signal
import subprocess
import sys

import pytest
from lab_helpers import lab, wait_for

pytestmark = pytest.mark.slow
DEMO_PORT = 7420


def test_the_demo_on_the_lan_is_found_by_mdns(tmp_path_factory: pytest.TempPathFactory) -> None:
    tmp = tmp_path_factory.mktemp("demo-lan")
    with lab(2, tmp) as the_lab:
        demo_dir = tmp / "demo"
        out = tmp / "demo.out"
        demo = the_lab.spawn(1, sys.executable, "-m", "node.cli.main", "demo", "--lan", "--dir", str(demo_dir),
                             "--base-port", str(DEMO_PORT), log=out)
        wait_for("the demo's login links", lambda: "Ctrl-C stops the three nodes." in out.read_text(errors="replace")
                 or demo.poll() is not None, 240)
        text = out.read_text(errors="replace")
        assert demo.poll() is None, text
        assert "announced by mDNS" in text
        dids = {}
        for name in ("alice", "bob", "carol"):
            r = subprocess.run([the_lab.tally, "--home", str(demo_dir / name), "id"], capture_output=True, text=True,
                               timeout=60)
            dids[name] = r.stdout.strip()
        home = the_lab.home("neighbour")
        the_lab.init(home)
        neighbour = the_lab.start(2, home)

        def found() -> bool:
            rows = {row["id"]: row for row in the_lab.peers(neighbour) if row["id"]}
            return all(did in rows and rows[did]["found"] == "mdns" and rows[did]["connected"] for did in dids.values())

        wait_for("h2 linked with the demo's three nodes, found by mDNS", found, 60)
        demo.send_signal(signal.SIGINT)
        assert demo.wait(timeout=90) == 0, out.read_text(errors="replace")
        assert "stopping the three nodes" in out.read_text(errors="replace")
