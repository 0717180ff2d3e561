"""Each declared write (protocol/requests.py) is read and shown the same way by all four of its faces: the API's
body validation (over a loopback socket), the served OpenAPI document, the dashboard's form parsing and the
CLI's options. A field added to a declaration and missed by one of them fails here."""

from __future__ import annotations

import argparse
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from inprocess_api import InProcessApi, inprocess_api

from node.cli.options import request_of
from node.cli.parser import build_parser
from node.http.openapi import operation_of
from node.http.schemas import component_name
from node.web.forms import form_request
from protocol import SigningKey
from protocol.request_fields import Field, Kind, WriteRequest
from protocol.requests import WRITES, InviteRevoke

CID_TEXT = "bafyreigbtj4x7ip5legnfznufuopl4sg4knzc2cof6duas4b3q2fy6swua"
DID_TEXT = "did:key:z6MkehRgf7yJbgaGfYsdoAsKdBPE3dj2CYhowQdcjqSJgvVd"
#: The command each declared write is (`tally <words…>`).
COMMANDS: dict[str, tuple[str, ...]] = {
    "Contribute": ("contribute",), "Endorse": ("endorse",), "Admit": ("member", "admit"),
    "Leave": ("member", "leave"), "Name": ("member", "name"), "MotionCreate": ("motion", "create"),
    "MotionClose": ("motion", "close"), "Vote": ("vote",), "PledgeCreate": ("pledge", "create"),
    "RecordDistribution": ("distribute",), "LedgerCreate": ("ledger", "create"), "Follow": ("follow",),
    "AppendEntry": ("append",), "Erase": ("erase",),
    "RecoverApprove": ("recover", "approve"), "Invite": ("invite",), "Join": ("join",),
    "InviteRevoke": ("invites",),
}
#: a value of another JSON type than a kind's
#: values of the wrong JSON type per declared kind (JSON true is a Python int: a whole number refuses it too)
WRONG_JSON: dict[str, tuple[Any, ...]] = {"str": (7,), "list": ("x",), "dict": ([],), "bool": ("yes", 1),
                                          "int": ("7", True)}


#: the writes a member asks for by a command and a form (not a node's call to another)
FACED = tuple(w for w in WRITES if not w.PEER)


def test_every_declared_write_has_a_command() -> None:
    assert set(COMMANDS) == {w.__name__ for w in FACED}


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[InProcessApi]:
    async with inprocess_api(tmp_path, SigningKey(bytes(range(32))), SigningKey(bytes(32))) as running:
        yield running


def sample_text(f: Field) -> str:
    return {Kind.CID: CID_TEXT, Kind.CIDS: CID_TEXT, Kind.DID: DID_TEXT, Kind.DECIMAL: "2.5", Kind.DAY: "2024-01-31",
            Kind.CHOICE: f.spec.choices[-1] if f.spec.choices else "", Kind.OBJECT: "[validation]\naccept = 1\n",
            Kind.BODY: '{"text": "hello"}', Kind.INT: "3", Kind.NUMBER: "2.5",
            }.get(f.spec.kind, "some text")


def path_of(declared: type[WriteRequest]) -> str:
    return "/api/v1" + declared.PATH.format(**{f.wire: CID_TEXT for f in declared.fields() if f.spec.in_path})


@pytest.mark.parametrize("declared", WRITES, ids=lambda w: w.__name__)
async def test_the_api_reads_every_declared_field_and_no_other(api: InProcessApi, declared: type[WriteRequest]
                                                               ) -> None:
    routes = [r for r in api.app.router.routes() if r.method == "POST" and r.resource is not None
              and r.resource.canonical == "/api/v1" + declared.PATH]
    assert len(routes) == 1, f"no POST route at {declared.PATH}"
    op = operation_of(routes[0].handler)
    assert op is not None and op.request is declared
    path = path_of(declared).removeprefix("/api/v1")
    status, answer = await api.call("POST", path, {"not_declared": 1})
    assert (status, answer["error"]["message"]) == (400, "unknown field 'not_declared'")
    for f in declared.body_fields():
        for wrong in WRONG_JSON.get(f.spec.kind.json, ()):
            status, answer = await api.call("POST", path, {f.wire: wrong})
            assert status == 400 and answer["error"]["message"].startswith(f"field {f.wire!r}"), (f.wire, answer)
    status, answer = await api.call("POST", path)  # no body at all
    if declared.BODY_OPTIONAL:  # read as {}: refused further on, for what the path names is not stored here
        assert status == 404 and answer["error"]["code"] in ("unknown_entry", "unknown_invitation"), answer
    else:
        assert status == 400 and answer["error"]["message"].startswith("the request body is not JSON"), answer
    required = [f.wire for f in declared.body_fields() if f.spec.required]
    if required:
        status, answer = await api.call("POST", path, {})
        assert (status, answer["error"]["message"]) == (400, f"missing field {required[0]!r}")


@pytest.mark.parametrize("declared", WRITES, ids=lambda w: w.__name__)
async def test_the_openapi_body_is_the_declaration(api: InProcessApi, declared: type[WriteRequest]) -> None:
    status, doc = await api.call("GET", "/openapi.json")
    assert status == 200
    schema = doc["components"]["schemas"][component_name(declared)]
    body = declared.body_fields()
    assert list(schema["properties"]) == [f.wire for f in body]
    assert schema.get("required", []) == [f.wire for f in body if f.spec.required]
    assert schema["additionalProperties"] is False
    for f in body:
        prop = schema["properties"][f.wire]
        assert prop.get("maxLength") == f.spec.max_chars and prop.get("maxItems") == f.spec.max_items
        assert prop.get("enum", []) == list(f.spec.choices)
        if f.spec.doc:
            assert prop["description"] == f.spec.doc
    operation = doc["paths"]["/api/v1" + declared.PATH]["post"]
    assert operation["requestBody"]["required"] is not declared.BODY_OPTIONAL
    assert operation["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": f"#/components/schemas/{component_name(declared)}"}


@pytest.mark.parametrize("declared", FACED, ids=lambda w: w.__name__)
def test_the_form_reads_every_declared_field(declared: type[WriteRequest]) -> None:
    form = {f.spec.form or f.wire: sample_text(f) for f in declared.fields() if f.spec.kind is not Kind.SCORES}
    form.update({f"{f.spec.form or f.wire}:yes": "3" for f in declared.fields() if f.spec.kind is Kind.SCORES})
    form.update({f.spec.form or f.wire: f.wire for f in declared.fields() if f.spec.kind is Kind.BOOL})
    request = form_request(declared, form)
    for f in declared.fields():
        assert getattr(request, f.name) not in (None, (), {}, ""), f"the form did not read {f.wire}"


def subparser(words: tuple[str, ...]) -> argparse.ArgumentParser:
    parser = build_parser()
    for word in words:
        (sub,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        parser = sub.choices[word]
    return parser


@pytest.mark.parametrize("declared", FACED, ids=lambda w: w.__name__)
def test_the_cli_has_an_option_for_every_declared_field(declared: type[WriteRequest], tmp_path: Path) -> None:
    words = COMMANDS[declared.__name__]
    parser = subparser(words)
    by_dest = {a.dest: a for a in parser._actions}
    argv: list[str] = []
    positionals: list[str] = []
    for f in declared.fields():
        action = by_dest.get(f.name)
        assert action is not None, f"tally {' '.join(words)} has no argument for {f.wire}"
        assert action.option_strings == ([f.spec.cli] if f.spec.cli else []), f.wire
        assert (action.help or "") == f.spec.help.replace("%", "%%"), f.wire
        assert (action.metavar or "") == f.spec.metavar, f.wire
        value = sample_text(f)
        if f.spec.kind is Kind.OBJECT:
            (tmp_path / "object.toml").write_text(value)
            value = str(tmp_path / "object.toml")
        if f.spec.kind is Kind.SCORES:
            value = "yes=3"
        if not f.spec.cli:
            positionals.append(value)
        elif f.spec.switch is not None or f.spec.kind is Kind.BOOL:
            argv.append(f.spec.cli)
        elif not f.spec.group or not any(g.spec.group == f.spec.group for g in declared.fields()
                                         if g.spec.cli in argv):
            argv += [f.spec.cli, value]
    request = request_of(declared, build_parser().parse_args([*words, *positionals, *argv]))
    for f in declared.fields():
        if f.spec.group and f.spec.cli not in argv:
            continue  # excluded by another option of its group
        assert getattr(request, f.name) not in (None, (), {}, ""), f"the CLI did not read {f.wire}"


async def test_an_invitation_is_refused_as_before_its_declaration(api: InProcessApi) -> None:
    """The bounds the declaration states are still enforced where the invitation is made, with the same
    codes and messages as before it was declared."""
    ledger = await api.created("/ledgers", {"name": "Coop"})
    path = f"/ledgers/{ledger}/invitations"
    for expires in ("7", True, None):
        status, answer = await api.call("POST", path, {"expires": expires})
        assert (status, answer["error"]) == (400, {"code": "bad_request", "message": "expires is a number of days"})
    for body, message in (({"uses": 0}, "uses must be 1 to 1000"),
                          ({"expires": 0}, "expires must be more than 0 and at most 365 days")):
        status, answer = await api.call("POST", path, body)
        assert (status, answer["error"]["message"]) == (400, message)
    status, answer = await api.call("POST", path, {"uses": 2, "expires": 0.5, "address": "http://127.0.0.1:7410"})
    assert status == 201 and answer["uses"] == 2 and answer["link"].startswith("http://127.0.0.1:7410/join#")
    status, revoked = await api.call("POST", f"/invitations/{answer['id']}/revoke")  # no body, as before
    assert (status, revoked["id"], revoked["state"]) == (200, answer["id"], "revoked")
    status, again = await api.call("POST", f"/invitations/{answer['id']}/revoke", {})
    assert (status, again["error"]["code"]) == (404, "unknown_invitation")


def test_revoking_is_a_mode_of_tally_invites() -> None:
    """Without --revoke, `tally invites` lists: the declared option is not required there."""
    assert build_parser().parse_args(["invites"]).invitation is None
    assert request_of(InviteRevoke, build_parser().parse_args(["invites", "--revoke", "ab12"])).invitation == "ab12"
