#!/usr/bin/env bash
# pi_check.sh - does Tally install and run on a Raspberry Pi's platform?
#
# Uses scripts/pi_emu.sh (QEMU user-mode emulation of arm64 in a Debian
# bookworm arm64 root filesystem: Raspberry Pi OS 64-bit's base, Python 3.11):
# copies this project in, installs it in a fresh venv from arm64 wheels only (a
# dependency without an aarch64 wheel fails the check), runs `tally init` and
# `tally run`, waits for the first 200 on /api/v1/identity, logs in to the dashboard, stops the node with
# SIGTERM and requires exit 0. Prints the timings it saw.
#
#   sudo scripts/pi_check.sh       # sets the emulator up first if needed (~5 min, ~330 MB, once)
#
# Environment: PI_CPU (cortex-a72 = Pi 4 [default], cortex-a76 = Pi 5, cortex-a53 = Pi 3 /
# Zero 2), PI_EMU_DIR (the emulator's state, see pi_emu.sh), PI_CHECK_TIMEOUT (seconds for the
# run, default 1200).
# Exit: 0 pass, 1 fail, 2 cannot run here (not root, no binfmt_misc), 3 the emulator's
# setup failed (e.g. no network to Debian's mirror).
set -euo pipefail

ms() { echo $(( $(date +%s%N) / 1000000 )); }

inside() {  # runs in the emulated Pi: cwd is the project's copy, an empty venv is active
    local t0 node rc=0
    t0=$(ms)
    pip install -q .
    echo "pi_check: pip install (arm64 wheels only) took $(( $(ms) - t0 )) ms"
    pip list --format=freeze | grep -iE '^(tally-node|aiohttp|aiosqlite|cbor2|cryptography|pynacl|zeroconf)=' |
        tr '\n' ' '
    echo
    export TALLY_HOME=/tmp/tally-home
    tally init
    t0=$(ms)
    tally run --listen 127.0.0.1:7410 --offline --no-mdns 2> /tmp/node.log &
    node=$!
    if ! NODE_PID=$node SPAWNED_MS=$t0 python3 - <<'EOF'
import json, os, platform, time, urllib.request
deadline = time.monotonic() + 300
while True:
    try:
        with urllib.request.urlopen("http://127.0.0.1:7410/api/v1/identity", timeout=10) as r:
            identity = json.load(r)
            assert r.status == 200, r.status
            break
    except OSError:
        if time.monotonic() > deadline:
            raise SystemExit("pi_check: no answer on /api/v1/identity within 300 s")
        time.sleep(0.1)
assert identity["id"].startswith("did:key:z6Mk") and identity["protocol"] == 1, identity
print("pi_check:", platform.machine(), "serves /api/v1/identity:", json.dumps(identity))
print(f"pi_check: from spawn to the first 200 on /api/v1/identity: {time.time_ns() // 1_000_000 - int(os.environ['SPAWNED_MS'])} ms (emulated)")
# The dashboard: its owner logs in through `tally open` and sees the ledger just founded.
import http.cookiejar, subprocess
subprocess.run(["tally", "ledger", "create", "Pi coop"], check=True, capture_output=True, timeout=300)
url = subprocess.run(["tally", "open"], check=True, capture_output=True, text=True, timeout=300).stdout.split()[-1]
opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))
started = time.monotonic()
with opener.open(url, timeout=120) as r:
    page = r.read().decode()
assert "Pi coop" in page and "Log out" in page, page[:500]
print(f"pi_check: the dashboard answers its owner ({len(page)} bytes, {time.monotonic() - started:.2f} s emulated)")
# A 100,000-entry ledger: its state folded once (node/store/states.py), then kept current; the node's RSS.
import asyncio
from pathlib import Path
from node.home import Home
from node.store.store import Store
from protocol.writes import AppendRequest
from protocol import GENESIS_KIND
from protocol.rules import Rules

BIG = 100_000

def rss_mb() -> float:
    status = Path(f"/proc/{os.environ['NODE_PID']}/status").read_text()
    return int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmRSS:"))) / 1024

async def big() -> str:
    home = Home(Path(os.environ["TALLY_HOME"]))
    key = home.load_key()
    store = await Store.open(home.store_path, key=key)
    try:
        rules = Rules.from_config({}, name="Big coop", creator=key.did, public=False)
        genesis = await store.append(AppendRequest(None, GENESIS_KIND, rules.to_body(), 1))
        await store.append_batch([AppendRequest(genesis.id, "note.text", {"n": i}, 2 + i) for i in range(BIG - 1)])
        return str(genesis.id)
    finally:
        await store.close()

started = time.monotonic()
ledger = asyncio.run(big())
built = time.monotonic() - started
before = rss_mb()
started = time.monotonic()
with opener.open(f"http://127.0.0.1:7410/ledgers/{ledger}", timeout=1200) as r:
    page = r.read().decode()
first = time.monotonic() - started
assert "Big coop" in page, page[:500]
assert "ledger folded" in Path("/tmp/node.log").read_text(), "the node did not fold the ledger"
started = time.monotonic()
with opener.open(f"http://127.0.0.1:7410/ledgers/{ledger}", timeout=120) as r:
    assert "Big coop" in r.read().decode()
again = time.monotonic() - started
print(f"pi_check: a {BIG:,}-entry ledger (stored in {built:.1f} s): its first page, the state folded, in {first:.1f} s, "
      f"the next in {again:.2f} s (emulated); node RSS {before:.0f} MB before, {rss_mb():.0f} MB after")
EOF
    then
        cat /tmp/node.log
        kill -KILL "$node"
        return 1
    fi
    kill -TERM "$node"
    wait "$node" || rc=$?
    if [ "$rc" != 0 ]; then
        echo "pi_check: the node exited $rc on SIGTERM"
        cat /tmp/node.log
        return 1
    fi
    echo "pi_check: the node stopped cleanly on SIGTERM"
}

if [ "${1:-}" = --inside ]; then
    inside
    exit
fi

ROOT=$(cd "$(dirname "$(readlink -f "$0")")/.." && pwd)
PI_EMU=$ROOT/scripts/pi_emu.sh
TIMEOUT=${PI_CHECK_TIMEOUT:-1200}
[[ "$TIMEOUT" =~ ^[0-9]+$ ]] || { echo "pi_check: PI_CHECK_TIMEOUT must be seconds" >&2; exit 64; }

[ "$(id -u)" = 0 ] || { echo "pi_check: needs root (QEMU binfmt, chroot, namespaces)" >&2; exit 2; }

# idempotent: builds the emulator the first time (~5 min), then only checks it
t0=$(date +%s)
rc=0
bash "$PI_EMU" setup || rc=$?
case $rc in
0) echo "pi_check: emulator ready ($(( $(date +%s) - t0 ))s)" >&2 ;;
2) echo "pi_check: this machine cannot emulate arm64" >&2; exit 2 ;;
*) echo "pi_check: the emulator's setup failed (exit $rc)" >&2; exit 3 ;;
esac

t0=$(date +%s)
rc=0
bash "$PI_EMU" run --wheels-only --timeout "$TIMEOUT" "$ROOT" 'bash scripts/pi_check.sh --inside' || rc=$?
echo "pi_check: run took $(( $(date +%s) - t0 ))s, exit $rc" >&2
if [ "$rc" = 0 ]; then echo "pi_check: PASS"; else echo "pi_check: FAIL"; exit 1; fi
