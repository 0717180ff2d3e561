"""Joining by invitation between real nodes (README "Invite a member"): Ana's node prints a link; Ben, on a
fresh home and no id typed, runs `tally join LINK`, starts his node with no peer configured, and syncs the
members-only ledger from Ana's node; Cleo joins through her running node; the link then is used up, a
revoked or expired one is refused, and only the secret's hash is stored.

`tally run` processes on loopback, driven through the real CLI, HTTP API and SQLite files.
"""

from __future__ import annotations

import base64
import json
import sys
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from running_nodes import coop, ok, output, refused, running, start, stop_all, until

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")


def secret_of(link: str) -> bytes:
    fragment = urlsplit(link).fragment
    return base64.urlsafe_b64decode(fragment + "=" * (-len(fragment) % 4))


@pytest.mark.slow
def test_a_newcomer_joins_by_link_and_syncs_with_no_id_typed(tmp_path: Path) -> None:
    with running(tmp_path, ("ana",)) as nodes:
        ana = nodes["ana"]
        ledger = coop(nodes, "ana", "Invite coop")
        text = output(ana.home, "invite", ledger, "--uses", "2", "--qr")
        link = text.splitlines()[-1]
        assert link.startswith(f"{ana.address}/join#")
        assert any(block in text for block in "▀▄█")  # the QR, drawn on the terminal
        secret = secret_of(link)
        assert len(secret) == 32
        store_bytes = (ana.home / "tally.sqlite3").read_bytes() + (
            (ana.home / "tally.sqlite3-wal").read_bytes() if (ana.home / "tally.sqlite3-wal").exists() else b"")
        assert secret not in store_bytes  # only its hash is kept
        rows = [json.loads(line) for line in output(ana.home, "invites", "--json").splitlines()]
        assert [(r["ledger"], r["uses"], r["state"]) for r in rows] == [(ledger, 2, "open")]
        assert urlsplit(link).fragment not in json.dumps(rows)

        # Ben: a fresh home, one command, no id typed.
        ben_home = tmp_path / "ben"
        joined = output(ben_home, "join", link).splitlines()
        assert joined[-1] == ledger and joined[0].startswith("made this home's identity: did:key:")
        ben_did = ok(ben_home, "id")
        until(lambda: ben_did in ((ana.state(ledger) or {}).get("members", [])), "Ben a member at Ana's node")
        ben = nodes["ben"] = start("ben", ben_home, ben_did)  # no --peer: it dials the inviter by itself
        until(lambda: (s := ben.state(ledger)) is not None and ben_did in s["members"], "the ledger at Ben's node",
              logs=(ben, ana))
        work = ok(ben.home, "contribute", ledger, "--action", "work", "--quantity", "3", "--unit", "hour")
        until(lambda: work in {p["id"] for p in (ana.state(ledger) or {}).get("pending", [])}, "Ben's work at Ana's",
              logs=(ben, ana))
        peers = json.loads(output(ben.home, "peers", "--json").splitlines()[0])
        assert peers["address"] == ana.address and peers["found"] == "invite"

        # Cleo joins through her running node; it dials Ana at once.
        cleo_did = ok(tmp_path / "cleo", "init")
        cleo = nodes["cleo"] = start("cleo", tmp_path / "cleo", cleo_did)
        assert ok(cleo.home, "join", link) == ledger
        until(lambda: (s := cleo.state(ledger)) is not None and cleo_did in s["members"], "the ledger at Cleo's",
              logs=(cleo, ana))
        assert ok(cleo.home, "join", link) == ledger  # again: the same answer, no second use taken

        # Used up; revoked; expired: one refusal for all.
        refused(tmp_path / "dan", "invitation_refused", "join", link)
        second = ok(ana.home, "invite", ledger)
        # A secret sent without the proof that the named key asked for it enrols nobody and uses nothing up.
        forged = {"secret": urlsplit(second).fragment, "agent": ana.did, "sig": "AAAA"}
        status, answer = ana.api("POST", "/invitations/redeem", forged, owner=False)
        assert (status, answer["error"]["code"]) == (403, "invitation_refused")
        [open_one] = [r["id"] for r in map(json.loads, output(ana.home, "invites", "--json").splitlines())
                      if r["state"] == "open"]
        assert ok(ana.home, "invites", "--revoke", open_one[:6]) == open_one
        refused(tmp_path / "dan", "invitation_refused", "join", second)
        brief = ok(ana.home, "invite", ledger, "--expires", "0.00001")  # under a second
        # the node says when it has expired (the only open one left): then its use is refused
        until(lambda: all(i["state"] != "open" for i in ana.api("GET", "/invitations")[1]["invitations"]),
              "the brief invitation expired", logs=[ana])
        refused(tmp_path / "dan", "invitation_refused", "join", brief)
        refused(tmp_path / "dan", "bad_invitation", "join", f"{ana.address}/join#short")
        states = {r["state"] for r in map(json.loads, output(ana.home, "invites", "--json").splitlines())}
        assert states == {"used", "revoked", "expired"}
        stop_all([ben, cleo])
