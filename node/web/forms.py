"""The dashboard's forms read as the declared write requests (protocol/requests.py).

A form sends text. Each declared field is read from the form field of its name in a JSON body, trimmed; an
empty optional field is absent, an empty required one is given as "" so that the builder refuses it with
its own code. Decimals are read as the page's locale writes them (a decimal comma), lists one item per
line, an object as TOML text (as in an amendment or rules file), scores from one `<name>:<option>` field
per option. The fields the path names (the ledger, the motion) are handed in.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TypeVar

from node.web.i18n import _, read_decimal
from protocol import CID, LocalError, TallyError, parse_body
from protocol.request_fields import Field, Kind, WriteRequest
from protocol.rules_file import parse_rules_toml

R = TypeVar("R", bound=WriteRequest)


def check_choices(declared: type[WriteRequest], form: Mapping[str, str]) -> None:
    """Refuse a form whose choice (a verdict) is none of its field's: a form the page did not make."""
    for f in declared.fields():
        if f.spec.kind is Kind.CHOICE and f.spec.required:
            f.spec.check_choice(form.get(f.wire, "").strip())


def form_request(declared: type[R], form: Mapping[str, str], **path: CID) -> R:
    """The request `form` (and the page's path, `path`) asks for."""
    values: dict[str, object] = {}
    for f in declared.fields():
        if f.name in path:
            values[f.name] = path[f.name]
        elif f.spec.kind is Kind.BOOL:
            values[f.name] = form.get(f.spec.form or f.wire, "").strip() == f.wire
        elif f.spec.kind is Kind.SCORES:
            prefix = f"{f.spec.form or f.wire}:"
            values[f.name] = scores({k[len(prefix):]: v.strip() for k, v in form.items() if k.startswith(prefix)})
        else:
            text = form.get(f.spec.form or f.wire, "").strip()
            if text or f.spec.required:
                values[f.name] = _value(f, text)
    return declared(**values)


def _value(f: Field, text: str) -> object:
    kind = f.spec.kind
    if kind is Kind.DECIMAL:
        return read_decimal(text)  # "2,5" where the locale writes a decimal comma
    if kind is Kind.CID:
        return CID.parse(text)
    if kind in (Kind.CIDS, Kind.TEXTS):
        lines = [line.strip() for line in text.splitlines() if line.strip()]
        return tuple(CID.parse(line) for line in lines) if kind is Kind.CIDS else tuple(lines)
    if kind is Kind.BODY:
        return parse_body(text)
    if kind is Kind.OBJECT:
        try:
            return parse_rules_toml(text)
        except TallyError as exc:
            raise LocalError(f.spec.code or exc.code, exc.message) from None
    if kind is Kind.INT:
        return int(text)  # ValueError: the page says so
    if kind is Kind.NUMBER:
        return float(text)
    if kind is Kind.CHOICE:
        f.spec.check_choice(text)
    return text


def scores(given: Mapping[str, str]) -> dict[str, int]:
    """A ballot's whole-number scores, option -> text; an option left empty is blank."""
    out = {}
    for option, text in given.items():
        if text:
            if not (text.lstrip("-").isdigit() and len(text) < 10):
                raise LocalError("vote_out_of_range", _("the score for {option} is not a whole number").format(
                    option=repr(option)))
            out[option] = int(text)
    return out
