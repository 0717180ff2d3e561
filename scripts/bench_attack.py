"""A node under attack, measured (SPEC.md §12): prints figures, asserts nothing.

    python scripts/bench_attack.py [--half-open 1100]

Starts `tally run` on a fresh home with at most 1,024 open files (as on a default Linux or a Pi), opens N
half-open HTTP connections (each sends the start of a request, then nothing), and times, meanwhile:
`GET /api/v1/identity` by a new client, an owner write over the network (`POST /api/v1/ledgers`), and an
owner write by the CLI (over the local channel); then 25 wrong tokens and the right one.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

TALLY = str(Path(sys.executable).with_name("tally"))


def call(url: str, *, method: str = "GET", body: Any = None, token: str | None = None) -> tuple[int, float]:
    headers = {"Content-Type": "application/json"} | ({"Authorization": f"Bearer {token}"} if token else {})
    data = None if body is None else json.dumps(body).encode()
    t0 = time.perf_counter()
    try:
        with urllib.request.urlopen(urllib.request.Request(url, data=data, headers=headers, method=method),
                                    timeout=60) as resp:
            status = resp.status
    except urllib.error.HTTPError as exc:
        status = exc.code
    return status, time.perf_counter() - t0


def limited_files() -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (1024, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--half-open", type=int, default=1100)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="tally-attack-"))
    home = root / "home"
    env = {k: v for k, v in os.environ.items() if k != "TALLY_HOME"}
    subprocess.run([TALLY, "--home", str(home), "init"], check=True, capture_output=True, env=env)
    token = (home / "api.token").read_text().strip()
    with (root / "node.log").open("wb") as log:
        proc = subprocess.Popen([TALLY, "--home", str(home), "run", "--listen", "127.0.0.1:0", "--offline",
                                 "--no-mdns"], stdout=subprocess.DEVNULL, stderr=log, env=env,
                                preexec_fn=limited_files)
    socks: list[socket.socket] = []
    try:
        while not (home / "node.json").exists():
            time.sleep(0.05)
        time.sleep(0.2)
        address = json.loads((home / "node.json").read_text())["address"]
        parts = urlsplit(address)
        for _ in range(args.half_open):
            s = socket.create_connection((parts.hostname, parts.port), timeout=30)
            s.sendall(b"GET /api/v1/identity HTTP/1.1\r\nHost: tally\r\nX-Slow: ")
            socks.append(s)
        files = len(os.listdir(f"/proc/{proc.pid}/fd"))
        status, identity_s = call(f"{address}/api/v1/identity")
        print(f"{args.half_open} half-open connections; node has {files} files open (limit 1024)")
        print(f"  GET /api/v1/identity (new client): {status} in {identity_s * 1000:.0f} ms")
        status, write_s = call(f"{address}/api/v1/ledgers", method="POST", body={"name": "Under attack"},
                               token=token)
        print(f"  owner write over the network:      {status} in {write_s * 1000:.0f} ms")
        t0 = time.perf_counter()
        r = subprocess.run([TALLY, "--home", str(home), "ledger", "create", "From the CLI"], capture_output=True,
                           text=True, env=env)
        print(f"  owner write by the CLI (local channel, process start included): exit {r.returncode} in "
              f"{(time.perf_counter() - t0) * 1000:.0f} ms")
        wrong = [call(f"{address}/api/v1/identity", token=f"guess-{i}")[0] for i in range(25)]
        status, right_s = call(f"{address}/api/v1/ledgers", token=token)
        print(f"  25 wrong tokens: {wrong.count(401)} x 401, {wrong.count(429)} x 429; then the right one: "
              f"{status} in {right_s * 1000:.0f} ms")
    finally:
        for s in socks:
            s.close()
        proc.terminate()
        proc.wait(timeout=60)
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
