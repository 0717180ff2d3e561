"""The dashboard over real sockets, without a browser: two `tally run` processes (Alice and Bob, one
members-only coop and one public ledger), pages fetched the way a browser or a LAN neighbour would.

What the owner's session may do, what a neighbour sees (public ledgers, read-only), one-time login
links, cookie flags, CSRF refusals, escaping of what peers wrote, security headers and offline assets.
The browser tests (tests/web) click through the same pages in Chromium.
"""

from __future__ import annotations

import re
import sys
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.client import HTTPResponse
from pathlib import Path

import pytest
from loopback_api import KEY, running_api
from running_nodes import Node, coop, ok, run, start_all, stop_all, until

from node.http.sessions import Sessions
from node.store.states import LedgerStates
from node.store.store import Store
from node.sync.replication import Replicator
from protocol import CID, GENESIS_KIND
from protocol.writes import AppendRequest

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None


_opener = urllib.request.build_opener(_NoRedirect)


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: str
    cookies: list[str] = field(default_factory=list)


def fetch(url: str, *, cookie: str | None = None, form: dict[str, str] | None = None,
          headers: dict[str, str] | None = None) -> Reply:
    sent = dict(headers or {})
    if cookie:
        sent["Cookie"] = cookie
    data = None if form is None else urllib.parse.urlencode(form).encode()
    request = urllib.request.Request(url, data=data, headers=sent, method="POST" if form is not None else "GET")
    try:
        resp: HTTPResponse = _opener.open(request, timeout=60)
    except urllib.error.HTTPError as exc:
        return Reply(exc.code, dict(exc.headers.items()), exc.read().decode(), exc.headers.get_all("Set-Cookie") or [])
    with resp:
        return Reply(resp.status, dict(resp.headers.items()), resp.read().decode(),
                     resp.headers.get_all("Set-Cookie") or [])


def login(node: Node) -> str:
    """Follow a fresh `tally open` link; the session cookie (`name=value`)."""
    url = ok(node.home, "open")
    reply = fetch(url)
    assert reply.status == 303 and reply.headers["Location"] == "/", reply
    return reply.cookies[0].split(";")[0]


def csrf(page: str) -> str:
    match = re.search(r'name="csrf" value="([^"]+)"', page)
    assert match, "the page has no CSRF field"
    return match.group(1)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[dict[str, Node], str, str]]:
    nodes = start_all(tmp_path_factory.mktemp("dash"), ("alice", "bob"))
    try:
        private = coop(nodes, "alice", "Bakery coop")
        public = coop(nodes, "alice", "Open garden", public=True)
        yield nodes, private, public
    finally:
        stop_all(nodes.values())


def test_tally_open_prints_a_one_time_link_that_sets_a_strict_httponly_cookie(world: tuple) -> None:
    nodes = world[0]
    alice = nodes["alice"]
    r = run(alice.home, "open")
    assert r.returncode == 0, r.stderr
    url = r.stdout.strip().splitlines()[-1]
    assert url.startswith(f"{alice.address}/login?token="), url
    assert alice.token not in url  # the link is not the API token
    first = fetch(url)
    assert first.status == 303 and first.headers["Location"] == "/"
    cookie = first.cookies[0]
    flags = {part.strip().split("=")[0].lower() for part in cookie.split(";")}
    assert {"httponly", "path", "samesite", "max-age"} <= flags, cookie
    assert "SameSite=Strict" in cookie
    session = cookie.split(";")[0]
    assert fetch(url).status == 401  # used up: it works once
    landing = fetch(f"{alice.address}/", cookie=session)
    assert landing.status == 200
    assert "Bakery coop" in landing.body and "Open garden" in landing.body
    assert "Recent contributions" in landing.body and "Log out" in landing.body
    # A different address for the link (a Pi reached by its LAN name):
    other = ok(alice.home, "open", "--address", "http://pi.local:7410")
    assert other.startswith("http://pi.local:7410/login?token=")


def test_wrong_or_missing_login_tokens_are_refused(world: tuple) -> None:
    alice = world[0]["alice"]
    for path in ("/login", "/login?token=", "/login?token=forged"):
        reply = fetch(f"{alice.address}{path}")
        assert reply.status == 401 and not reply.cookies, path
        assert "tally open" in reply.body
    status, body = alice.api("POST", "/login-links", {}, owner=False)
    assert status == 401 and body["error"]["code"] == "unauthorized"


def test_a_neighbour_sees_public_ledgers_only_and_can_change_nothing(world: tuple) -> None:
    nodes, private, public = world
    alice = nodes["alice"]
    landing = fetch(f"{alice.address}/")
    assert landing.status == 200
    assert "Open garden" in landing.body and "Bakery coop" not in landing.body
    assert "tally open" in landing.body
    assert fetch(f"{alice.address}/ledgers/{public}/history").status == 200
    for path in ("", "/history", "/motions", "/pledges"):
        assert fetch(f"{alice.address}/ledgers/{private}{path}").status == 404, path
    for path in ("/peers", f"/ledgers/{public}/contribute", f"/ledgers/{public}/queue"):
        assert fetch(f"{alice.address}{path}").status == 401, path
    before = alice.state(public)
    assert before is not None
    refused = fetch(f"{alice.address}/ledgers/{public}/contribute",
                    form={"action": "work", "quantity": "1", "unit": "hour", "csrf": "x"})
    assert refused.status == 401
    assert alice.state(public) == before  # nothing was written


def test_forms_need_the_session_csrf_token_and_this_origin(world: tuple) -> None:
    nodes, private, _ = world
    alice = nodes["alice"]
    cookie = login(alice)
    form_page = fetch(f"{alice.address}/ledgers/{private}/contribute", cookie=cookie)
    assert form_page.status == 200
    token = csrf(form_page.body)
    fields = {"action": "work", "quantity": "2.5", "unit": "hour", "at": "2026-11-02", "note": "csrf check"}
    history = lambda: alice.api("GET", f"/ledgers/{private}/history")[1]["contributions"]  # noqa: E731
    before = len(history())
    assert fetch(f"{alice.address}/ledgers/{private}/contribute", cookie=cookie, form=fields).status == 403
    assert fetch(f"{alice.address}/ledgers/{private}/contribute", cookie=cookie,
                 form={**fields, "csrf": "not-it"}).status == 403
    assert fetch(f"{alice.address}/ledgers/{private}/contribute", cookie=cookie, form={**fields, "csrf": token},
                 headers={"Origin": "http://evil.example"}).status == 403
    assert fetch(f"{alice.address}/ledgers/{private}/contribute", cookie=cookie, form={**fields, "csrf": token},
                 headers={"Sec-Fetch-Site": "cross-site"}).status == 403
    assert fetch(f"{alice.address}/ledgers/{private}/contribute", cookie=cookie, form={**fields, "csrf": token},
                 headers={"Origin": "null"}).status == 403
    other = login(alice)  # another session's token is not this one's
    assert fetch(f"{alice.address}/ledgers/{private}/contribute", cookie=other,
                 form={**fields, "csrf": token}).status == 403
    assert len(history()) == before
    done = fetch(f"{alice.address}/ledgers/{private}/contribute", cookie=cookie, form={**fields, "csrf": token},
                 headers={"Origin": alice.address})
    assert done.status == 303 and done.headers["Location"] == f"/ledgers/{private}/history"
    rows = history()
    assert len(rows) == before + 1 and rows[-1]["note"] == "csrf check" and rows[-1]["provider"] == alice.did
    shown = fetch(f"{alice.address}/ledgers/{private}/history", cookie=cookie)
    assert "Logged: work 2.5 hour" in shown.body and "csrf check" in shown.body
    # Logging out ends the session: its cookie no longer writes.
    assert fetch(f"{alice.address}/logout", cookie=cookie, form={"csrf": token}).status == 303
    assert fetch(f"{alice.address}/ledgers/{private}/contribute", cookie=cookie,
                 form={**fields, "csrf": token}).status == 401


def test_a_refused_contribution_shows_its_code_and_writes_nothing(world: tuple) -> None:
    nodes, private, _ = world
    alice = nodes["alice"]
    cookie = login(alice)
    token = csrf(fetch(f"{alice.address}/ledgers/{private}/contribute", cookie=cookie).body)
    before = alice.state(private)
    for fields, code in (({"action": "work", "quantity": "-1", "unit": "hour"}, "bad_quantity"),
                         ({"action": "work", "quantity": "1", "unit": "parsec"}, "unknown_unit"),
                         ({"action": "dance", "quantity": "1", "unit": "hour"}, "unknown_action"),
                         ({"action": "work", "quantity": "1", "unit": "hour", "at": "yesterday"}, "bad_time")):
        reply = fetch(f"{alice.address}/ledgers/{private}/contribute", cookie=cookie, form={**fields, "csrf": token})
        assert reply.status == 400 and f"<code>{code}</code>" in reply.body, (fields, reply.body[-2000:])
        assert f'value="{fields["quantity"]}"' in reply.body  # the form keeps what was typed
    assert alice.state(private) == before


def test_what_peers_write_is_shown_as_text_never_as_markup(world: tuple) -> None:
    nodes, private, _ = world
    alice, bob = nodes["alice"], nodes["bob"]
    note = '<script>alert("x")</script><img src=x onerror=alert(1)>'
    ok(bob.home, "contribute", private, "--action", "work", "--quantity", "1", "--unit", "hour", "--note", note)
    cookie = login(alice)
    def shown() -> str | None:
        body = fetch(f"{alice.address}/ledgers/{private}/history", cookie=cookie).body
        return body if "&lt;script&gt;" in body else None

    page = until(shown, "Bob's note at Alice's")
    assert "<script>alert" not in page and "<img src=x" not in page
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in page or "&lt;script&gt;alert(\"x\")" in page


def test_pages_carry_security_headers_and_assets_come_from_the_node(world: tuple) -> None:
    alice = world[0]["alice"]
    page = fetch(f"{alice.address}/")
    csp = page.headers["Content-Security-Policy"]
    assert "default-src 'none'" in csp and "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
    assert page.headers["X-Frame-Options"] == "DENY" and page.headers["Referrer-Policy"] == "same-origin"
    assert page.headers["Cache-Control"] == "no-store"
    assets = re.findall(r'(?:href|src)="(/static/[^"]+)"', page.body)
    assert len(assets) == 3
    for asset in assets:
        reply = fetch(f"{alice.address}{asset}")
        kind = reply.headers["Content-Type"].split(";")[0]
        assert reply.status == 200 and kind in ("text/css", "text/javascript", "image/svg+xml")
    # nothing is fetched from elsewhere: every URL in the page is relative to the node
    assert not re.search(r'(?:href|src|action)="(?:https?:)?//', page.body)
    assert fetch(f"{alice.address}/static/../api.token").status == 404
    assert fetch(f"{alice.address}/static/nope.js").status == 404


def test_unknown_pages_are_html_and_unknown_api_routes_stay_json(world: tuple) -> None:
    alice = world[0]["alice"]
    page = fetch(f"{alice.address}/no/such/page")
    assert page.status == 404 and page.headers["Content-Type"].startswith("text/html")
    assert "<code>not_found</code>" in page.body
    api = fetch(f"{alice.address}/api/v1/no/such/route")
    assert api.status == 404 and api.headers["Content-Type"].startswith("application/json")
    status, doc = alice.api("GET", "/openapi.json")
    assert status == 200
    assert "/api/v1/login-links" in doc["paths"] and not any(p.startswith("/ledgers") for p in doc["paths"])


def test_tally_open_without_a_running_node(tmp_path: Path) -> None:
    home = tmp_path / "idle"
    ok(home, "init")
    r = run(home, "open")
    assert r.returncode == 1 and r.stderr.startswith("error: not_running: ")


def test_login_links_and_sessions_expire() -> None:
    now = [1000.0]
    sessions = Sessions(lambda: now[0])
    token, ttl = sessions.new_link()
    now[0] += ttl + 1
    assert sessions.redeem(token) is None  # expired
    token, _ = sessions.new_link()
    session_id = sessions.redeem(token)
    assert session_id is not None and sessions.get(session_id) is not None
    assert sessions.redeem(token) is None  # once only
    now[0] += 12 * 3600 + 1
    assert sessions.get(session_id) is None  # the session ended
    links = [sessions.new_link()[0] for _ in range(20)]
    assert sessions.redeem(links[0]) is None and sessions.redeem(links[-1]) is not None  # only the newest kept


def test_tally_open_browser_without_a_display_still_prints_the_link(world: tuple,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    alice = world[0]["alice"]
    for name in ("DISPLAY", "WAYLAND_DISPLAY"):
        monkeypatch.delenv(name, raising=False)
    r = run(alice.home, "open", "--browser")
    assert r.returncode == 0, r.stderr
    assert "no display here" in r.stderr
    url = r.stdout.strip().splitlines()[-1]
    assert url.startswith(f"{alice.address}/login?token=") and fetch(url).status == 303


def test_the_owner_founds_a_ledger_admits_a_member_who_follows_it_from_their_dashboard(world: tuple) -> None:
    nodes = world[0]
    alice, bob = nodes["alice"], nodes["bob"]
    cookie = login(alice)
    landing = fetch(f"{alice.address}/", cookie=cookie)
    token = csrf(landing.body)
    refused = fetch(f"{alice.address}/ledgers", cookie=cookie,
                    form={"csrf": token, "name": "Tool library", "visibility": "members", "rules": "[rates"})
    assert refused.status == 303 and refused.headers["Location"] == "/"
    assert "bad_rules" in fetch(f"{alice.address}/", cookie=cookie).body
    founded = fetch(f"{alice.address}/ledgers", cookie=cookie, form={
        "csrf": token, "name": "Tool library", "visibility": "members", "rules": '[rates.use]\nday = "3"'})
    assert founded.status == 303 and founded.headers["Location"].startswith("/ledgers/bafy")
    ledger = founded.headers["Location"].rsplit("/", 1)[-1]
    state = alice.state(ledger)
    assert state is not None and state["members"] == [alice.did] and state["rules"]["rates"]["use"]["day"] == "3"
    assert fetch(f"{alice.address}/ledgers/{ledger}", cookie=cookie, form={"csrf": token}).status == 405
    admitted = fetch(f"{alice.address}/ledgers/{ledger}/admit", cookie=cookie, form={"csrf": token, "agent": bob.did})
    assert admitted.status == 303
    bobs = login(bob)
    followed = fetch(f"{bob.address}/follow", cookie=bobs,
                     form={"csrf": csrf(fetch(f"{bob.address}/", cookie=bobs).body), "ledger": ledger})
    assert followed.status == 303
    until(lambda: (s := bob.state(ledger)) is not None and sorted(s["members"]) == sorted([alice.did, bob.did]),
          "the tool library with both members at Bob's")
    assert "Tool library" in fetch(f"{bob.address}/", cookie=bobs).body


async def test_a_ledger_whose_rules_do_not_parse_does_not_hide_the_others(tmp_path: Path) -> None:
    store = await Store.open(tmp_path / "tally.sqlite3", key=KEY)
    try:
        async with running_api(store, Replicator(store, KEY, peers=[], offline=True)) as api:
            good = await api.ledger("Good coop")
            await store.append(AppendRequest(None, GENESIS_KIND, {"name": "Broken rules"}, 1))
            waiting = CID.for_block(b"\xa1\x61a\x01")
            await store.follow(waiting)
            status, link = await api.call("POST", "/login-links", json={})
            assert status == 201
            async with api.client.get(link["path"], allow_redirects=False) as resp:
                assert resp.status == 303
            async with api.client.get("/") as resp:
                page = await resp.text()
                assert resp.status == 200, page
            assert f'href="/ledgers/{good}"' in page and "Broken rules" in page
            assert "<code>bad_rules</code>" in page
            assert str(waiting) in page and "waiting for its entries" in page
    finally:
        await store.close()


def test_refused_verdicts_and_ballots_say_why_and_write_nothing(world: tuple) -> None:
    nodes, private, _ = world
    alice = nodes["alice"]
    motion = ok(alice.home, "motion", "create", private, "--title", "Open on Sundays?", "--option", "yes",
                "--option", "no")
    mine = ok(alice.home, "contribute", private, "--action", "work", "--quantity", "1", "--unit", "hour")
    cookie = login(alice)
    token = csrf(fetch(f"{alice.address}/", cookie=cookie).body)
    before = alice.state(private)
    page = f"/ledgers/{private}/motions/{motion}"
    for scores, code in (({"score:yes": "9"}, "vote_out_of_range"), ({"score:yes": "2.5"}, "vote_out_of_range"),
                         ({"score:yes": "-1"}, "vote_out_of_range")):
        reply = fetch(f"{alice.address}{page}/vote", cookie=cookie, form={"csrf": token, **scores})
        assert reply.status == 303 and reply.headers["Location"] == page
        assert f"{code}: " in fetch(f"{alice.address}{page}", cookie=cookie).body, scores
    reply = fetch(f"{alice.address}/ledgers/{private}/endorse", cookie=cookie,
                  form={"csrf": token, "entry": mine, "verdict": "accept"})
    assert reply.status == 303
    assert "self_endorsement: " in fetch(f"{alice.address}/ledgers/{private}/queue", cookie=cookie).body
    assert fetch(f"{alice.address}/ledgers/{private}/endorse", cookie=cookie,
                 form={"csrf": token, "entry": mine, "verdict": "maybe"}).status == 400
    assert alice.state(private) == before  # nothing was signed
    cast = fetch(f"{alice.address}{page}/vote", cookie=cookie, form={"csrf": token, "score:yes": "4", "score:no": ""})
    assert cast.status == 303
    shown = fetch(f"{alice.address}{page}", cookie=cookie).body
    assert "Your ballot is cast: yes 4." in shown and "1 voter(s)" in shown


def test_a_pledge_made_and_paid_from_the_dashboard(world: tuple) -> None:
    nodes, private, _ = world
    alice = nodes["alice"]
    cookie = login(alice)
    form_page = fetch(f"{alice.address}/ledgers/{private}/pledges", cookie=cookie)
    assert "Pledge to the ledger" in form_page.body
    token = csrf(form_page.body)
    base = {"csrf": token, "unit": "euro", "every": "month", "start": "2026-09", "note": "rent share"}
    bad = fetch(f"{alice.address}/ledgers/{private}/pledges", cookie=cookie, form={**base, "amount": "-5"})
    assert bad.status == 303
    assert "bad_quantity: " in fetch(f"{alice.address}/ledgers/{private}/pledges", cookie=cookie).body
    made = fetch(f"{alice.address}/ledgers/{private}/pledges", cookie=cookie, form={**base, "amount": "10"})
    assert made.status == 303
    (pledge,) = [p for p in alice.state(private)["pledges"] if p["pledger"] == alice.did]
    assert (pledge["amount"], pledge["every"], pledge["start"]) == ("10", "month", "2026-09")
    contribute_page = fetch(f"{alice.address}/ledgers/{private}/contribute", cookie=cookie).body
    assert f'value="{pledge["id"]}"' in contribute_page  # the form offers to pay it
    paid = fetch(f"{alice.address}/ledgers/{private}/contribute", cookie=cookie, form={
        "csrf": token, "action": "transfer", "quantity": "10", "unit": "euro", "at": "2026-09-05",
        "fulfills": pledge["id"]})
    assert paid.status == 303, paid.body[-1500:]
    (after,) = [p for p in alice.state(private)["pledges"] if p["id"] == pledge["id"]]
    assert after["paid"] == "10" and after["periods"][0] == {"period": "2026-09", "due": "10", "paid": "10",
                                                            "arrears": "0"}
    shown = fetch(f"{alice.address}/ledgers/{private}/pledges", cookie=cookie).body
    assert "10 euro every month from 2026-09" in shown


async def test_a_ledger_page_shows_a_new_contribution_at_once(tmp_path: Path) -> None:
    """The node keeps each ledger's state current as entries arrive (node/store/states.py): the page after
    a write shows it, with no stale state and no reload."""
    store = await Store.open(tmp_path / "tally.sqlite3", key=KEY)
    states = LedgerStates(store)
    try:
        async with running_api(store, Replicator(store, KEY, peers=[], offline=True, states=states)) as api:
            ledger = await api.ledger("Big coop")
            status, link = await api.call("POST", "/login-links", json={})
            async with api.client.get(link["path"], allow_redirects=False) as resp:
                assert resp.status == 303
            async with api.client.get(f"/ledgers/{ledger}/history") as resp:
                page = await resp.text()
            assert "late" not in page
            for i in range(3):
                work = {"action": "work", "quantity": "2", "unit": "hour", "note": f"late {i}"}
                status, _ = await api.call("POST", f"/ledgers/{ledger}/contributions", json=work)
                assert status == 201
                async with api.client.get(f"/ledgers/{ledger}/history") as resp:
                    page = await resp.text()
                assert f"late {i}" in page and 'http-equiv="refresh"' not in page
            assert states.folded() == [CID.parse(ledger)]  # folded once, then kept current
    finally:
        states.close()
        await store.close()


def test_shares_previewed_recorded_and_exported_from_the_dashboard(world: tuple) -> None:
    nodes, private, public = world
    alice = nodes["alice"]
    cookie = login(alice)
    page = fetch(f"{alice.address}/ledgers/{private}/shares?amount=100&unit=euro", cookie=cookie)
    assert page.status == 200 and 'class="lines"' in page.body and "Record this distribution" in page.body
    status, expected = alice.api("GET", f"/ledgers/{private}/distribution?amount=100&unit=euro")
    assert status == 200
    for line in expected["lines"]:  # the page shows what the API computes
        assert f"{line['amount']} euro" in page.body
    wrong = fetch(f"{alice.address}/ledgers/{private}/shares?amount=100&unit=parsec", cookie=cookie)
    assert wrong.status == 200 and "<code>unknown_unit</code>" in wrong.body
    unconfirmed = fetch(f"{alice.address}/ledgers/{private}/distributions", cookie=cookie, form={
        "csrf": csrf(page.body), "amount": "100", "unit": "euro", "since": "", "until": ""})
    assert unconfirmed.status == 400 and "tick the box to confirm the distribution" in unconfirmed.body
    recorded = fetch(f"{alice.address}/ledgers/{private}/distributions", cookie=cookie, form={
        "csrf": csrf(page.body), "amount": "100", "unit": "euro", "since": "", "until": "", "confirm": "yes"})
    assert recorded.status == 303 and recorded.headers["Location"] == f"/ledgers/{private}/shares"
    listed = fetch(f"{alice.address}/ledgers/{private}/shares", cookie=cookie).body
    assert "Recorded: 100 euro shared" in listed and 'class="distributions"' in listed and "100.00 euro" in listed
    _, exported = alice.api("GET", f"/ledgers/{private}/export?format=jsonld")
    assert any("Distribution" in str(node.get("@type", "")) for node in exported["@graph"])
    csv_file = fetch(f"{alice.address}/ledgers/{private}/export.csv", cookie=cookie)
    assert csv_file.status == 200 and csv_file.headers["Content-Type"].startswith("text/csv")
    assert csv_file.headers["Content-Disposition"] == 'attachment; filename="Bakery-coop.csv"'
    assert fetch(f"{alice.address}/ledgers/{private}/export.jsonld", cookie=cookie).status == 200
    assert fetch(f"{alice.address}/ledgers/{private}/export.xml", cookie=cookie).status == 404
    # a visitor: previews and exports a public ledger, records nothing, sees no members-only one
    shown = fetch(f"{alice.address}/ledgers/{public}/shares?amount=10&unit=euro")
    assert shown.status == 200 and 'class="lines"' in shown.body and "Record this distribution" not in shown.body
    assert fetch(f"{alice.address}/ledgers/{public}/export.csv").status == 200
    assert fetch(f"{alice.address}/ledgers/{private}/export.csv").status == 404
    assert fetch(f"{alice.address}/ledgers/{private}/shares").status == 404


async def test_refusals_are_logged_with_their_code(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    store = await Store.open(tmp_path / "tally.sqlite3", key=KEY)
    try:
        async with running_api(store, Replicator(store, KEY, peers=[], offline=True)) as api:
            ledger = await api.ledger("Logged coop")
            status, link = await api.call("POST", "/login-links", json={})
            assert status == 201
            async with api.client.get(link["path"], allow_redirects=False) as resp:
                assert resp.status == 303
            async with api.client.get(f"/ledgers/{ledger}/contribute") as resp:
                token = csrf(await resp.text())
            caplog.clear()
            with caplog.at_level("INFO"):
                async with api.client.post(f"/ledgers/{ledger}/contribute", data={
                        "csrf": token, "action": "work", "quantity": "1", "unit": "parsec"}) as resp:
                    assert resp.status == 400
                async with api.client.post(f"/ledgers/{ledger}/endorse", data={
                        "csrf": token, "entry": ledger, "verdict": "accept"}) as resp:
                    assert resp.status == 200  # followed the redirect to the queue, which says why
                await api.call("GET", "/ledgers/bafynope")
            codes = [getattr(r, "code", None) for r in caplog.records if r.getMessage() == "refused"]
            assert codes == ["unknown_unit", "not_contribution", "bad_cid"], codes
    finally:
        await store.close()


def test_a_contribution_corrected_from_the_history(world: tuple) -> None:
    nodes, private, _ = world
    alice, bob = nodes["alice"], nodes["bob"]
    wrong = ok(alice.home, "contribute", private, "--action", "work", "--quantity", "30", "--unit", "hour",
               "--at", "2026-11-20", "--note", "typo: 30 for 3")
    cookie = login(alice)
    history = fetch(f"{alice.address}/ledgers/{private}/history", cookie=cookie).body
    link = f"/ledgers/{private}/contribute?corrects={wrong}"
    assert f'href="{link}"' in history
    form = fetch(f"{alice.address}{link}", cookie=cookie).body
    assert "Correct a contribution" in form and 'value="30"' in form and 'value="2026-11-20"' in form
    assert f'name="corrects" value="{wrong}"' in form
    done = fetch(f"{alice.address}/ledgers/{private}/contribute", cookie=cookie, form={
        "csrf": csrf(form), "corrects": wrong, "action": "work", "quantity": "3", "unit": "hour",
        "at": "2026-11-20", "note": "3 hours"})
    assert done.status == 303
    rows = {c["id"]: c for c in alice.api("GET", f"/ledgers/{private}/history")[1]["contributions"]}
    assert rows[wrong]["status"] == "corrected" and rows[wrong]["corrected_by"] is not None
    fixed = rows[rows[wrong]["corrected_by"]]
    assert (fixed["quantity"], fixed["corrects"], fixed["note"]) == ("3", wrong, "3 hours")
    assert "Corrected: work 3 hour" in fetch(f"{alice.address}/ledgers/{private}/history", cookie=cookie).body
    # only your own contributions: Bob's has no link on Alice's page, and naming it corrects nothing
    bobs = ok(bob.home, "contribute", private, "--action", "work", "--quantity", "1", "--unit", "hour")
    until(lambda: alice.state(private) is not None and any(p["id"] == bobs for p in alice.state(private)["pending"]),
          "Bob's contribution at Alice's")
    page = fetch(f"{alice.address}/ledgers/{private}/history", cookie=cookie).body
    assert f"corrects={bobs}" not in page
    assert "Log a contribution" in fetch(f"{alice.address}/ledgers/{private}/contribute?corrects={bobs}",
                                         cookie=cookie).body


def test_the_pledges_page_grows_with_pledges_not_with_the_months_they_span(world: tuple) -> None:
    """SPEC §1.1: a pledge from the earliest allowed month costs the page what last month's costs."""
    nodes, _, public = world
    alice = nodes["alice"]
    cookie = login(alice)
    url = f"{alice.address}/ledgers/{public}/pledges"
    base = {"csrf": csrf(fetch(url, cookie=cookie).body), "unit": "euro", "every": "month", "amount": "1"}
    assert fetch(url, cookie=cookie, form={**base, "start": "0000-01"}).status == 303
    assert "bad_time: " in fetch(url, cookie=cookie).body
    sizes = []
    for start in ("2024-01", "1970-01"):  # 3 years of periods, and 57
        before = len(fetch(url, cookie=cookie).body)
        assert fetch(url, cookie=cookie, form={**base, "start": start}).status == 303
        page = fetch(url, cookie=cookie).body
        sizes.append(len(page) - before)
    assert "the latest 24 shown" in page
    assert abs(sizes[1] - sizes[0]) < 200, sizes  # both list 24 periods: not the 680-odd since 1970
