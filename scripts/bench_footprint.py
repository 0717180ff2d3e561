"""Benchmark: the footprint of a real `tally run` process.

Prints, for a node started as `tally run --offline --no-mdns` on a loopback port:
- start-up: the time from spawning the process to its first 200 on /api/v1/identity (median of
  several starts, on an empty store and again on the big one);
- idle memory: VmRSS from /proc/<pid>/status a moment after start-up, on an empty store;
- memory with N stored entries (default 1,000,000: one member's chain in one ledger, built with
  Store.append_batch, which takes a few minutes), idle and after the queries below, and VmHWM (peak);
- a history page query at N entries: GET /api/v1/ledgers/{id}/entries?limit=100&after=<a random
  entry> over one keep-alive connection, p50 / p99 / max over 200 requests;
- the dashboard's history page of that ledger, logged in as the owner: its first load (which computes the
  ledger's state) and the next 50, and the memory after them;
- the node started again: that page's first load (the state read back from the snapshot the node saved
  as it stopped), and the memory after it and a few seconds later (a big ledger's fold is not read back
  until an entry arrives);
- the node started again: three writes in a row that read the ledger's state (POST .../about), each timed
  from its request to its 201 (the first reads the state back; the fold is read back in the background, and
  the writes after it are built against the state read back, node/store/states.py `for_write`), the memory
  after them and a few seconds later, and the time from SIGTERM to exit;
- the node started again: the dashboard's everyday forms, each timed from request to answer: the contribution
  form's page (the state read back), a contribution posted, the history page it redirects to, a name posted and
  the overview it redirects to (while the fold is read back, the writes are built against the state read back
  and the pages show it, saying what they do not count yet: node/store/states.py `shown`);
- the upgrade case: the kept fold marked as saved by other code (as an upgrade of protocol's code leaves it:
  stale), the node started again and the same three writes timed (the ledger is folded again in the
  background), then the same forms and pages, the memory after them and its peak, and the time from SIGTERM
  to exit;
- the version upgrade case: the kept state too marked as saved by the Tally version before, the node started
  again and the same forms and pages timed (the first page shows that state, said so, while the ledger is
  folded again).
Goals: idle RSS <= 60 MB, start-up <= 1.5 s, RSS at 1M entries <= 120 MB, history page p99 <= 50 ms.

    python scripts/bench_footprint.py [--entries 1000000] [--requests 200] [--home DIR]

`--entries 20000` gives a quick run (it says what it measured). `--home DIR` keeps the home (and the
big store) in DIR, and reuses a store already built there. Linux only (/proc).
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import os
import random
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
from dataclasses import dataclass
from pathlib import Path

from node.home import Home
from node.store.store import Store
from protocol import CID, GENESIS_KIND
from protocol.rules import Rules
from protocol.writes import AppendRequest

GOAL_IDLE_RSS_MB = 60.0
GOAL_STARTUP_S = 1.5
GOAL_BIG_RSS_MB = 120.0
GOAL_PAGE_P99_MS = 50.0
GOAL_RESTART_S = 2.0  # issue 15: a restarted node shows a 1M-entry ledger's first page within 2 s
PAGE_ENTRIES = 100
BUILD_CHUNK = 20_000  # requests handed to append_batch at once (it commits them 1000 to a transaction)
START_TIMEOUT_S = 60.0
BEFORE = " tally-0.0.0-"  # a snapshot's version, made that of a version before (the version upgrade case)
SETTLE_S = 5.0  # the RSS after a restart's first page is read again this much later


def tally_executable() -> str:
    candidate = Path(sys.executable).with_name("tally")
    found = str(candidate) if candidate.exists() else shutil.which("tally")
    if not found:
        raise SystemExit("the `tally` console script is not installed (pip install -e .)")
    return found


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def proc_status_mb(pid: int, field: str) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024  # kB
    raise KeyError(field)


@dataclass
class Node:
    proc: subprocess.Popen[bytes]
    port: int
    startup_s: float

    def rss_mb(self) -> float:
        return proc_status_mb(self.proc.pid, "VmRSS")

    def peak_mb(self) -> float:
        return proc_status_mb(self.proc.pid, "VmHWM")

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise SystemExit("the node did not stop on SIGTERM") from None
        if code != 0:
            raise SystemExit(f"the node exited {code} on SIGTERM")


def start(home: Path, log_path: Path) -> Node:
    """Spawn `tally run`; return once it has answered 200 on /api/v1/identity."""
    port = free_port()
    env = {**os.environ, "TALLY_HOME": str(home)}
    with log_path.open("ab") as log:
        t0 = time.perf_counter()
        proc = subprocess.Popen(
            [tally_executable(), "run", "--listen", f"127.0.0.1:{port}", "--offline", "--no-mdns"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=log, env=env,
        )
    while True:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            conn.request("GET", "/api/v1/identity")
            if conn.getresponse().status == 200:
                conn.close()
                return Node(proc, port, time.perf_counter() - t0)
        except OSError:
            pass
        if proc.poll() is not None:
            raise SystemExit(f"the node exited {proc.returncode}: {log_path.read_text()[-2000:]}")
        if time.perf_counter() - t0 > START_TIMEOUT_S:
            proc.kill()
            raise SystemExit(f"no answer within {START_TIMEOUT_S} s")
        time.sleep(0.002)


def wait_for_log(log_path: Path, text: str, since: int, timeout_s: float = 3600.0) -> float:
    """Wait until the log, from byte `since` on, says `text`; the seconds waited."""
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < timeout_s:
        with log_path.open("rb") as f:
            f.seek(since)
            if text.encode() in f.read():
                return time.perf_counter() - t0
        time.sleep(0.5)
    raise SystemExit(f"the node never logged {text!r}")


def timed_stop(node: Node) -> float:
    t0 = time.perf_counter()
    node.stop()
    return time.perf_counter() - t0


def startups(home: Path, log_path: Path, times: int) -> list[float]:
    result = []
    for _ in range(times):
        node = start(home, log_path)
        result.append(node.startup_s)
        node.stop()
    return result


async def build_store(home: Home, entries: int) -> tuple[CID, list[CID]]:
    """A members-only ledger holding `entries` entries of the home's own chain (the genesis counts).

    Returns the ledger and a sample of its entry ids. Reuses a store that already holds such a ledger.
    """
    store = await Store.open(home.store_path, key=home.load_key())
    try:
        ledgers = [i for i in await store.ledgers() if i.name == "bench" and i.entries >= entries]
        if ledgers:
            print(f"  reusing the {entries:,}-entry ledger in {home.store_path}")
            ledger = ledgers[0].id
        else:
            t0 = time.perf_counter()
            rules = Rules.from_config({}, name="bench", creator=home.load_key().did, public=False)
            genesis = await store.append(AppendRequest(None, GENESIS_KIND, rules.to_body(), 1))
            ledger = genesis.id
            done = 1
            while done < entries:
                n = min(BUILD_CHUNK, entries - done)
                await store.append_batch([
                    AppendRequest(ledger, "note.text", {"text": "fixed the brakes on three bikes", "n": done + i},
                                  1_700_000_000_000 + done + i)
                    for i in range(n)
                ])
                done += n
                if done % 200_000 < BUILD_CHUNK or done == entries:
                    rate = done / (time.perf_counter() - t0)
                    print(f"  {done:>9,} entries stored ({rate:,.0f}/s)", flush=True)
        sample = random.sample(range(1, entries), min(2000, entries - 1))
        ids = [i for i in [await store.id_at(ledger, home.load_key().public_key, seq + 1) for seq in sample] if i]
        return ledger, ids
    finally:
        await store.close()


def page_latencies(node: Node, token: str, ledger: CID, afters: list[CID], requests: int) -> list[float]:
    conn = http.client.HTTPConnection("127.0.0.1", node.port, timeout=30)
    headers = {"Authorization": f"Bearer {token}"}
    result = []
    for i in range(requests):
        path = f"/api/v1/ledgers/{ledger}/entries?limit={PAGE_ENTRIES}"
        if i % 20:  # every 20th the first page, the others a page after a random entry
            path += f"&after={afters[i % len(afters)]}"
        t0 = time.perf_counter()
        conn.request("GET", path, headers=headers)
        resp = conn.getresponse()
        body = resp.read()
        result.append(time.perf_counter() - t0)
        if resp.status != 200:
            raise SystemExit(f"GET {path}: {resp.status} {body[:300]!r}")
        if len(json.loads(body)["entries"]) == 0:
            raise SystemExit(f"GET {path}: an empty page")
    conn.close()
    return result


def dashboard_latencies(node: Node, token: str, ledger: CID, requests: int) -> tuple[float, list[float]]:
    """Log in as the owner (a login link, as `tally open` gets it), then load the ledger's history page:
    the first load (which computes the ledger's state), and `requests` more."""
    conn = http.client.HTTPConnection("127.0.0.1", node.port, timeout=600)
    cookie = owner_session(conn, token)
    result = []
    for _ in range(requests + 1):
        t0 = time.perf_counter()
        conn.request("GET", f"/ledgers/{ledger}/history", headers={"Cookie": cookie})
        resp = conn.getresponse()
        body = resp.read()
        result.append(time.perf_counter() - t0)
        if resp.status != 200 or b"<main" not in body:
            raise SystemExit(f"dashboard history: {resp.status} {body[:300]!r}")
    conn.close()
    return result[0], result[1:]


def owner_session(conn: http.client.HTTPConnection, token: str) -> str:
    """Log in as the owner (a login link, as `tally open` gets it): the session cookie."""
    conn.request("POST", "/api/v1/login-links", body=b"{}",
                 headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    link = json.loads(conn.getresponse().read())["path"]
    conn.request("GET", link)
    resp = conn.getresponse()
    resp.read()
    cookie = (resp.getheader("Set-Cookie") or "").split(";")[0]
    if resp.status != 303 or not cookie:
        raise SystemExit(f"login: {resp.status}")
    return cookie


def form_latencies(node: Node, token: str, ledger: CID) -> tuple[dict[str, float], list[str]]:
    """The dashboard's everyday forms right after a (re)start, each timed from its request to its answer: the
    contribution form's page (the first page: the state read back), the contribution posted (303), the history
    page it redirects to, a name posted and the overview it redirects to (node/store/states.py `for_write`,
    `shown`: while the ledger catches up, the writes are built against its last state and the pages show it);
    and the pages that said the ledger is still loading."""
    conn = http.client.HTTPConnection("127.0.0.1", node.port, timeout=600)
    cookie = owner_session(conn, token)
    result: dict[str, float] = {}
    loading: list[str] = []
    csrf = ""

    def timed(key: str, path: str, form: dict[str, str] | None = None, status: int = 200) -> bytes:
        body = None if form is None else urllib.parse.urlencode({"csrf": csrf, **form}).encode()
        headers = {"Cookie": cookie, "Content-Type": "application/x-www-form-urlencoded"}
        t0 = time.perf_counter()
        conn.request("GET" if form is None else "POST", path, body=body, headers=headers)
        resp = conn.getresponse()
        answer = resp.read()
        result[key] = time.perf_counter() - t0
        if resp.status != status:
            raise SystemExit(f"{path}: {resp.status} {answer[:300]!r}")
        if b"is still loading" in answer:
            loading.append(key)
        return answer

    base = f"/ledgers/{ledger}"
    page = timed("form page", f"{base}/contribute").decode()
    csrf = page.split('name="csrf" value="', 1)[1].split('"', 1)[0]
    timed("contribute", f"{base}/contribute", {"action": "work", "quantity": "1", "unit": "hour",
                                               "note": f"bench {time.time_ns()}"}, 303)
    timed("history after", f"{base}/history")
    timed("name", f"{base}/name", {"name": f"Owner {time.time_ns() % 10**9}"}, 303)
    timed("overview after", base)
    conn.close()
    return result, loading


def form_text(timed: tuple[dict[str, float], list[str]]) -> str:
    timings, loading = timed
    return (", ".join(f"{key} {value:.3f} s" for key, value in timings.items())
            + f" (saying the ledger is still loading: {', '.join(loading) or 'none'})")


def write_latencies(node: Node, token: str, ledger: CID, writes: int) -> list[float]:
    """`writes` names set one after the other (POST /api/v1/ledgers/{id}/about: each reads the ledger's state
    first, so each after the first needs the state with the one before folded in): request to 201, each."""
    conn = http.client.HTTPConnection("127.0.0.1", node.port, timeout=600)
    result = []
    for i in range(writes):
        body = json.dumps({"name": f"Owner {time.time_ns() % 10**9} {i}"}).encode()
        t0 = time.perf_counter()
        conn.request("POST", f"/api/v1/ledgers/{ledger}/about", body=body,
                     headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
        resp = conn.getresponse()
        answer = resp.read()
        result.append(time.perf_counter() - t0)
        if resp.status != 201:
            raise SystemExit(f"POST about: {resp.status} {answer[:300]!r}")
    conn.close()
    return result


def verdict(value: float, goal: float) -> str:
    return "ok" if value <= goal else "MISSED"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--entries", type=int, default=1_000_000)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--starts", type=int, default=5, help="start-ups to take the median of")
    parser.add_argument("--home", type=Path, help="keep the home (and its big store) here; reuse it")
    args = parser.parse_args()
    if args.entries < 2:
        parser.error("--entries must be at least 2")
    if not Path("/proc/self/status").exists():
        raise SystemExit("needs Linux /proc")
    work = Path(tempfile.mkdtemp(prefix="tally-footprint-"))
    home_path = args.home or work / "home"
    log_path = work / "node.log"
    try:
        if not Home(home_path).has_identity():
            env = {**os.environ, "TALLY_HOME": str(home_path)}
            subprocess.run([tally_executable(), "init"], check=True, capture_output=True, env=env)
        home = Home(home_path)
        token = home.load_token()
        print(f"tally run --offline --no-mdns, home {home_path}; "
              f"python {sys.version.split()[0]}, {os.cpu_count()} cpus")

        big = asyncio.run(_has_big_ledger(home, args.entries))
        if not big:
            empty = startups(home_path, log_path, args.starts)
            node = start(home_path, log_path)
            time.sleep(2.0)
            idle_rss = node.rss_mb()
            node.stop()
            print(f"start-up, empty store: median {statistics.median(empty):.3f} s "
                  f"(runs: {', '.join(f'{s:.3f}' for s in empty)})  goal <= {GOAL_STARTUP_S} s  "
                  f"{verdict(statistics.median(empty), GOAL_STARTUP_S)}")
            print(f"idle RSS, empty store: {idle_rss:.1f} MB  goal <= {GOAL_IDLE_RSS_MB} MB  "
                  f"{verdict(idle_rss, GOAL_IDLE_RSS_MB)}")
        else:
            print("(the home already holds the big store: empty-store figures skipped; use a fresh --home)")

        print(f"building a store of {args.entries:,} entries …", flush=True)
        t0 = time.perf_counter()
        ledger, afters = asyncio.run(build_store(home, args.entries))
        size_mb = sum(p.stat().st_size for p in home_path.glob("tally.sqlite3*")) / 2**20
        print(f"  built in {time.perf_counter() - t0:.0f} s; store {size_mb:,.0f} MB on disk")

        loaded = startups(home_path, log_path, args.starts)
        print(f"start-up, {args.entries:,} entries: median {statistics.median(loaded):.3f} s "
              f"(runs: {', '.join(f'{s:.3f}' for s in loaded)})  goal <= {GOAL_STARTUP_S} s  "
              f"{verdict(statistics.median(loaded), GOAL_STARTUP_S)}")
        node = start(home_path, log_path)
        since = log_path.stat().st_size
        try:
            time.sleep(2.0)
            rss_idle = node.rss_mb()
            lat = sorted(page_latencies(node, token, ledger, afters, args.requests))
            rss_after = node.rss_mb()
            peak = node.peak_mb()
            first, pages = dashboard_latencies(node, token, ledger, min(args.requests, 50))
            rss_dash = node.rss_mb()
            peak_dash = node.peak_mb()
            # A stopping node saves for a few seconds only: wait for the snapshot saved after the fold (none when
            # the state was read back from a snapshot a run before left: a reused home).
            restored = "ledger snapshot restored" in log_path.read_text(errors="replace")[since:]
            saved_s = 0.0 if restored else wait_for_log(log_path, "ledger snapshot saved", since)
        finally:
            node.stop()  # saves the ledger's state in the store (node/store/snapshots.py)
        # A restart: the node reads that state back instead of folding the ledger again.
        node = start(home_path, log_path)
        try:
            restarted, _ = dashboard_latencies(node, token, ledger, 0)
            rss_restarted, peak_restarted = node.rss_mb(), node.peak_mb()
            time.sleep(SETTLE_S)  # anything read back in the background after the page (a big fold is not)
            rss_settled = node.rss_mb()
        finally:
            stop_s = timed_stop(node)
        # Writes right after a restart: the first reads the state back, the next ones fold into the fold read back.
        node = start(home_path, log_path)
        try:
            writes = write_latencies(node, token, ledger, 3)
            rss_written, peak_written = node.rss_mb(), node.peak_mb()
            time.sleep(SETTLE_S)
            rss_written_settled = node.rss_mb()
        finally:
            last_stop_s = timed_stop(node)
        # The dashboard's forms right after a restart: a contribution and a name, and the pages they redirect to.
        node = start(home_path, log_path)
        try:
            forms = form_latencies(node, token, ledger)
            rss_forms = node.rss_mb()
        finally:
            forms_stop_s = timed_stop(node)
        # An upgrade: the kept fold was saved by other code (protocol's source is in its format), so it is stale.
        with sqlite3.connect(home_path / "tally.sqlite3") as db:
            db.execute("UPDATE snapshots SET fold = fold || ' (before an upgrade)' WHERE fold != 'whole'")
        node = start(home_path, log_path)
        try:
            upgraded = write_latencies(node, token, ledger, 3)
            upgraded_forms = form_latencies(node, token, ledger)  # while the ledger is folded again
            rss_upgraded = node.rss_mb()
            time.sleep(SETTLE_S)
            rss_upgraded_settled, peak_upgraded = node.rss_mb(), node.peak_mb()
        finally:
            upgraded_stop_s = timed_stop(node)
            with sqlite3.connect(home_path / "tally.sqlite3") as db:  # a reused home's next run: not an upgrade
                db.execute("UPDATE snapshots SET fold = replace(fold, ' (before an upgrade)', '')")
        # A version upgrade: the kept state too was saved by the Tally version before (same records), so it is only
        # shown (said so) and checked against while the ledger is folded again.
        with sqlite3.connect(home_path / "tally.sqlite3") as db:
            db.execute(f"UPDATE snapshots SET format = replace(format, ' tally-', '{BEFORE}'), "
                       f"fold = replace(fold, ' tally-', '{BEFORE}')")
        node = start(home_path, log_path)
        try:
            versioned = form_latencies(node, token, ledger)
            rss_versioned, peak_versioned = node.rss_mb(), node.peak_mb()
        finally:
            versioned_stop_s = timed_stop(node)
            with sqlite3.connect(home_path / "tally.sqlite3") as db:
                db.execute(f"UPDATE snapshots SET format = replace(format, '{BEFORE}', ' tally-'), "
                           f"fold = replace(fold, '{BEFORE}', ' tally-')")
        p99 = lat[max(0, round(0.99 * len(lat)) - 1)] * 1000
        print(f"RSS with {args.entries:,} entries: idle {rss_idle:.1f} MB, after the queries {rss_after:.1f} MB, "
              f"peak {peak:.1f} MB  goal <= {GOAL_BIG_RSS_MB} MB  {verdict(max(rss_idle, rss_after), GOAL_BIG_RSS_MB)}")
        print(f"history page (limit={PAGE_ENTRIES}) at {args.entries:,} entries, {len(lat)} requests: "
              f"p50 {statistics.median(lat) * 1000:.1f} ms, p99 {p99:.1f} ms, max {lat[-1] * 1000:.1f} ms  "
              f"goal p99 <= {GOAL_PAGE_P99_MS} ms  {verdict(p99, GOAL_PAGE_P99_MS)}")
        pages.sort()
        print(f"dashboard history page at {args.entries:,} entries: first load {first:.2f} s (computes the ledger's "
              f"state, or reads it back from the snapshot a run before saved), "
              f"then p50 {statistics.median(pages) * 1000:.1f} ms, p99 "
              f"{pages[max(0, round(0.99 * len(pages)) - 1)] * 1000:.1f} ms; RSS after {rss_dash:.1f} MB, "
              f"peak {peak_dash:.1f} MB (no goal set: the state is cached until the ledger changes); its snapshot "
              f"saved {saved_s:.1f} s after these pages")
        print(f"restart with {args.entries:,} entries: first dashboard history page {restarted:.2f} s (the state read "
              f"back from its snapshot; {restarted / first:.2f} of the first load before), RSS {rss_restarted:.1f} MB, "
              f"{SETTLE_S:.0f} s later {rss_settled:.1f} MB, peak {peak_restarted:.1f} MB  goal <= {GOAL_RESTART_S} s  "
              f"{verdict(restarted, GOAL_RESTART_S)}")
        print(f"writes right after a restart with {args.entries:,} entries (POST about, request to 201): first "
              f"{writes[0]:.2f} s (the state read back), second {writes[1]:.2f} s, third {writes[2] * 1000:.0f} ms "
              f"(the fold read back meanwhile); RSS {rss_written:.1f} MB, {SETTLE_S:.0f} s later "
              f"{rss_written_settled:.1f} MB, peak {peak_written:.1f} MB; SIGTERM to exit {stop_s:.2f} s and "
              f"{last_stop_s:.2f} s")
        print(f"dashboard forms right after a restart with {args.entries:,} entries (request to answer): "
              f"{form_text(forms)}; RSS {rss_forms:.1f} MB; SIGTERM to exit {forms_stop_s:.2f} s")
        print(f"dashboard forms after an upgrade, right after the writes below: {form_text(upgraded_forms)}")
        print(f"dashboard forms after a version upgrade (the kept state the version before's) with {args.entries:,} "
              f"entries: {form_text(versioned)}; RSS {rss_versioned:.1f} MB, peak {peak_versioned:.1f} MB; SIGTERM to "
              f"exit {versioned_stop_s:.2f} s")
        print(f"writes after an upgrade (the kept fold stale) with {args.entries:,} entries: first "
              f"{upgraded[0]:.2f} s, second {upgraded[1]:.2f} s, third {upgraded[2] * 1000:.0f} ms (the ledger folded "
              f"again meanwhile); RSS {rss_upgraded:.1f} MB, {SETTLE_S:.0f} s later {rss_upgraded_settled:.1f} MB, "
              f"peak {peak_upgraded:.1f} MB; SIGTERM to exit {upgraded_stop_s:.2f} s")
    finally:
        shutil.rmtree(work, ignore_errors=True)


async def _has_big_ledger(home: Home, entries: int) -> bool:
    if not home.store_path.exists():
        return False
    store = await Store.open(home.store_path)
    try:
        return any(i.name == "bench" and i.entries >= entries for i in await store.ledgers())
    finally:
        await store.close()


if __name__ == "__main__":
    main()
