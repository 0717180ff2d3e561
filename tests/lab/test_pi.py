"""Tally on a Raspberry Pi's platform: arm64 Debian bookworm (Raspberry Pi OS's base) under QEMU.

Runs scripts/pi_check.sh: the package installs from arm64 wheels only, `tally run` serves
/api/v1/identity, and stops cleanly on SIGTERM. It takes ~3 minutes here (plus ~5 minutes, once
per machine, to build the emulator's root filesystem), so it carries the `pi` marker and is left
out of the default suite: run it with `python -m pytest -m pi tests/lab/test_pi.py` (`.ci/run`
does, before the default suite). It skips, saying why, where the machine cannot emulate (not
root, no binfmt_misc) or where the emulator's setup fails (no network to Debian's mirror).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "pi_check.sh"
TIMEOUT_S = 1800  # setup (~5 min) and run (~3 min), with room for a slow, shared machine

pytestmark = [
    pytest.mark.pi,
    pytest.mark.skipif(sys.platform != "linux", reason="the Pi emulator needs Linux"),
]


def test_installs_from_arm64_wheels_and_serves_identity() -> None:
    if os.geteuid() != 0:
        pytest.skip("the Pi emulator needs root (binfmt_misc, chroot, namespaces)")
    r = subprocess.run(["bash", str(SCRIPT)], capture_output=True, text=True, timeout=TIMEOUT_S, cwd=ROOT)
    out = r.stdout + r.stderr
    if r.returncode in (2, 3):
        pytest.skip(f"the Pi emulator cannot run here: {out.strip().splitlines()[-1] if out.strip() else r.returncode}")
    assert r.returncode == 0, out[-8000:]
    assert "pi_check: aarch64 serves /api/v1/identity" in out
    assert "stopped cleanly on SIGTERM" in out and "pi_check: PASS" in out
    for line in out.splitlines():
        if line.startswith(("pi_check:", "pi-check:")):
            print(line)
