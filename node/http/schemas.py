"""The JSON schemas of the API's bodies, for its OpenAPI document (node/http/openapi.py).

The building blocks (a CID, a did:key, a time in ms, a count), the components answers refer to by name
(`Ledger`, `Entry`, `Peer`, `State`, the `Error` every error answer is, …), and the schemas made from the
declared write requests (protocol/requests.py): a request's body schema, and each field's schema from its spec
(its kind, bounds and documentation), so that the document and the API's validation cannot drift apart.

Response rows list their fields as required but allow more: clients ignore fields they do not know, so a field
can be added without breaking them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from protocol import CODES
from protocol.request_fields import Kind, Spec, WriteRequest

Schema = Mapping[str, Any]


def ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def array_of(name: str, key: str) -> Schema:
    """`{"<key>": [<name>…]}`."""
    return {"type": "object", "required": [key], "properties": {key: {"type": "array", "items": ref(name)}}}


_STRING: Final[Schema] = {"type": "string"}
_NULLABLE_STRING: Final[Schema] = {"type": ["string", "null"]}
_COUNT: Final[Schema] = {"type": "integer", "minimum": 0}
_MS: Final[Schema] = {"type": "integer", "minimum": 0, "description": "milliseconds since 1970-01-01 UTC"}
_NULLABLE_MS: Final[Schema] = {"type": ["integer", "null"], "minimum": 0, "description": _MS["description"]}
CID_SCHEMA: Final[Schema] = {"type": "string", "description": "a CIDv1 in base32 (`bafyrei…`)", "examples": [
    "bafyreigbtj4x7ip5legnfznufuopl4sg4knzc2cof6duas4b3q2fy6swua"]}
DID_SCHEMA: Final[Schema] = {"type": "string", "description": "a did:key (`did:key:z6Mk…`)", "examples": [
    "did:key:z6MkehRgf7yJbgaGfYsdoAsKdBPE3dj2CYhowQdcjqSJgvVd"]}
_BASE64: Final[Schema] = {"type": "string", "contentEncoding": "base64"}


def _row(properties: Mapping[str, Schema], description: str) -> Schema:
    return {"type": "object", "description": description, "required": list(properties), "properties": dict(properties)}


_DECIMAL: Final[Schema] = {"type": "string", "description": "an exact decimal, e.g. \"2.5\""}
_CONTRIBUTION_STATUS: Final[Schema] = {"type": "string", "enum": ["final", "pending", "rejected", "corrected"]}

CREATED: Final[Schema] = {"type": "object", "required": ["id"], "properties": {"id": CID_SCHEMA}}

COMPONENTS: Final[Mapping[str, Schema]] = {
    "Error": {
        "type": "object",
        "description": "every error answer; clients rely on `code`, never on `message`",
        "required": ["error"],
        "additionalProperties": False,
        "properties": {
            "error": {
                "type": "object",
                "required": ["code", "message"],
                "additionalProperties": False,
                "properties": {
                    "code": {"type": "string", "enum": sorted(CODES), "description": "a stable code (SPEC.md §9)"},
                    "message": {"type": "string", "minLength": 1, "description": "for people"},
                },
            }
        },
    },
    "Identity": _row(
        {"id": DID_SCHEMA, "version": _STRING, "protocol": {"type": "integer", "const": 1}},
        "who this node is: its did:key, its software version and the protocol version",
    ),
    "Ledger": _row(
        {
            "id": CID_SCHEMA, "name": _STRING, "visibility": {"type": "string", "enum": ["members", "public"]},
            "founder": DID_SCHEMA, "created": _MS, "entries": _COUNT,
        },
        "a ledger stored here, as `tally ledger list --json` prints it",
    ),
    "Entry": _row(
        {
            "id": CID_SCHEMA, "author": DID_SCHEMA, "ledger": CID_SCHEMA,
            "seq": {"type": "integer", "minimum": 1}, "prev": {**_NULLABLE_STRING, "description": "the previous "
                                                              "entry's id; null for seq 1"},
            "ts": _MS, "kind": _STRING,
            "body": {"type": ["object", "null"], "description": "the payload in the DAG-JSON mapping (SPEC.md §8); "
                     "null once erased"},
            "header_raw": _BASE64, "payload_raw": {**_BASE64, "type": ["string", "null"]},
        },
        "one signed entry, as `tally log --json` prints it; `*_raw` are the exact stored blocks",
    ),
    "Fork": _row(
        {
            "author": DID_SCHEMA, "ledger": CID_SCHEMA, "seq": {"type": "integer", "minimum": 1},
            "a": CID_SCHEMA, "b": CID_SCHEMA, "proof": {**_BASE64, "description": "the fork proof (SPEC.md §7)"},
        },
        "two validly signed entries of one author at one seq",
    ),
    "Peer": _row(
        {
            "id": {**_NULLABLE_STRING, "description": "its did:key; null until a handshake told who it is"},
            "address": _NULLABLE_STRING,
            "found": {"type": "string", "enum": ["flag", "config", "mdns", "inbound", "invite"]},
            "connected": {"type": "boolean"}, "last_seen": _NULLABLE_MS, "last_sync": _NULLABLE_MS,
            "entries_behind": _COUNT, "entries_in": _COUNT, "entries_out": _COUNT, "bytes_in": _COUNT,
            "bytes_out": _COUNT, "errors": {"type": "array", "items": _STRING, "description": "latest last"},
        },
        "a peer this node links with, as `tally peers --json` prints it",
    ),
    "Healing": _row(
        {
            "rounds": {**_COUNT, "description": "healing rounds completed since the node started"},
            "last_round": _NULLABLE_MS, "waiting": {**_COUNT, "description": "quarantined entries (SPEC.md §10)"},
            "restored": {**_COUNT, "description": "damaged entries replaced by a peer's good copy"},
            "asked": {"type": "array", "description": "the latest asks (a bounded number), oldest first", "items": _row(
                {"entry": CID_SCHEMA, "peer": DID_SCHEMA, "at": _MS}, "a peer asked for a damaged entry")},
        },
        "what healing the store did since the node started (SPEC.md §10)",
    ),
    "Contribution": _row(
        {
            "id": CID_SCHEMA, "author": DID_SCHEMA, "seq": {"type": "integer", "minimum": 1}, "ts": _MS,
            "action": _STRING, "provider": _STRING, "receiver": _STRING, "quantity": _DECIMAL, "unit": _STRING,
            "classification": _NULLABLE_STRING, "at": _NULLABLE_STRING, "from": _NULLABLE_STRING,
            "to": _NULLABLE_STRING, "note": _NULLABLE_STRING, "claim": _DECIMAL, "status": _CONTRIBUTION_STATUS,
            "accepts": {"type": "array", "items": DID_SCHEMA}, "rejects": {"type": "array", "items": DID_SCHEMA},
            "corrects": _NULLABLE_STRING, "corrected_by": _NULLABLE_STRING,
        },
        "a contribution (a `vf.event` entry) with its claim value and validation status",
    ),
    "State": _row(
        {
            "ledger": CID_SCHEMA, "rules": {"type": "object"}, "members": {"type": "array", "items": DID_SCHEMA},
            "left": {"type": "array", "items": DID_SCHEMA},
            "names": {"type": "object", "additionalProperties": {"type": "string"},
                      "description": "did:key -> the name that member gave themselves (`member.about`)"},
            "totals": {"type": "object"},
            "pending": {"type": "array"}, "invalid": {"type": "array"}, "sponsorships": {"type": "object"},
            "waiting": {"type": "array"}, "quarantined": {"type": "array"},
            "forks": {"type": "array", "items": ref("Fork")}, "digest": _STRING,
            "distributions": {"type": "array", "description": "recorded distributions, oldest first; `status` "
                              "`valid` or `conflicting` (counts nothing, SPEC.md §17.5)"},
            "keys": {"type": "object", "description": "identity did:key -> its main `key`, whether it `committed` "
                     "to a next key, and its `devices` (SPEC.md §19.7); only identities with key events"},
        },
        "a ledger's state computed from its entries (SPEC.md §16), as `tally state --json` prints it",
    ),
}


# ---- declared write requests (protocol/requests.py) ------------------------------


def component_name(request: type[WriteRequest]) -> str:
    """The name of a declared write's body schema among the document's components (`ContributeRequest`)."""
    return f"{request.__name__}Request"


def request_schema(request: type[WriteRequest]) -> Schema:
    """The JSON schema of a declared write's body, made from its fields' specs."""
    body = request.body_fields()
    schema: dict[str, Any] = {"type": "object", "description": request.SUMMARY, "additionalProperties": False,
                              "properties": {f.wire: field_schema(f.spec) for f in body}}
    required = [f.wire for f in body if f.spec.required]
    if required:
        schema["required"] = required
    return schema


def field_schema(spec: Spec) -> Schema:
    """One declared field's schema: its kind's, its bounds and its documentation."""
    schema: dict[str, Any] = dict(_KIND_SCHEMAS[spec.kind])
    if spec.choices:
        schema["enum"] = list(spec.choices)
    low = "exclusiveMinimum" if spec.above else "minimum"
    for key, bound in (("minLength", spec.min_chars), ("maxLength", spec.max_chars), ("maxItems", spec.max_items),
                       (low, spec.minimum), ("maximum", spec.maximum)):
        if bound is not None:
            schema[key] = bound
    if spec.doc:
        schema["description"] = spec.doc
    return schema


_KIND_SCHEMAS: Final[Mapping[Kind, Schema]] = {
    Kind.TEXT: _STRING,
    Kind.DAY: {"type": "string", "format": "date", "pattern": "^[0-9]{4}-[0-9]{2}-[0-9]{2}$",
               "description": "a day, YYYY-MM-DD (UTC), inclusive"},
    Kind.DID: DID_SCHEMA,
    Kind.CHOICE: _STRING,
    Kind.DECIMAL: {"type": ["string", "integer"], "description": "an exact decimal; never a float"},
    Kind.CID: CID_SCHEMA,
    Kind.CIDS: {"type": "array", "items": CID_SCHEMA},
    Kind.TEXTS: {"type": "array", "items": _STRING},
    Kind.OBJECT: {"type": "object"},
    Kind.SCORES: {"type": "object", "additionalProperties": {"type": "integer"}},
    Kind.BOOL: {"type": "boolean"},
    Kind.INT: {"type": "integer"},
    Kind.NUMBER: {"type": "number"},
    Kind.BODY: {"type": "object"},
}
