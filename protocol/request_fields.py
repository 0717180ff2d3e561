"""How a local write request declares its fields once, and the one reading of a JSON body into it.

A write request (protocol/requests.py) is a frozen, keyword-only dataclass; each of its fields is
declared with `param(…)`, which records a `Spec`: its kind, whether it is required, its bounds and its
documentation. Everything that shows or reads a request is made from those specs, so no two of them can
disagree: the API's body validation (`decode` here), the OpenAPI request schemas (node/http/schemas.py),
the dashboard's form parsing (node/web/forms.py) and the CLI's options (node/cli/options.py).
A test (tests/node/test_requests.py) checks that all four name every declared field.

A spec's bounds are the protocol's own constants (SPEC.md §1.1); the builders (protocol/ledger_ops.py,
governance_ops.py) still refuse a value beyond them with the code SPEC gives, so the bound is stated in
the schema and the form and enforced once, where the entry is built.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Any, ClassVar, Self

from .cid import CID
from .dagjson import parse_body, to_json_value
from .decimals import parse_decimal
from .errors import CODES, InvalidData, LocalError


class Kind(Enum):
    """What a field holds; its JSON type is `json`."""

    TEXT = "text"
    DAY = "day"  # YYYY-MM-DD
    DID = "did"  # a did:key
    CHOICE = "choice"  # one of the spec's `choices`
    DECIMAL = "decimal"  # an exact decimal: a JSON string or integer, never a float
    CID = "cid"  # an entry's or a ledger's id (text)
    CIDS = "cids"  # a list of ids
    TEXTS = "texts"  # a list of text
    OBJECT = "object"  # a JSON object (at the CLI: a TOML file; in a form: TOML text)
    SCORES = "scores"  # option -> whole score
    INT = "int"  # a whole number (at the CLI `type=int`)
    NUMBER = "number"  # a JSON number, integer or not (at the CLI `type=float`)
    BOOL = "bool"  # at the CLI a flag; in a form, true when its field (`form`) says the field's name
    BODY = "body"  # an entry's payload: a JSON object in SPEC.md §8's mapping, no floats (at the CLI its JSON text)

    @property
    def json(self) -> str:
        """The JSON type a body must give (a DECIMAL's and a BODY's are checked by their own parsers)."""
        return {Kind.CIDS: "list", Kind.TEXTS: "list", Kind.OBJECT: "dict", Kind.SCORES: "dict", Kind.BODY: "object",
                Kind.DECIMAL: "object", Kind.BOOL: "bool", Kind.INT: "int",
                Kind.NUMBER: "number"}.get(self, "str")


@dataclass(frozen=True, slots=True)
class Spec:
    """One field of a write request.

    `wire` is its name in a JSON body and a form (`from` for the attribute `start`). A field `in_path`
    is named by the API's path (`/ledgers/{ledger}/…`) rather than its body. At the CLI a field is an
    option `cli` (`--action`) or, when `cli` is empty, a positional argument; `switch` makes it a flag
    whose presence gives its first value and absence its second (`--reject`: "reject", else "accept").
    `code` is the refusal of a value of the wrong kind: a choice not listed, a score not whole, a
    decimal that is not one, a TOML object that does not parse (None: the builder refuses it).
    """

    kind: Kind
    doc: str = ""
    required: bool = False
    wire: str = ""
    in_path: bool = False
    min_chars: int | None = None
    max_chars: int | None = None
    max_items: int | None = None
    minimum: int | None = None  # a number's bounds: at least `minimum` (more than it when `above`), at most `maximum`
    maximum: int | None = None
    above: bool = False
    unit: str = ""  # what a NUMBER counts ("days"): a refusal says it
    choices: tuple[str, ...] = ()
    code: str | None = None
    cli: str = ""
    metavar: str = ""
    cli_help: str | None = None  # where the CLI says it in its own terms (naming its flags); else `doc`
    switch: tuple[str, str | None] | None = None
    group: str = ""  # CLI options of one group are mutually exclusive (`--at` or `--from`)
    form: str = ""  # its name in a dashboard form, when not `wire` (scores: `score:<option>` fields)

    def __post_init__(self) -> None:
        if self.code is not None and self.code not in CODES:  # a typo'd code fails at import, not at a refusal
            raise ValueError(f"unregistered error code {self.code!r}")

    @property
    def help(self) -> str:
        return self.doc if self.cli_help is None else self.cli_help

    def check_choice(self, value: str) -> None:
        if self.choices and self.code is not None and value not in self.choices:
            raise LocalError.declared(self.code, f"{self.wire} is " + " or ".join(f'"{c}"' for c in self.choices))


_SPEC = "tally.spec"  # where a dataclass field keeps its Spec
_JSON_TYPES: dict[str, type] = {"str": str, "list": list, "dict": dict, "bool": bool, "int": int}


def param(kind: Kind, doc: str = "", *, required: bool = False, default: Any = None, **more: Any) -> Any:
    """A request field declared by its Spec (`required` ones have no default)."""
    if required:
        return dataclasses.field(metadata={_SPEC: (kind, doc, True, more)})
    return dataclasses.field(default=default, metadata={_SPEC: (kind, doc, False, more)})


@dataclass(frozen=True, slots=True)
class Field:
    """A declared field: its attribute name and Spec."""

    name: str
    spec: Spec

    @property
    def wire(self) -> str:
        return self.spec.wire


class WriteRequest:
    """The base of every declared write request (frozen keyword-only dataclasses)."""

    __slots__ = ()
    #: what the API and the dashboard say the write does (the OpenAPI summary)
    SUMMARY: ClassVar[str] = ""
    #: its API route under /api/v1, the path's fields in braces (SPEC.md §12)
    PATH: ClassVar[str] = ""
    #: an empty body reads as `{}` (a write the path says all of, whose API never asked for a body)
    BODY_OPTIONAL: ClassVar[bool] = False
    #: at the CLI, a mode of a command that does something else without it (`tally invites --revoke ID`): its
    #: options are not required there
    MODE: ClassVar[bool] = False
    #: a node's call to another (redeeming an invitation): no command or form of its own
    PEER: ClassVar[bool] = False

    def api_path(self) -> str:
        """PATH with this request's path fields filled in (what the CLI posts to a running node)."""
        return self.PATH.format(**{f.wire: getattr(self, f.name) for f in self.fields() if f.spec.in_path})

    @classmethod
    def fields(cls) -> tuple[Field, ...]:
        found = []
        for f in dataclasses.fields(cls):  # type: ignore[arg-type]
            kind, doc, required, more = f.metadata[_SPEC]
            found.append(Field(f.name, Spec(kind, doc, required, **{"wire": f.name, **more})))
        return tuple(found)

    @classmethod
    def field(cls, name: str) -> Field:
        (found,) = [f for f in cls.fields() if f.name == name]
        return found

    @classmethod
    def body_fields(cls) -> tuple[Field, ...]:
        return tuple(f for f in cls.fields() if not f.spec.in_path)

    @classmethod
    def decode(cls, body: Mapping[str, object], path: Mapping[str, str]) -> Self:
        """The request a JSON `body` (and the API path's `path` values) ask for; `bad_request` for an unknown,
        missing or mistyped field, the spec's `code` for a value of the wrong kind."""
        values: dict[str, object] = {f.name: CID.parse(path[f.wire]) if f.spec.kind is Kind.CID else path[f.wire]
                                     for f in cls.fields() if f.spec.in_path}
        declared = cls.body_fields()
        unknown = sorted(set(body) - {f.wire for f in declared})
        if unknown:
            raise LocalError("bad_request", f"unknown field {unknown[0]!r}")
        for f in declared:
            expected = _JSON_TYPES.get(f.spec.kind.json)
            value = body.get(f.wire)
            # JSON true/false are Python ints: a whole-number field refuses them by name
            if f.wire in body and expected is not None and (
                    not isinstance(value, expected) or (expected is int and isinstance(value, bool))):
                raise LocalError("bad_request", f"field {f.wire!r} must be of type {f.spec.kind.json}")
        for f in declared:
            if f.wire in body:
                values[f.name] = _json_value(f, body[f.wire])
            elif f.spec.required:
                raise LocalError("bad_request", f"missing field {f.wire!r}")
        return cls(**values)

    def to_json(self) -> dict[str, Any]:
        """The body the API reads back as this request (the path's fields are the path's)."""
        out: dict[str, Any] = {}
        for f in self.body_fields():
            value = getattr(self, f.name)
            if value is None or (not f.spec.required and value in ((), {}, False)):
                continue
            if f.spec.kind is Kind.BODY:
                value = to_json_value(value)
            elif isinstance(value, CID):
                value = str(value)
            elif isinstance(value, tuple):
                value = [str(v) if isinstance(v, CID) else v for v in value]
            elif isinstance(value, Mapping):
                value = dict(value)
            out[f.wire] = value
        return out


def _json_value(f: Field, value: object) -> object:
    spec = f.spec
    if spec.kind is Kind.DECIMAL:
        if isinstance(value, bool | float) or not isinstance(value, str | int):
            try:
                parse_decimal(value, f.wire)
            except InvalidData as exc:
                raise LocalError.declared(spec.code or exc.code, exc.message) from None
        return value
    if spec.kind is Kind.NUMBER:  # the builder checks the bounds
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise LocalError.declared(spec.code or "bad_request", f"{f.wire} is a number" + (
                f" of {spec.unit}" if spec.unit else ""))
        return value
    if spec.kind is Kind.BODY:  # re-serialized: a float stays a float, and is refused (bad_body)
        return parse_body(json.dumps(value))
    if spec.kind is Kind.CID:
        assert isinstance(value, str)
        return CID.parse(value.strip())
    if spec.kind in (Kind.CIDS, Kind.TEXTS):
        assert isinstance(value, list)
        if not all(isinstance(v, str) for v in value):
            what = "entry ids" if spec.kind is Kind.CIDS else "text"
            raise LocalError("bad_request", f"field {f.wire!r} must be a list of {what}")
        return tuple(CID.parse(v.strip()) for v in value) if spec.kind is Kind.CIDS else tuple(value)
    if spec.kind is Kind.SCORES:
        assert isinstance(value, dict)
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in value.values()):
            raise LocalError.declared(spec.code or "bad_request", f"{f.wire} are whole numbers")
        return dict(value)
    if spec.kind is Kind.CHOICE:
        assert isinstance(value, str)
        spec.check_choice(value)
    return value
