"""Benchmark: what hostile peers can make a running node store, remember and spend (SPEC §13.9).

Starts two `tally run` processes on loopback, a victim V holding a public ledger and an honest
peer G linked to it, then attacks V from this process over real encrypted links and prints:

- fork flood: fork proofs for made-up ledgers from a fresh key, paced under the request rate
  (so metering is not what stops them) and then as a burst; V's store growth and the proofs G
  received (goal: < 100 KB, none);
- level flood: `level` messages for random ledgers (300,000 by default), spread over links from
  fresh keys each paced under the request rate, V's resident memory growth (goal: < 5 MB);
- link flood: 1,000 attackers at once, each dialling V from a fresh key and dialling again as soon as its link
  is refused or closed, from another process and other addresses (127.0.0.2, or `--sources N` of them, for
  as many distinct peers as the caps let in); meanwhile `GET
  /api/v1/identity` on V from a third process (p50, p99, max; also before the flood, and on G during it, for
  what the machine's load alone costs), how the attempts ended, the CPU V, G and the attacker used, and
  whether entries appended on V every half second still reach G (goal: p99 < 100 ms, every entry). With
  `--close` each attacker closes its link as soon as its handshake is done and dials again: a flood of completed
  handshakes, as fast as `--processes N` attacking processes can run them (one is far from enough).

    python scripts/bench_hostile.py [--forks 2000] [--levels 300000] [--level-links 7] [--links 1000]
                                    [--rounds 1] [--seconds 10]
    python scripts/bench_hostile.py --forks 0 --levels 0 --rounds 5      # the link flood only, five times
    python scripts/bench_hostile.py --forks 0 --levels 0 --sources 100   # from 100 addresses, 10 attackers each
    python scripts/bench_hostile.py --forks 0 --levels 0 --sources 100 --links 64 --processes 4 --close
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from tempfile import TemporaryDirectory

import aiohttp

from node.home import Home
from node.sync.links import LinkClosed, SecureLink, dial_link
from protocol import CID, SigningKey, create_entry
from protocol.fork import ForkProof
from protocol.sync import Fork, Level, Sub, encode_message

EXE = str(Path(sys.executable).with_name("tally"))


def tally(home: Path, *args: str) -> str:
    return subprocess.run([EXE, "--home", str(home), *args], check=True, capture_output=True, text=True).stdout


def start(home: Path, *extra: str) -> tuple[subprocess.Popen[bytes], str]:
    proc = subprocess.Popen([EXE, "--home", str(home), "run", "--listen", "127.0.0.1:0", "--offline", "--no-mdns",
                             *extra], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    nodefile = home / "node.json"
    for _ in range(600):
        with contextlib.suppress(OSError, ValueError, KeyError):
            return proc, json.loads(nodefile.read_text())["address"]
        time.sleep(0.05)
    proc.kill()
    raise RuntimeError("tally run did not start")


def store_bytes(home: Path) -> int:
    return sum(p.stat().st_size for p in home.glob("tally.sqlite3*"))


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def made_up_fork(key: SigningKey, i: int) -> bytes:
    ledger = CID(bytes([1, 0x71, 0x12, 0x20]) + i.to_bytes(32, "big"))
    a = create_entry(key, ledger=ledger, seq=1, prev=None, ts=1, kind="vf.event", body={"n": 1})
    b = create_entry(key, ledger=ledger, seq=1, prev=None, ts=1, kind="vf.event", body={"n": 2})
    return encode_message(Fork(ForkProof.of(a, b).encode()))


async def flood(
    http: aiohttp.ClientSession, url: str, frames: list[bytes], pace: float, link: SecureLink | None = None
) -> tuple[int, str]:
    """Send frames from one fresh key (or on `link`); (frames sent, how the victim ended the link, or "open")."""
    link = link or await dial_link(http, url, SigningKey(os.urandom(32)))
    sent = 0
    try:
        await link.send(encode_message(Sub(())))
        for frame in frames:
            await link.send(frame)
            sent += 1
            if pace:
                await asyncio.sleep(pace)
        async with asyncio.timeout(3.0):
            while True:
                await link.receive()  # its own sub and front; an err and the close if it cut us off
    except LinkClosed as exc:
        return sent, exc.code or "closed"
    except TimeoutError:
        await link.close()
    return sent, "open"


PROBE = r"""
import json, sys, time, urllib.request
url, seconds = sys.argv[1], float(sys.argv[2])
times, failed = [], []
end = time.monotonic() + seconds
while time.monotonic() < end:
    t = time.perf_counter()
    try:
        urllib.request.urlopen(url, timeout=60).read()
        times.append((time.perf_counter() - t) * 1000)
    except OSError as exc:
        failed.append(type(exc).__name__)
    time.sleep(0.01)
print(json.dumps([times, failed]))
"""


def percentiles(answered: tuple[list[float], list[str]]) -> str:
    times, failed = sorted(answered[0]), answered[1]
    if not times:
        return f"no answer ({len(failed)} calls failed)"
    pick = lambda q: times[min(len(times) - 1, int(len(times) * q))]  # noqa: E731
    return f"p50 {pick(0.5):.1f} ms, p99 {pick(0.99):.1f} ms, max {times[-1]:.1f} ms over {len(times)} calls" + (
        f" ({len(failed)} more failed: {', '.join(sorted(set(failed)))})" if failed else "")


async def probe(url: str, seconds: float) -> tuple[list[float], list[str]]:
    """`GET url` one call after another for `seconds`, from another process (this one is busy attacking)."""
    proc = await asyncio.create_subprocess_exec(sys.executable, "-c", PROBE, url, str(seconds),
                                                stdout=asyncio.subprocess.PIPE)
    out, _ = await proc.communicate()
    times, failed = json.loads(out)
    return times, failed


async def link_flood(v_url: str, links: int, seconds: float, sources: list[str], close: bool) -> Counter[str]:
    """`links` attackers at once, spread over the addresses `sources`, for `seconds`, each dialling V from
    a fresh key again as soon as its link is refused or closed (a refused attacker does not wait), or, with
    `close`, as soon as its handshake is done; how the attempts ended."""
    outcomes: Counter[str] = Counter()
    end = time.monotonic() + seconds
    # A session per address, without aiohttp's default cap of 100 connections: all of them at once.
    sessions = [aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0, force_close=True, local_addr=(a, 0)))
                for a in sources]
    async with contextlib.AsyncExitStack() as stack:
        for session in sessions:
            await stack.enter_async_context(session)

        async def attacker(http: aiohttp.ClientSession) -> None:
            while time.monotonic() < end:
                try:
                    async with asyncio.timeout(max(0.1, end - time.monotonic())):
                        link = await dial_link(http, v_url, SigningKey(os.urandom(32)))
                except TimeoutError:
                    return
                except LinkClosed as exc:
                    how = exc.refusal or str(exc).split(": ", 1)[-1][:40]
                    outcomes["refused (503)" if "503" in str(exc) else how] += 1
                    continue
                except (aiohttp.ClientError, OSError) as exc:
                    outcomes[type(exc).__name__] += 1
                    continue
                outcomes["handshake done"] += 1
                if close:
                    await link.close()
                    continue
                try:
                    async with asyncio.timeout(max(0.1, end - time.monotonic())):
                        while True:
                            await link.receive()  # its sub and front, then the close if V cut it
                except LinkClosed as exc:
                    outcomes[f"then closed: {exc.refusal or 'closed'}"] += 1
                except TimeoutError:
                    outcomes["then held to the end"] += 1
                    with contextlib.suppress(Exception):
                        await link.close()

        await asyncio.gather(*(attacker(sessions[i % len(sessions)]) for i in range(links)))
    return outcomes


async def attack(v_url: str, links: int, seconds: float, sources: list[str], processes: int,
                 close: bool) -> tuple[Counter[str], float]:
    """`link_flood` in `processes` processes of their own (`links` attackers in all), so that their work does not
    slow this one's measurements: (how the attempts ended, the CPU seconds the attackers used)."""
    procs = [await asyncio.create_subprocess_exec(
        sys.executable, __file__, "--attack", v_url, "--links", str(links // processes), "--seconds", str(seconds),
        "--sources", str(len(sources)), *(["--close"] if close else []), stdout=asyncio.subprocess.PIPE)
        for _ in range(processes)]
    outcomes: Counter[str] = Counter()
    cpu = 0.0
    for proc in procs:
        out, _ = await proc.communicate()
        counted, used = json.loads(out)
        outcomes.update(counted)
        cpu += used
    return outcomes, cpu


async def keep_writing(http: aiohttp.ClientSession, v_url: str, g_api: str, g_token: str, ledger: str,
                       seconds: float) -> tuple[int, int, float, int]:
    """Append an entry on V every half second for `seconds` and watch G for each: (appended, reached G
    within 10 s, the slowest arrival in ms, writes whose kept-alive connection V had closed)."""
    appended = reached = lost = 0
    slowest = 0.0
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        try:
            async with http.post(f"{v_url}/api/v1/ledgers/{ledger}/entries",
                                 json={"kind": "note.text", "body": {"during": "flood", "n": appended}}) as resp:
                entry = (await resp.json())["id"]
        except aiohttp.ClientConnectionError:
            lost += 1  # V's connection cap closed this idle kept-alive connection (SPEC §12): write again
            continue
        appended += 1
        t = time.perf_counter()
        while time.perf_counter() - t < 10.0:
            with contextlib.suppress(aiohttp.ClientConnectionError):
                async with http.get(f"{g_api}/api/v1/ledgers/{ledger}/entries", params={"limit": "1000"},
                                    headers={"Authorization": f"Bearer {g_token}"}) as resp:
                    if entry in await resp.text():
                        reached += 1
                        slowest = max(slowest, (time.perf_counter() - t) * 1000)
                        break
            await asyncio.sleep(0.05)
        await asyncio.sleep(max(0.0, 0.5 - (time.perf_counter() - t)))
    return appended, reached, slowest, lost


def cpu_s(pid: int | str) -> float:
    """User + system CPU seconds the process has used."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def load() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


async def bench(forks: int, levels: int, level_links: int, links: int, rounds: int, seconds: float,
                sources: list[str], work: Path, processes: int = 1, close: bool = False) -> None:
    v_home, g_home = work / "v", work / "g"
    tally(v_home, "init")
    tally(g_home, "init")
    ledger = tally(v_home, "ledger", "create", "Coop", "--public").split()[-1]
    v, v_url = start(v_home)
    g, g_api = start(g_home, "--peer", v_url)
    token = Home(v_home).load_token()
    try:
        tally(g_home, "follow", ledger)
        async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {token}"}) as http:
            await asyncio.sleep(2.0)
            if levels:
                # Spread over links from fresh keys, each paced under the request rate (G holds one of
                # the address's links): a flood as large as the address may send without a violation.
                r0 = rss_kb(v.pid)
                lv = [encode_message(Level(CID(bytes([1, 0x71, 0x12, 0x20]) + os.urandom(32)), bytes(32)))
                      for _ in range(levels)]
                t = time.perf_counter()
                # Dialled one by one: at most 4 handshakes from one address at once.
                held = [await dial_link(http, v_url, SigningKey(os.urandom(32))) for _ in range(level_links)]
                per_link = await asyncio.gather(*(flood(http, v_url, lv[i::level_links], 1 / 190, link)
                                                  for i, link in enumerate(held)))
                level_s = time.perf_counter() - t
                ended = ",".join(sorted({how for _, how in per_link}))
                print(f"level flood {sum(sent for sent, _ in per_link):,} for random ledgers over {level_links} "
                      f"links in {level_s:.0f} s, paced (links {ended}): V's RSS grew "
                      f"{(rss_kb(v.pid) - r0) / 1024:.1f} MB (goal < 5 MB)", flush=True)
            if forks:
                # Paced first: a burst gets the attacker's address banned, and later links with it.
                v0, g0 = store_bytes(v_home), store_bytes(g_home)
                key = SigningKey(os.urandom(32))
                paced = await flood(http, v_url, [made_up_fork(key, i) for i in range(forks)], 1 / 150)
                burst = await flood(http, v_url, [made_up_fork(key, forks + i) for i in range(20_000)], 0)
                await asyncio.sleep(1.0)
                print(f"fork flood  {paced[0]:,} proofs paced (link {paced[1]}), a burst of {burst[0]:,} "
                      f"(link {burst[1]}): V's store grew {(store_bytes(v_home) - v0) / 1024:.1f} KB, "
                      f"G's {(store_bytes(g_home) - g0) / 1024:.1f} KB (goal < 100 KB, none gossiped)", flush=True)
                await asyncio.sleep(35.0)  # the burst banned this address: wait the ban out
            g_token = Home(g_home).load_token()
            identity = f"{v_url}/api/v1/identity"
            for r in range(rounds):
                # First without a flood: what this machine's load alone costs the probe.
                quiet = await probe(identity, seconds / 2)
                before = load()
                cpu0 = [cpu_s(pid) for pid in (v.pid, g.pid)]
                times, control, (outcomes, attacker_cpu), writes = await asyncio.gather(
                    probe(identity, seconds), probe(f"{g_api}/api/v1/identity", seconds),
                    attack(v_url, links, seconds + 1.0, sources, processes, close),
                    keep_writing(http, v_url, g_api, g_token, ledger, seconds))
                appended, reached, slowest, lost = writes
                cpu = [(cpu_s(pid) - c0) / seconds * 100 for pid, c0 in zip((v.pid, g.pid), cpu0, strict=True)]
                cpu.append(attacker_cpu / seconds * 100)
                print(f"link flood {r + 1}/{rounds}: {links:,} attackers in {processes} process"
                      f"{'es' if processes > 1 else ''}{', closing each link at once' if close else ''}, from "
                      f"{len(sources)} address{'es' if len(sources) > 1 else ''} for {seconds:g} s (load {before} -> "
                      f"{load()}): GET /api/v1/identity {percentiles(times)} (goal p99 < 100 ms); without the "
                      f"flood {percentiles(quiet)}; on G meanwhile (not attacked) {percentiles(control)}", flush=True)
                attempts = sum(n for k, n in outcomes.items() if not k.startswith("then "))
                print(f"  attempts: {', '.join(f'{k} {n:,}' for k, n in outcomes.most_common())}; CPU: V "
                      f"{cpu[0]:.0f} %, G {cpu[1]:.0f} %, the attacker {cpu[2]:.0f} % of a core; V's CPU per "
                      f"attempt {cpu[0] / 100 * seconds / max(1, attempts) * 1e6:.0f} us (its probes' and "
                      f"writes' included)", flush=True)
                print(f"  G still syncing: {0 < reached == appended} ({reached}/{appended} entries appended on V "
                      f"during the flood reached G, the slowest in {slowest:.0f} ms; {lost} writes sent again "
                      f"after V closed their idle connection)", flush=True)
                await asyncio.sleep(2.0)
    finally:
        for proc in (g, v):
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--forks", type=int, default=2000)
    parser.add_argument("--levels", type=int, default=300_000)
    parser.add_argument("--level-links", type=int, default=7, help="links the level flood is spread over")
    parser.add_argument("--links", type=int, default=1000, help="attackers dialling at once (0: no link flood)")
    parser.add_argument("--rounds", type=int, default=1, help="link floods, one after another")
    parser.add_argument("--seconds", type=float, default=10.0, help="how long each link flood lasts")
    parser.add_argument("--sources", type=int, default=1,
                        help="addresses the link flood comes from, 127.0.0.2 on (the probes and G use 127.0.0.1)")
    parser.add_argument("--processes", type=int, default=1, help="attacking processes the link flood runs in")
    parser.add_argument("--close", action="store_true",
                        help="each attacker closes its link once the handshake is done, and dials again")
    parser.add_argument("--attack", metavar="URL", help=argparse.SUPPRESS)  # the attacker's own process
    args = parser.parse_args()
    logging.disable(logging.WARNING)  # the attacker's own links say why they were refused: counted, not printed
    sources = [f"127.0.{(2 + i) // 256}.{(2 + i) % 256}" for i in range(args.sources)]
    if args.attack:
        outcomes = asyncio.run(link_flood(args.attack, args.links, args.seconds, sources, args.close))
        print(json.dumps([outcomes, cpu_s("self")]))
        return
    with TemporaryDirectory() as tmp:
        asyncio.run(bench(args.forks, args.levels, args.level_links, args.links, args.rounds if args.links else 0,
                          args.seconds, sources, Path(tmp), args.processes, args.close))


if __name__ == "__main__":
    main()
