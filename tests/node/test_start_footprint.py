"""What a node loads at start: the libraries only some features use (mDNS, sync links' cipher, PEM key files, an
invitation's QR code, the names' confusables table) wait for their first use, so an idle node on a small machine
does not carry them (scripts/bench_footprint.py prints its idle RSS)."""

from __future__ import annotations

import subprocess
import sys
import urllib.request
from pathlib import Path

from running_nodes import http, ok, start

ROOT = Path(__file__).resolve().parents[2]
#: Loaded on first use only: mDNS (zeroconf, ifaddr), the link cipher and PEM keys (cryptography), QR codes (segno).
DEFERRED = ("zeroconf", "ifaddr", "cryptography", "segno")


def test_the_node_modules_load_none_of_the_deferred_libraries() -> None:
    code = ("import sys; import node.cli.main, node.cli.serve, node.app, node.run, protocol.confusables;"
            " print(*sorted({m.split('.')[0] for m in sys.modules}));"
            " print(protocol.confusables.prototypes.cache_info().currsize)")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True,
                         timeout=120).stdout.splitlines()
    loaded = set(out[0].split())
    assert "aiohttp" in loaded and "node" in loaded and not loaded & set(DEFERRED), sorted(loaded & set(DEFERRED))
    assert out[1] == "0"  # the confusables table is made when a name is first compared


def test_a_running_node_maps_no_deferred_extension(tmp_path: Path) -> None:
    """A real `tally run` that has answered the API and the dashboard has not loaded cryptography's or
    zeroconf's compiled modules (its /proc maps: what its memory holds, whatever imported them)."""
    home = tmp_path / "home"
    ok(home, "init")
    node = start("solo", home, "")
    try:
        assert http(f"{node.address}/api/v1/identity")[0] == 200
        with urllib.request.urlopen(f"{node.address}/", timeout=60) as page:  # the dashboard's landing page
            assert page.status == 200 and b"<html" in page.read()
        maps = Path(f"/proc/{node.proc.pid}/maps").read_text()
        assert "/nacl/" in maps  # the check sees the extensions a node does load
        assert not [lib for lib in DEFERRED if f"/{lib}/" in maps], maps
    finally:
        node.proc.terminate()
        assert node.proc.wait(timeout=30) == 0
