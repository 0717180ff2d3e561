"""The dashboard in a real browser: Playwright driving Debian's Chromium against two real `tally run`
processes (Alice and Bob in one coop).

Alice logs in through `tally open`, logs a contribution through the form, sees it in the history and
in the chart, accepts Bob's contribution from her validation queue, casts a score ballot and watches
the results change live when Bob votes; a neighbour without a session sees only the public ledger.
A screenshot of every page is kept under test-artifacts/dashboard/ (or $TALLY_ARTIFACTS).

Needs the `playwright` package (the test extras) and a Chromium: $TALLY_CHROMIUM, else
/usr/bin/chromium (Debian's `chromium` package; .ci/run installs it). Skipped, saying why, without them.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from typing import Any

import pytest
from browsing import TIMEOUT_MS, browser, shot
from running_nodes import Node, coop, ok, start_all, stop_all, until

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
__all__ = ["browser"]  # the fixture, shared from browsing.py


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[dict[str, Node], str, str, str]]:
    nodes = start_all(tmp_path_factory.mktemp("browser"), ("alice", "bob"))
    try:
        alice, bob = nodes["alice"], nodes["bob"]
        ledger = coop(nodes, "alice", "Bakery coop")
        public = coop(nodes, "alice", "Open garden", public=True)
        ok(bob.home, "member", "name", ledger, "Bob <the baker>")  # a name is text, never markup
        ok(alice.home, "contribute", ledger, "--action", "work", "--quantity", "6", "--unit", "hour",
           "--at", "2026-10-05", "--note", "Baked for the market")
        bobs = ok(bob.home, "contribute", ledger, "--action", "work", "--quantity", "3", "--unit", "hour",
                  "--at", "2026-10-12", "--note", "Delivered bread")
        ok(bob.home, "endorse", until(lambda: _first_id(alice, ledger, alice.did), "Alice's contribution at Bob's"))
        motion = ok(alice.home, "motion", "create", ledger, "--title", "New oven?", "--option", "buy",
                    "--option", "rent", "--option", "wait")
        until(lambda: _has_motion(alice, ledger, motion) and _has_motion(bob, ledger, motion), "the motion")
        until(lambda: _first_id(alice, ledger, bob.did) == bobs, "Bob's contribution at Alice's")
        ok(alice.home, "distribute", ledger, "--amount", "300", "--unit", "euro", "--record")
        yield nodes, ledger, public, motion
    finally:
        stop_all(nodes.values())


def _first_id(node: Node, ledger: str, author: str) -> str | None:
    state = node.state(ledger)
    if state is None:
        return None
    _, history = node.api("GET", f"/ledgers/{ledger}/history?agent={author}")
    rows = [c for c in history["contributions"] if c["author"] == author]
    return rows[0]["id"] if rows else None


def _has_motion(node: Node, ledger: str, motion: str) -> bool:
    state = node.state(ledger)
    return state is not None and any(m["id"] == motion for m in state["motions"])


def test_owner_logs_in_contributes_endorses_and_votes(browser: Any, world: tuple) -> None:
    nodes, ledger, _, motion = world
    alice, bob = nodes["alice"], nodes["bob"]
    context = browser.new_context(viewport={"width": 1200, "height": 900})
    context.set_default_timeout(TIMEOUT_MS)
    page = context.new_page()
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))

    # Log in: the one-time link lands on the dashboard with a session.
    page.goto(ok(alice.home, "open"))
    assert page.url == f"{alice.address}/"
    assert page.title() == "(2) Your ledgers · Tally"  # Bob's contribution to validate, the motion to vote on
    ledgers = page.locator("table.ledgers")
    assert ledgers.get_by_role("link", name="Bakery coop").is_visible()
    assert page.locator("table.recent").get_by_text("Delivered bread").is_visible()
    (cookie,) = context.cookies()
    assert cookie["name"] == f"tally_{alice.did[-12:]}" and cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    assert page.evaluate("document.cookie") == ""  # the page's script cannot read the session
    shot(page, "01-landing")

    # Name yourself in the ledger: the others see the name (Bob named himself from the CLI).
    ledgers.get_by_role("link", name="Bakery coop").click()
    page.get_by_label("Your name in this ledger (the other members see it)", exact=True).fill("Alice")
    page.get_by_role("button", name="Save").click()
    assert page.get_by_role("status").filter(has_text="The other members now see you as Alice.").is_visible()
    members = page.locator("table.members")
    assert members.get_by_text("Alice (you)").is_visible() and members.get_by_text("Bob <the baker>").is_visible()
    assert until(lambda: (s := bob.state(ledger)) is not None and s["names"].get(alice.did) == "Alice",
                 "Alice's name at Bob's node")

    # Log a contribution through the form; it shows in the history.
    page.get_by_role("link", name="Log a contribution").click()
    page.get_by_label("What you did", exact=True).select_option("work")
    page.get_by_label("How much", exact=True).fill("4.5")
    page.get_by_label("Unit", exact=True).select_option("hour")
    page.get_by_label("On", exact=True).fill("2026-10-19")
    page.get_by_label("Note", exact=True).fill("Fixed the oven")
    shot(page, "02-contribute-form")
    page.get_by_role("button", name="Log it").click()
    page.wait_for_url(f"**/ledgers/{ledger}/history")
    assert page.get_by_role("status").filter(has_text="Logged: work 4.5 hour").is_visible()
    row = page.locator("table.history tr", has_text="Fixed the oven")
    assert row.locator(".status").inner_text() == "pending"
    assert "4.5 hour" in row.inner_text()
    shot(page, "03-history")

    # Filters: by member and action, and the filtered rows only.
    page.get_by_label("Member", exact=True).select_option(bob.did)
    page.get_by_role("button", name="Filter").click()
    page.wait_for_url("**agent=*")
    assert page.locator("table.history").get_by_text("Delivered bread").is_visible()
    assert page.locator("table.history").get_by_text("Fixed the oven").count() == 0
    shot(page, "04-history-filtered")

    # The chart of contributions over time has Alice's new week, and the shares chart the distribution.
    page.get_by_role("link", name="Overview").click()
    week_of_oven = "2026-10-19"
    bar = page.locator(f'figure:has-text("per member") rect[data-series="{alice.did}"][data-period="{week_of_oven}"]')
    assert bar.count() == 1 and bar.get_attribute("data-value") == "4.50"
    shares = page.locator('figure:has-text("Latest distribution") rect')
    assert shares.count() == 1  # only Alice's work was final when it was recorded
    assert shares.get_attribute("data-series") == alice.did and shares.get_attribute("data-value") == "300.00"
    assert "300 euro" in page.locator('figure:has-text("Latest distribution") figcaption').inner_text()
    shot(page, "05-overview-charts")

    # Validation queue: accept Bob's contribution.
    page.get_by_role("link", name="Validation queue").click()
    entry = page.locator("table.queue tr", has_text="Delivered bread")
    shot(page, "06-queue")
    entry.get_by_role("button", name="Accept").click()
    page.wait_for_url(f"**/ledgers/{ledger}/queue")
    assert page.get_by_role("status").filter(has_text="Accepted.").is_visible()
    assert page.locator("table.queue tr", has_text="Delivered bread").count() == 0

    def bobs_status() -> str | None:
        _, history = alice.api("GET", f"/ledgers/{ledger}/history?agent={bob.did}")
        return next((c["status"] for c in history["contributions"] if c["note"] == "Delivered bread"), None)

    assert until(lambda: bobs_status() == "final", "Bob's contribution final")

    # Score ballot, then live results when Bob votes.
    page.get_by_role("link", name="Motions").click()
    page.get_by_role("link", name="New oven?").click()
    page.get_by_label("buy", exact=True).fill("5")
    page.get_by_label("rent", exact=True).fill("2")
    page.get_by_label("wait", exact=True).fill("0")
    page.get_by_role("button", name="Cast my ballot").click()
    page.wait_for_url(f"**/motions/{motion}")
    assert page.get_by_role("status").filter(has_text="Your ballot is cast").is_visible()
    assert "1 voter(s)" in page.locator("#results .result-status").inner_text()
    assert page.locator('#results tr[data-option="buy"] td.num').first.inner_text() == "5"
    ok(bob.home, "vote", motion, "--score", "rent=5", "--score", "buy=1")
    page.locator("#results .result-status", has_text="2 voter(s)").wait_for()  # no reload: the page's script
    assert page.locator('#results tr[data-option="rent"] td.num').first.inner_text() == "7"
    assert page.get_by_label("buy", exact=True).input_value() == "5"  # my ballot stays in the form
    shot(page, "07-motion")

    # Propose a motion that would change a rate: a bad rules change is refused with its code, a good one opens.
    page.get_by_role("link", name="Motions").click()
    page.get_by_label("Title", exact=True).fill("Pay more for deliveries?")
    page.get_by_label("Rules change if the first option wins (optional, TOML as in an amendment file)",
                      exact=True).fill("[rates.work\nhour = 25")
    page.get_by_role("button", name="Propose").click()
    assert page.get_by_role("alert").filter(has_text="bad_amendment").is_visible()
    assert page.get_by_label("Title", exact=True).input_value() == "Pay more for deliveries?"  # the form keeps it
    page.get_by_label("Title", exact=True).fill("Pay more for deliveries?")
    page.get_by_label("Rules change if the first option wins (optional, TOML as in an amendment file)",
                      exact=True).fill('[rates.work]\nhour = "2"')
    page.get_by_role("button", name="Propose").click()
    page.wait_for_url("**/motions/bafy*")
    assert page.get_by_role("status").filter(has_text="Your motion is open for votes.").is_visible()
    assert page.get_by_role("heading", name="Pay more for deliveries?").is_visible()
    assert "hour" in page.get_by_text("If the first option wins").inner_text()
    shot(page, "08-motion-proposed")

    # Shares: what 300 euro would give now, by the value equation (Bob's work is final now).
    page.get_by_role("link", name="Shares").click()
    page.get_by_label("Amount to share", exact=True).fill("300")
    page.get_by_label("Unit", exact=True).select_option("euro")
    page.get_by_role("button", name="Preview").click()
    page.wait_for_url("**/shares?amount=300*")
    lines = page.locator("table.lines tbody tr")
    assert lines.count() == 2  # Alice and Bob both have final work now
    assert page.get_by_role("button", name="Record this distribution").is_visible()
    shot(page, "09-shares")

    page.get_by_role("link", name="Pledges").click()
    shot(page, "10-pledges")
    page.get_by_role("link", name="Peers").click()
    assert page.locator("table.peers tr", has_text="Bob <the baker>").get_by_text("connected", exact=True).is_visible()
    shot(page, "11-peers")
    assert not errors, errors  # no script error, no CSP violation
    context.close()


def test_a_neighbour_sees_the_public_ledger_only(browser: Any, world: tuple) -> None:
    nodes, ledger, _, _ = world
    alice = nodes["alice"]
    context = browser.new_context()
    context.set_default_timeout(TIMEOUT_MS)
    page = context.new_page()
    page.goto(f"{alice.address}/")
    assert page.locator("table.ledgers").get_by_role("link", name="Open garden").is_visible()
    assert page.get_by_role("link", name="Bakery coop").count() == 0
    assert page.get_by_role("link", name="Peers").count() == 0
    assert page.get_by_role("button", name="Log out").count() == 0
    shot(page, "12-neighbour")
    page.locator("table.ledgers").get_by_role("link", name="Open garden").click()
    assert page.get_by_role("link", name="Log a contribution").count() == 0
    response = page.goto(f"{alice.address}/ledgers/{ledger}")
    assert response is not None and response.status == 404
    context.close()
