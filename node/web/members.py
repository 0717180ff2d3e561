"""The dashboard's keys and invitations (SPEC.md §12, §19): a ledger's Keys tab (invite someone, with the link
drawn as a QR code by this node; this member's devices; key recoveries waiting for approvals, approved with one
click) and the Join page, where an owner pastes an invitation link (and where the link itself lands when
opened in a browser on the inviter's node)."""

from __future__ import annotations

from aiohttp import web

from node.http import invites
from node.http.context import CONFIG, REPLICATION, STORE, WRITES
from node.http.identity import recovery_rows
from node.web.forms import form_request
from node.web.html import Child, Markup, el, field, table
from node.web.i18n import _, moment
from node.web.layout import (
    act,
    csrf_field,
    flash,
    owner_form,
    page,
    readable_ledger,
    refused,
    see_other,
    short,
    shown_ledger,
    viewer,
)
from node.web.ledger import ledger_page
from protocol import CID, LocalError, TallyError, key_ops, ledger_ops
from protocol.requests import Invite, Join, RecoverApprove


def add_member_pages(app: web.Application) -> None:
    app.router.add_get("/ledgers/{ledger}/keys", keys)
    app.router.add_post("/ledgers/{ledger}/invitations", invite)
    app.router.add_post("/ledgers/{ledger}/recoveries", approve)
    app.router.add_get("/join", join_page)
    app.router.add_post("/join", join)


def qr_code(text: str) -> Markup:
    """`text` as a QR code, an inline SVG drawn here (segno: no outside service ever sees the link)."""
    import segno  # with xml.sax, only once an invitation is drawn, not at every node's start

    svg = segno.make(text, error="m").svg_inline(scale=5, border=2, title=_("QR code of the invitation link"))
    return Markup(svg)


async def keys(request: web.Request, *, shown: Child = None) -> web.Response:
    v = viewer(request)
    info, state = await shown_ledger(request, v)
    member = v.owner and v.did in state.members
    invite_form: Child = el(
        "form", csrf_field(v),
        field(_("How many may use it"), "input", type="number", name="uses", value="1", min="1", max="1000"),
        field(_("Valid for (days)"), "input", type="number", name="expires", value="7", min="1", max="365"),
        field(_("This node's address as the newcomer reaches it"), "input", name="address",
              value=f"{request.scheme}://{request.host}"),
        el("button", _("Make an invitation link"), type="submit"),
        method="post", action=f"/ledgers/{info.id}/invitations", class_="invite") if member else None
    mine = key_ops.keys_of(state, v.did)
    devices = table((_("Device key"), _("Name"), _("Added"), _("Revoked")), [
        el("tr", el("td", el("code", d.key)), el("td", d.name or "-"), el("td", moment(d.added)),
           el("td", moment(d.revoked_at) if d.revoked_at is not None else "-"))
        for d in mine.devices], empty=el("p", _("No other device writes as you in this ledger."), class_="muted"))
    rows = []
    for row in await recovery_rows(request.app[STORE], state):
        identity, key, approvers, done = row["identity"], row["key"], row["approvers"], row["complete"]
        can = member and not done and v.did != identity and v.did not in approvers
        button: Child = el("form", csrf_field(v), el("input", type="hidden", name="identity", value=identity),
                           el("input", type="hidden", name="key", value=key),
                           el("button", _("Approve"), type="submit"), method="post",
                           action=f"/ledgers/{info.id}/recoveries", class_="inline") if can else None
        rows.append(el("tr", el("td", short(identity, v.did, state.names), title=identity),
                       el("td", el("code", key)),
                       el("td", _("{count} of {needed}").format(count=len(approvers), needed=state.rules.recovery)),
                       el("td", _("done") if done else button)))
    recoveries = table((_("Member"), _("New key"), _("Approvals"), ""), rows,
                       empty=el("p", _("No key recovery is waiting."), class_="muted"))
    return ledger_page(
        request, v, info, state, _("Keys"), "keys", shown,
        el("h2", _("Invite someone")) if member else None,
        el("p", _("The link gives them your sponsorship; it is shown once. They open it in their own node "
                  "(Join) or run `tally join` with it."), class_="muted") if member else None,
        invite_form, el("h2", _("Your devices")), devices, el("h2", _("Key recoveries")), recoveries)


async def invite(request: web.Request) -> web.Response:
    v, form = await owner_form(request)
    info, state = await readable_ledger(request, v)
    try:
        asked = form_request(Invite, form, ledger=info.id)
        ledger_ops.membership(state, v.did)  # a non-member's sponsorship would count for nothing
        link, invitation = invites.new_invitation(info.id, asked.uses, asked.expires, request.app[CONFIG].wall_ms(),
                                                  invites.check_address(asked.address or ""))
        await request.app[STORE].add_invitation(invitation)
    except (TallyError, ValueError) as exc:
        if isinstance(exc, TallyError):
            refused(request, exc)
        flash(v, "error", f"{exc.code}: {exc.message}" if isinstance(exc, TallyError) else str(exc))
        return see_other(f"/ledgers/{info.id}/keys")
    shown = el("section", el("h2", _("Invitation link")), qr_code(str(link)),
               el("p", el("code", str(link), class_="invitation")),
               el("p", _("Copy it now: it is not shown again. It works {uses} time(s), until {until}.").format(
                   uses=invitation.uses, until=moment(invitation.expires)), class_="muted"), class_="invitation")
    return await keys(request, shown=shown)


async def approve(request: web.Request) -> web.Response:
    v, form = await owner_form(request)
    info, state = await readable_ledger(request, v)
    try:
        asked = form_request(RecoverApprove, form, ledger=info.id)
        found = await request.app[WRITES].found(asked, state)
    except TallyError as exc:
        refused(request, exc)
        flash(v, "error", f"{exc.code}: {exc.message}")
        return see_other(f"/ledgers/{info.id}/keys")
    return await act(request, v, lambda ts: asked.build_with(state, v.did, ts, found),
                     _("Approved: {key} as the key of {member}.").format(key=asked.key,
                                                                          member=short(asked.identity, v.did,
                                                                                       state.names)),
                     f"/ledgers/{info.id}/keys")


async def join_page(request: web.Request) -> web.Response:
    v = viewer(request)
    if not v.owner:  # an invitation link opened in a browser lands here, on the inviter's node
        return page(request, v, _("Join"), el("h1", _("You were invited to a Tally ledger")),
                    el("p", _("Copy this page's address (the whole of it) and paste it into the Join page of your "
                              "own node's dashboard, or run `tally join` with it. This page shows nothing of the "
                              "ledger: the invitation is redeemed by your node.")))
    form = el("form", csrf_field(v), field(_("Invitation link"), "input", name="link", required=True,
                                           placeholder="http://…/join#…"),
              el("button", _("Join"), type="submit"), method="post", action="/join")
    return page(request, v, _("Join"), el("h1", _("Join a ledger")),
                el("p", _("Paste the link a member gave you: your node asks theirs for the invitation, follows the "
                          "ledger and keeps in sync with their node."), class_="muted"), form)


async def join(request: web.Request) -> web.Response:
    v, form = await owner_form(request)
    key = request.app[CONFIG].key
    try:
        if key is None:
            raise LocalError("forbidden", "this node has no key to prove who joins")
        link = invites.Link.parse(form_request(Join, form).link)
        answer = await invites.redeem_there(link, key, v.did)
        ledger: CID = await invites.joined(request.app[STORE], link, answer)
        await request.app[REPLICATION].follow(ledger)
        request.app[REPLICATION].add_peer(link.peer, "invite")
    except TallyError as exc:
        refused(request, exc)
        flash(v, "error", f"{exc.code}: {exc.message}")
        return see_other("/join")
    flash(v, "ok", _("Joined {name}: it appears here once your node has synced it.").format(name=answer["name"]))
    return see_other("/")
