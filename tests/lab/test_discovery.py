"""mDNS discovery on real hosts (network namespaces on one switch, `scripts/lab.sh`).

Five nodes run with no `--peer` and no tally.toml: h1–h3 meet at once; h4 starts with its cable
out and h5 isolated (carrier up, frames go nowhere), so they never meet the others until the
partition heals. h6 runs avahi, an independent mDNS stack, to browse for the service. Skips with
the reason where the machine cannot make a lab (not root, no `ip netns`).
"""

from __future__ import annotations

import json
import shutil
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from lab_helpers import PORT, Lab, LabNode, ip, lab, url, wait_for

HOSTS = 6
NODES = (1, 2, 3, 4, 5)
AVAHI_HOST = 6
NEVER_MET = (4, 5)
PARTITION_S = 20.0  # h4/h5 stay apart at least this long: past a browser's start-up queries (0, 1, 5, 14 s)

pytestmark = pytest.mark.slow


@dataclass
class Lan:
    lab: Lab
    nodes: dict[int, LabNode]
    dids: dict[int, str]
    ledger: str
    started: float
    avahi_env: dict[str, str] | None = None

    def home(self, i: int) -> Path:
        return self.nodes[i].home

    def entries(self, i: int) -> list[str]:
        return self.lab.entries(self.home(i), self.ledger)

    def peers(self, i: int) -> dict[str, dict[str, Any]]:
        return {row["id"]: row for row in self.lab.peers(self.nodes[i]) if row["id"]}

    def linked(self, i: int, j: int, found: str | None = "mdns") -> bool:
        row = self.peers(i).get(self.dids[j])
        return bool(row and row["connected"] and (found is None or row["found"] == found))

    def append(self, i: int, n: int) -> str:
        return self.lab.ok(i, self.home(i), "append", "--ledger", self.ledger, "--kind", "note.text",
                           "--body", json.dumps({"n": n}))


@pytest.fixture(scope="module")
def lan(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lan]:
    tmp = tmp_path_factory.mktemp("lan")
    with lab(HOSTS, tmp) as the_lab:
        homes = {i: the_lab.home(f"node{i}") for i in NODES}
        dids = {i: the_lab.init(homes[i]) for i in NODES}
        the_lab.cut(4)
        the_lab.isolate(5)
        started = time.monotonic()
        nodes = {i: the_lab.start(i, homes[i], wait=False) for i in NODES}
        for node in nodes.values():
            the_lab.wait_started(node)
        # Ledgers are members-only by default (served to their founder alone until admissions exist):
        # a public one, which the others follow.
        ledger = the_lab.ok(1, homes[1], "ledger", "create", "Bike coop", "--public")
        for i in NODES[1:]:
            assert the_lab.ok(i, homes[i], "follow", ledger) == ledger
        lan = Lan(the_lab, nodes, dids, ledger, started)
        for n in range(3):
            lan.append(1, n)
        yield lan


def test_hosts_find_each_other_by_mdns_and_converge(lan: Lan) -> None:
    want = lan.entries(1)
    assert len(want) == 4
    for i in (2, 3):
        wait_for(f"h{i} has h1's entries", lambda i=i: lan.entries(i) == want, 30)
    for i in (1, 2, 3):
        for j in {1, 2, 3} - {i}:
            wait_for(f"h{i} linked with h{j}, found by mDNS", lambda i=i, j=j: lan.linked(i, j), 30)
        row = lan.peers(i)[lan.dids[next(iter({1, 2, 3} - {i}))]]
        assert row["address"].startswith("http://10.77.0.") and row["address"].endswith(f":{PORT}")
        log = lan.nodes[i].log()
        assert " peers=0 " in log and " mdns=true" in log, "no --peer, no tally.toml: only mDNS"
        assert "mdns peer found" in log
    # the others are on the far side of a partition: neither seen nor synced
    for i in NEVER_MET:
        assert lan.entries(i) == []
        assert not any(row["connected"] for row in lan.peers(i).values())


def test_a_node_cut_off_and_healed_is_found_again(lan: Lan) -> None:
    lan.lab.cut(3)
    try:
        new = lan.append(1, 100)
        # Liveness comes from the links (pings every 20 s), never from mDNS: h1 notices h3 is gone.
        wait_for("h1 notices h3 is gone", lambda: not lan.linked(1, 3, found=None), 60, every=1.0)
        assert new not in lan.entries(3)
    finally:
        lan.lab.heal(3)
    healed = time.monotonic()
    took = wait_for("h3 gets the entry written while it was cut off", lambda: new in lan.entries(3), 90, every=0.5)
    wait_for("h1 and h3 linked again", lambda: lan.linked(1, 3) and lan.linked(3, 1), 60, every=0.5)
    assert "mdns: interfaces changed" in lan.nodes[3].log()
    print(f"h3 re-linked and synced {took:.1f} s after its cable came back ({time.monotonic() - healed:.1f} s total)")


def test_nodes_that_never_met_find_each_other_when_the_partition_heals(lan: Lan) -> None:
    # Past the browsers' own start-up queries, only re-querying (periodic, or on an interface change) helps.
    time.sleep(max(0.0, lan.started + PARTITION_S - time.monotonic()))
    for i in NEVER_MET:
        assert lan.entries(i) == [], f"h{i} synced across the partition"
    lan.lab.heal(4)  # cable back in: h4 sees its carrier return
    lan.lab.heal(5)  # re-attached: h5's carrier never dropped, so only periodic queries find it
    want = lan.entries(1)
    for i in NEVER_MET:
        took = wait_for(f"h{i} converges with h1", lambda i=i: lan.entries(i) == want, 60, every=0.5)
        print(f"h{i} synced {took:.1f} s after the heal")
    for i in NEVER_MET:
        wait_for(f"h1 and h{i} linked, each found by mDNS", lambda i=i: lan.linked(1, i) and lan.linked(i, 1), 45)
    assert "mdns: interfaces changed" in lan.nodes[4].log()


AVAHI_CONF = """[server]
host-name=tally-lab-avahi
use-ipv4=yes
use-ipv6=no
allow-interfaces=eth0
enable-dbus=yes
[wide-area]
enable-wide-area=no
[publish]
disable-publishing=yes
"""

DBUS_CONF = """<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <listen>unix:path={socket}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="*"/>
    <allow own="*"/>
    <allow send_type="method_call"/>
    <allow send_type="signal"/>
    <allow send_requested_reply="true" send_type="method_return"/>
    <allow send_requested_reply="true" send_type="error"/>
    <allow receive_type="method_call"/>
    <allow receive_type="method_return"/>
    <allow receive_type="error"/>
    <allow receive_type="signal"/>
  </policy>
</busconfig>
"""


def start_avahi(lan: Lan) -> dict[str, str]:
    """A private dbus-daemon and avahi-daemon inside the avahi host; the env for avahi-browse. Skips if it can't."""
    missing = [tool for tool in ("avahi-daemon", "avahi-browse", "dbus-daemon") if shutil.which(tool) is None]
    if missing:
        pytest.skip(f"avahi cannot run here: {', '.join(missing)} not installed "
                    "(apt-get install avahi-daemon avahi-utils dbus; .ci/run does when it can)")
    work = lan.lab.tmp / "avahi"
    work.mkdir(exist_ok=True)
    socket_path = work / "bus"
    (work / "dbus.conf").write_text(DBUS_CONF.format(socket=socket_path))
    (work / "avahi.conf").write_text(AVAHI_CONF)
    env = {"DBUS_SYSTEM_BUS_ADDRESS": f"unix:path={socket_path}"}
    dbus = lan.lab.spawn(AVAHI_HOST, "dbus-daemon", f"--config-file={work / 'dbus.conf'}", "--nofork", "--nopidfile",
                         log=work / "dbus.log")
    try:
        wait_for("the private dbus socket", socket_path.exists, 10, every=0.1)
    except AssertionError:
        pytest.skip(f"dbus-daemon did not start (exit {dbus.poll()}): {(work / 'dbus.log').read_text()}")
    avahi_log = work / "avahi.log"
    avahi = lan.lab.spawn(AVAHI_HOST, "avahi-daemon", "-f", str(work / "avahi.conf"), "--no-drop-root", "--no-chroot",
                          "--no-rlimits", log=avahi_log, env=env)
    try:
        wait_for("avahi-daemon start-up", lambda: "Server startup complete" in avahi_log.read_text(), 20, every=0.1)
    except AssertionError:
        pytest.skip(f"avahi-daemon did not start (exit {avahi.poll()}): {avahi_log.read_text()}")
    return env


def avahi_browse(lan: Lan, *flags: str) -> list[list[str]]:
    assert lan.avahi_env is not None
    r = lan.lab.exec(AVAHI_HOST, "avahi-browse", *flags, "_tally._tcp", env=lan.avahi_env, timeout=30)
    assert r.returncode == 0, r.stderr
    return [line.split(";") for line in r.stdout.splitlines()]


def test_avahi_browse_on_another_host_sees_the_service(lan: Lan) -> None:
    lan.avahi_env = start_avahi(lan)
    running = [i for i in NODES if lan.nodes[i].alive()]

    def resolved() -> dict[str, list[str]]:
        return {row[3]: row for row in avahi_browse(lan, "-rpt") if row[0] == "=" and row[2] == "IPv4"}

    wait_for("avahi-browse resolves every node", lambda: len(resolved()) >= len(running), 30, every=0.5)
    rows = resolved()
    for i in running:
        did = lan.dids[i]
        name = "tally-" + did.removeprefix("did:key:")
        row = rows[name]
        assert row[4] == "_tally._tcp" and row[6] == f"{name}.local", row
        assert (row[7], row[8]) == (ip(i), str(PORT)), row
        txt = row[9].split(" ")
        assert f'"id={did}"' in txt and '"v=1"' in txt, row


def test_a_stopping_node_says_goodbye(lan: Lan) -> None:
    node = lan.nodes[2]
    did = lan.dids[2]
    assert node.stop(signal.SIGTERM) == 0
    # the goodbye is awaited before the node exits, so the others forget it at once (not in 75 min)
    def heard() -> bool:
        return any("mdns peer left" in line and did in line for line in lan.nodes[1].log().splitlines())

    wait_for("h1 hears h2's goodbye", heard, 5, every=0.1)
    assert "mdns stopped" in node.log()
    if lan.avahi_env is not None:
        name = "tally-" + did.removeprefix("did:key:")
        wait_for("avahi forgets h2", lambda: all(row[3] != name for row in avahi_browse(lan, "-pt")), 10, every=0.5)
    # the others stay linked and in sync without it
    assert lan.linked(1, 3) and url(1) in {row["address"] for row in lan.peers(3).values()}
