"""The dashboard's Keys tab and Join page between real nodes (README "Invite a member", "Recover a lost key"):
Ana's owner makes an invitation link in the dashboard, drawn as a QR code (an inline SVG, no outside
service), and a newcomer joins with it; the link opened in a browser on Ana's node explains what to do and
shows nothing of the ledger; a recovery that Ben approved waits for a second approval, which Ana gives with
one click. `tally run` processes on loopback; the dashboard driven over HTTP with a session cookie, as a
browser's forms send it.
"""

from __future__ import annotations

import html
import http.cookiejar
import re
import sys
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
from running_nodes import Node, ok, output, running, start, until

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")


class Dashboard:
    """An owner's browser on one node: its session cookie, and the CSRF token of the last page."""

    def __init__(self, node: Node) -> None:
        self.node = node
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))
        link = ok(node.home, "open")
        self.opener.open(link if link.startswith("http") else node.address + link, timeout=60).read()
        self.csrf = ""

    def get(self, path: str) -> str:
        with self.opener.open(self.node.address + path, timeout=60) as resp:
            text: str = resp.read().decode()
        found = re.search(r'name="csrf" value="([^"]*)"', text)
        self.csrf = found.group(1) if found else self.csrf
        return text

    def post(self, path: str, **fields: str) -> str:
        data = urllib.parse.urlencode({"csrf": self.csrf, **fields}).encode()
        with self.opener.open(urllib.request.Request(self.node.address + path, data=data), timeout=60) as resp:
            text: str = resp.read().decode()
        return text


@pytest.mark.slow
def test_invite_with_a_qr_code_and_approve_a_recovery_in_the_dashboard(tmp_path: Path) -> None:
    with running(tmp_path, ("ana", "ben", "cleo")) as nodes:
        ana, ben, cleo = nodes["ana"], nodes["ben"], nodes["cleo"]
        rules = tmp_path / "rules.toml"
        rules.write_text("[validation]\naccept = 2\n[recovery]\nquorum = 2\n")
        ledger = ok(ana.home, "ledger", "create", "Keys coop", "--rules", str(rules))
        for other in (ben, cleo):
            ok(ana.home, "member", "admit", ledger, other.did)
            ok(other.home, "follow", ledger)
        until(lambda: ben.did in (ben.state(ledger) or {}).get("members", []), "Ben a member at his node")
        ok(ben.home, "member", "admit", ledger, cleo.did)  # with two members, K = 2 takes both
        for node in (ana, ben, cleo):
            until(lambda node=node: len((node.state(ledger) or {}).get("members", [])) == 3, f"members at {node.name}")

        board = Dashboard(ana)
        page = board.get(f"/ledgers/{ledger}/keys")
        assert "Invite someone" in page and "No key recovery is waiting." in page
        shown = board.post(f"/ledgers/{ledger}/invitations", uses="1", expires="7", address=ana.address)
        assert "<svg" in shown and "QR code of the invitation link" in shown
        link = html.unescape(re.search(r'<code class="invitation">([^<]+)</code>', shown).group(1))  # type: ignore[union-attr]
        assert link.startswith(f"{ana.address}/join#")
        assert link not in board.get(f"/ledgers/{ledger}/keys")  # shown once

        with urllib.request.urlopen(link, timeout=60) as resp:  # a newcomer's browser opening the link
            landing = resp.read().decode()
        assert "You were invited to a Tally ledger" in landing and "Keys coop" not in landing
        dan_home = tmp_path / "dan"
        assert output(dan_home, "join", link).splitlines()[-1] == ledger
        dan = ok(dan_home, "id")
        # The ledger needs two sponsors: Ben sees Dan waiting in his validation queue and sponsors him there.
        bens = Dashboard(ben)
        until(lambda: dan in bens.get(f"/ledgers/{ledger}/queue"), "Dan waiting in Ben's queue", logs=(ben, ana))
        assert "1 of 2 sponsors" in bens.get(f"/ledgers/{ledger}/queue")
        anas_queue = board.get(f"/ledgers/{ledger}/queue")
        assert dan in anas_queue and "Sponsor</button>" not in anas_queue  # Ana sponsored him already
        bens.get(f"/ledgers/{ledger}/queue")
        bens.post(f"/ledgers/{ledger}/admit", agent=dan)
        until(lambda: dan in (ana.state(ledger) or {}).get("members", []), "Dan a member at Ana's")

        # Cleo lost her keys before she wrote anything; her new home asks, Ben approves (his node stopped; his
        # approval names her admission, so she is a member in its past), Ana approves in the dashboard.
        fresh = ok(tmp_path / "cleo2", "init")
        ok(tmp_path / "cleo2", "recover", "request", ledger, cleo.did)
        ben.proc.terminate()
        ben.proc.wait(timeout=30)
        ok(ben.home, "recover", "approve", ledger, cleo.did, fresh)
        phone = ok(tmp_path / "phone", "init")
        ok(ben.home, "device", "add", phone, "--name", "phone")
        ben = nodes["ben"] = start("ben", ben.home, ben.did, ana.address)
        status, devices = ben.api("GET", "/devices")
        assert status == 200 and [(d["key"], d["name"], d["revoked"], d["ledgers"]) for d in devices["devices"]] \
            == [(phone, "phone", None, [ledger])]
        until(lambda: "1 of 2" in board.get(f"/ledgers/{ledger}/keys"), "Ben's approval on Ana's Keys tab",
              logs=(ana, ben))
        status, waiting = ana.api("GET", f"/ledgers/{ledger}/recoveries")
        assert status == 200 and [(r["identity"], r["key"], r["approvers"], r["needed"], r["complete"])
                                  for r in waiting["recoveries"]] == [(cleo.did, fresh, [ben.did], 2, False)]
        done = board.post(f"/ledgers/{ledger}/recoveries", identity=cleo.did, key=fresh)
        assert f"Approved: {fresh}" in done
        until(lambda: ((ana.state(ledger) or {}).get("keys", {}).get(cleo.did) or {}).get("key") == fresh,
              "Cleo's new key at Ana's")
        assert "done" in board.get(f"/ledgers/{ledger}/keys")
        status, after = ana.api("GET", f"/ledgers/{ledger}/recoveries")
        assert [(r["approvers"], r["complete"]) for r in after["recoveries"]] == [(sorted([ana.did, ben.did]), True)]
