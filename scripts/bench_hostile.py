"""Benchmark: what hostile peers can make a running node store, remember and spend (SPEC §13.9).

Starts two `tally run` processes on loopback, a victim V holding a public ledger and an honest
peer G linked to it, then attacks V from this process over real encrypted links and prints:

- fork flood: fork proofs for made-up ledgers from a fresh key, paced under the request rate
  (so metering is not what stops them) and then as a burst; V's store growth and the proofs G
  received (goal: < 100 KB, none);
- level flood: `level` messages for random ledgers (300,000 by default), spread over links from
  fresh keys each paced under the request rate, V's resident memory growth (goal: < 5 MB);
- link flood: 1,000 links opened at once by fresh keys; the p99 of `GET /api/v1/identity` on V
  meanwhile (goal < 100 ms), and whether G still gets V's new entries.

    python scripts/bench_hostile.py [--forks 2000] [--levels 300000] [--level-links 7] [--links 1000]
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
import sys, time, urllib.request
url, n = sys.argv[1], int(sys.argv[2])
times = []
for _ in range(n):
    t = time.perf_counter()
    urllib.request.urlopen(url, timeout=60).read()
    times.append((time.perf_counter() - t) * 1000)
    time.sleep(0.02)
times.sort()
print(times[min(len(times) - 1, int(len(times) * 0.99))])
"""


async def bench(forks: int, levels: int, level_links: int, links: int, work: Path) -> None:
    v_home, g_home = work / "v", work / "g"
    tally(v_home, "init")
    tally(g_home, "init")
    ledger = tally(v_home, "ledger", "create", "Coop", "--public").split()[-1]
    v, v_url = start(v_home)
    g, _ = start(g_home, "--peer", v_url)
    token = Home(v_home).load_token()
    try:
        tally(g_home, "follow", ledger)
        async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {token}"}) as http:
            await asyncio.sleep(2.0)
            # Paced floods first: a burst gets the attacker's address banned, and later links with it.
            r0 = rss_kb(v.pid)
            lv = [encode_message(Level(CID(bytes([1, 0x71, 0x12, 0x20]) + os.urandom(32)), bytes(32)))
                  for _ in range(levels)]
            # Spread over links from fresh keys, each paced under the request rate (G holds one of
            # the address's links): a flood as large as the address may send without a violation.
            t = time.perf_counter()
            # Dialled one by one: at most 4 handshakes from one address at once.
            held = [await dial_link(http, v_url, SigningKey(os.urandom(32))) for _ in range(level_links)]
            per_link = await asyncio.gather(*(flood(http, v_url, lv[i::level_links], 1 / 190, link)
                                              for i, link in enumerate(held)))
            level_s = time.perf_counter() - t
            paced_levels = (sum(sent for sent, _ in per_link), ",".join(sorted({how for _, how in per_link})))
            level_rss = (rss_kb(v.pid) - r0) / 1024
            v0, g0 = store_bytes(v_home), store_bytes(g_home)
            key = SigningKey(os.urandom(32))
            paced = await flood(http, v_url, [made_up_fork(key, i) for i in range(forks)], 1 / 150)
            burst = await flood(http, v_url, [made_up_fork(key, forks + i) for i in range(20_000)], 0)
            await asyncio.sleep(1.0)
            print(f"fork flood  {paced[0]:,} proofs paced (link {paced[1]}), a burst of {burst[0]:,} (link {burst[1]}):"
                  f" V's store grew {(store_bytes(v_home) - v0) / 1024:.1f} KB, "
                  f"G's {(store_bytes(g_home) - g0) / 1024:.1f} KB (goal < 100 KB, none gossiped)")
            print(f"level flood {paced_levels[0]:,} for random ledgers over {level_links} links in {level_s:.0f} s, "
                  f"paced (links {paced_levels[1]}): V's RSS grew {level_rss:.1f} MB (goal < 5 MB)")

            async def one_link() -> str:
                try:
                    link = await dial_link(http, v_url, SigningKey(os.urandom(32)))
                except (LinkClosed, aiohttp.ClientError, OSError, TimeoutError) as exc:
                    return type(exc).__name__
                await asyncio.sleep(3.0)
                with contextlib.suppress(Exception):
                    await link.close()
                return "held"

            # The API is probed from another process: this one is busy with its own 1,000 handshakes.
            # First without a flood: what this machine's load alone costs the probe.
            quiet = await asyncio.create_subprocess_exec(sys.executable, "-c", PROBE, f"{v_url}/api/v1/identity", "100",
                                                         stdout=asyncio.subprocess.PIPE)
            out, _ = await quiet.communicate()
            quiet_p99 = float(out.decode().strip())
            probe = await asyncio.create_subprocess_exec(sys.executable, "-c", PROBE, f"{v_url}/api/v1/identity", "100",
                                                         stdout=asyncio.subprocess.PIPE)
            outcomes = await asyncio.gather(*(one_link() for _ in range(links)))
            out, _ = await probe.communicate()
            p99 = float(out.decode().strip())
            async with http.post(f"{v_url}/api/v1/ledgers/{ledger}/entries",
                                 json={"kind": "note.text", "body": {"after": "flood"}}) as resp:
                entry = (await resp.json())["id"]
            reached = False
            for _ in range(300):
                if entry in tally(g_home, "log", "--ledger", ledger, "--json"):
                    reached = True
                    break
                await asyncio.sleep(0.1)
            held = sum(1 for o in outcomes if o == "held")  # the handshake completed (the cap may close it next)
            print(f"link flood  {links:,} links at once: {held} handshakes completed, {links - held} refused before "
                  f"one; GET /api/v1/identity p99 {p99:.1f} ms (goal < 100 ms; {quiet_p99:.1f} ms without the flood); "
                  f"G still syncing: {reached}")
    finally:
        for proc in (g, v):
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--forks", type=int, default=2000)
    parser.add_argument("--levels", type=int, default=300_000)
    parser.add_argument("--level-links", type=int, default=7, help="links the level flood is spread over")
    parser.add_argument("--links", type=int, default=1000)
    args = parser.parse_args()
    logging.disable(logging.WARNING)  # the attacker's own links say why they were refused: counted, not printed
    with TemporaryDirectory() as tmp:
        asyncio.run(bench(args.forks, args.levels, args.level_links, args.links, Path(tmp)))


if __name__ == "__main__":
    main()
