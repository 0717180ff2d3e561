"""Benchmark: from a node's start to its first entry synced from a LAN peer it found by mDNS.

Two lab hosts (network namespaces on one switch, `scripts/lab.sh`; needs root): h1 runs a
node holding a public ledger; each run starts a fresh node on h2 that follows that ledger, with no
`--peer` and no tally.toml, and times from launching `tally run` to the first entry stored in its
SQLite file. Also split from the node's log: process start-up (launch -> listening), discovery
(listening -> "mdns peer found"), link and sync (found -> first entry stored).
Goal (not a CI gate): median <= 3 s.

    sudo .venv/bin/python scripts/bench_discovery.py [--runs 7]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

from node.store.store import Store

REPO = Path(__file__).resolve().parents[1]
LAB_SH = REPO / "scripts" / "lab.sh"
# its own namespace prefix, so a test run on the same machine keeps its hosts
os.environ.setdefault("TALLY_LAB_PREFIX", f"bench{os.getpid()}-")
TALLY = str(Path(sys.executable).with_name("tally").absolute())
PORT = 7410
DEADLINE_S = 30.0


def lab(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", str(LAB_SH), *args], capture_output=True, text=True, timeout=120, check=True)


def tally(host: int | None, home: Path, *args: str) -> str:
    cmd = [TALLY, "--home", str(home), *args]
    if host is not None:
        cmd = ["bash", str(LAB_SH), "exec", str(host), *cmd]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    if r.returncode != 0:
        raise SystemExit(f"tally {' '.join(args)} failed: {r.stderr}")
    return r.stdout.strip().splitlines()[-1] if r.stdout.strip() else ""


def start_node(host: int, home: Path, log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(
            ["bash", str(LAB_SH), "exec", str(host), TALLY, "--home", str(home), "run", "--listen",
             f"10.77.0.{host}:{PORT}"], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=out)


def wait_node_file(home: Path, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + DEADLINE_S
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError, ValueError):
            if json.loads((home / "node.json").read_text())["pid"] == proc.pid:
                return
        if proc.poll() is not None:
            raise SystemExit(f"the node exited with {proc.returncode}")
        time.sleep(0.02)
    raise SystemExit("the node did not start")


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def log_time(log: str, marker: str) -> float | None:
    """The wall-clock time (s) of the first log line containing `marker`."""
    for line in log.splitlines():
        if marker in line:
            return datetime.fromisoformat(line.split(" ", 1)[0].replace("Z", "+00:00")).timestamp()
    return None


async def one_run(tmp: Path, ledger: str, n: int) -> dict[str, float]:
    home = tmp / f"joiner{n}"
    tally(None, home, "init")
    tally(None, home, "follow", ledger)  # no node yet: straight into its store
    store = await Store.open(home / "tally.sqlite3")
    log_path = tmp / f"joiner{n}.log"
    try:
        wall0 = time.time()
        t0 = time.perf_counter()
        proc = start_node(2, home, log_path)
        try:
            while await store.count() == 0:
                if time.perf_counter() - t0 > DEADLINE_S:
                    raise SystemExit(f"run {n}: nothing synced within {DEADLINE_S:.0f} s; log:\n{log_path.read_text()}")
                await asyncio.sleep(0.005)
            total = time.perf_counter() - t0
        finally:
            stop(proc)
    finally:
        await store.close()
    log = log_path.read_text()
    listening, found = log_time(log, " listening "), log_time(log, "mdns peer found")
    return {
        "total": total,
        "startup": (listening - wall0) if listening else float("nan"),
        "discovery": (found - listening) if found and listening else float("nan"),
        "sync": (wall0 + total - found) if found else float("nan"),
    }


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("needs root: the lab is made of network namespaces")
    if not LAB_SH.is_file():
        raise SystemExit(f"{LAB_SH} is missing")
    lab("prune")
    lab("up", "2")
    provider = None
    try:
        with tempfile.TemporaryDirectory(prefix="bench-discovery-") as tmp_name:
            tmp = Path(tmp_name)
            home1 = tmp / "provider"
            tally(None, home1, "init")
            provider = start_node(1, home1, tmp / "provider.log")
            wait_node_file(home1, provider)
            ledger = tally(1, home1, "ledger", "create", "Bike coop", "--public")
            for i in range(5):
                tally(1, home1, "append", "--ledger", ledger, "--kind", "note.text", "--body", json.dumps({"i": i}))
            print(f"h1 serves a public ledger of 6 entries; {args.runs} fresh nodes on h2 follow it, no --peer")
            print(f"{'run':>3}  {'total':>7}  {'start-up':>8}  {'discovery':>9}  {'link+sync':>9}")
            runs = []
            for n in range(1, args.runs + 1):
                r = await one_run(tmp, ledger, n)
                runs.append(r)
                print(f"{n:>3}  {r['total']:6.2f}s  {r['startup']:7.2f}s  {r['discovery']:8.2f}s  {r['sync']:8.2f}s",
                      flush=True)
                await asyncio.sleep(1.0)  # h1 hears the goodbye before the next node appears at that address
            totals = [r["total"] for r in runs]
            median = statistics.median(totals)
            print(f"start -> first synced entry from an mDNS-found LAN peer: median {median:.2f} s "
                  f"(min {min(totals):.2f}, max {max(totals):.2f}, {len(totals)} runs; goal <= 3 s: "
                  f"{'met' if median <= 3.0 else 'NOT met'})")
            for part in ("startup", "discovery", "sync"):
                print(f"  median {part:>9}: {statistics.median(r[part] for r in runs):.2f} s")
            stop(provider)
    finally:
        if provider is not None:
            stop(provider)
        lab("down")


if __name__ == "__main__":
    asyncio.run(main())
