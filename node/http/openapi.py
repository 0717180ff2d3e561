"""The API's OpenAPI 3.1 document, built from the routes themselves.

Each handler carries its description: an `Operation` used as a decorator right
above the handler (`@Operation("Get one ledger", …)`). `openapi_document` walks
the application's routes and reads each handler's description, so a route
cannot be added without one: the document refuses to build (and a test fails)
when a route has none, or when a path parameter is not described.

Errors are described by their stable codes (SPEC.md §9): each operation lists
the codes it may answer with, grouped here by HTTP status; the `Error` schema's
code enum is protocol.errors.CODES. Codes every operation of a kind can answer
are added here, not repeated per handler: `internal` everywhere, `unauthorized`
and `rate_limited` everywhere too (a token sent is checked on every route),
`bad_request`, `bad_body`, `oversize` and `request_timeout` where a JSON body is read.

The schemas of the bodies (the components answers refer to, and those made from
the declared write requests) are node/http/schemas.py.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Final, TypeVar

from aiohttp import hdrs, web

from node.http.schemas import (
    CID_SCHEMA,
    COMPONENTS,
    Schema,
    component_name,
    field_schema,
    ref,
    request_schema,
)
from protocol import CODES
from protocol.request_fields import WriteRequest

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
H = TypeVar("H", bound=Handler)

OPENAPI_VERSION: Final = "3.1.0"
_ATTRIBUTE: Final = "tally_operation"  # where a handler keeps its Operation
BEARER: Final = "bearerToken"  # the security scheme's name


class Access(Enum):
    """Who may call an operation (SPEC.md §12, Access)."""

    PUBLIC = "public"  # no token needed, none checked
    OPTIONAL = "optional"  # a token shows more (members-only ledgers); a wrong one is 401
    OWNER = "owner"  # the owner's token is required


@dataclass(frozen=True, slots=True)
class Param:
    """A path or query parameter."""

    name: str
    where: str  # "path" or "query"
    schema: Schema
    description: str
    required: bool = False

    def __post_init__(self) -> None:
        if self.where not in ("path", "query"):
            raise ValueError(f"parameter {self.name}: where is 'path' or 'query', not {self.where!r}")

    def as_openapi(self) -> dict[str, Any]:
        return {
            "name": self.name, "in": self.where, "required": self.required or self.where == "path",
            "description": self.description, "schema": dict(self.schema),
        }


@dataclass(frozen=True, slots=True)
class Operation:
    """One route's OpenAPI description; decorate the handler with it.

    `response` is the JSON schema of the success body (None: no JSON body, as
    for a protocol switch); `errors` the codes the handler itself may answer
    with beyond those every operation of its kind gets (see the module doc).
    """

    summary: str
    response: Schema | None
    status: int = 200
    access: Access = Access.PUBLIC
    parameters: tuple[Param, ...] = ()
    body: Schema | None = None  # the JSON request body's schema (one not declared in protocol/requests.py)
    request: type[WriteRequest] | None = None  # a declared write: its body's schema is made from it
    errors: tuple[str, ...] = ()
    description: str = ""
    headers: Mapping[str, str] = field(default_factory=dict)  # success response headers: name -> description
    links: Mapping[str, Schema] = field(default_factory=dict)  # OpenAPI links of the success response
    media_types: tuple[str, ...] = ()  # other success media types: +json ones as objects, the rest (text/csv) as text

    def __post_init__(self) -> None:
        unknown = [code for code in self.errors if code not in CODES]
        if unknown:
            raise ValueError(f"{self.summary}: unknown error codes {unknown}")

    def __call__(self, handler: H) -> H:
        """Attach this description to `handler` (used as a decorator)."""
        vars(handler)[_ATTRIBUTE] = self
        return handler

    def error_codes(self) -> tuple[str, ...]:
        codes = [*self.errors, "unauthorized", "rate_limited"]  # a wrong token is refused on every route
        if self.body is not None or self.request is not None:
            codes += ["bad_request", "bad_body", "oversize", "request_timeout"]
        codes.append("internal")
        return tuple(dict.fromkeys(codes))


def operation_of(handler: object) -> Operation | None:
    """The description a handler was decorated with, if any."""
    found = getattr(handler, _ATTRIBUTE, None)
    return found if isinstance(found, Operation) else None


class UndocumentedRoute(Exception):
    """A route whose handler has no Operation, or whose description does not fit its path."""


# ---- parameters and links ---------------------------------------------------------


def links_to(param: str, source: str, *operation_ids: str) -> dict[str, Schema]:
    """OpenAPI links from a success response to operations that take `param` from it (`$response.body#/id`)."""
    return {op_id: {"operationId": op_id, "parameters": {param: source}} for op_id in operation_ids}


LEDGER_PARAM: Final = Param("ledger", "path", CID_SCHEMA, "the ledger's id (its genesis entry's CID)")
ENTRY_PARAM: Final = Param("entry", "path", CID_SCHEMA, "an entry's id")


def query_params(request: type[WriteRequest]) -> tuple[Param, ...]:
    """A declared write's body fields as query parameters (a preview of it: nothing is written)."""
    return tuple(Param(f.wire, "query", {k: v for k, v in field_schema(f.spec).items() if k != "description"},
                       f.spec.doc, required=f.spec.required) for f in request.body_fields())


# ---- the document ----------------------------------------------------------------


def openapi_document(
    routes: Iterable[web.AbstractRoute], *, version: str, status: Mapping[str, int]
) -> dict[str, Any]:
    """The OpenAPI 3.1 document of `routes` (HEAD routes are left out: GET answers them too).

    `status` maps each error code to its HTTP status (node.http.ledger.STATUS); a code it
    lacks answers 500, as the API's error responses do.
    """
    paths: dict[str, dict[str, Any]] = {}
    seen_ids: set[str] = set()
    requests: dict[str, Schema] = {}  # the declared write requests' body schemas, by name
    for route in routes:
        method = route.method.upper()
        if method == hdrs.METH_HEAD or route.resource is None:
            continue
        path = route.resource.canonical
        op = operation_of(route.handler)
        if op is None:
            raise UndocumentedRoute(
                f"{method} {path}: handler {getattr(route.handler, '__qualname__', route.handler)!r} has no OpenAPI "
                "description; decorate it with @Operation(…) (node/http/openapi.py)"
            )
        op_id = getattr(route.handler, "__name__", "")
        if not op_id or op_id in seen_ids:
            raise UndocumentedRoute(f"{method} {path}: operation id {op_id!r} is missing or not unique")
        seen_ids.add(op_id)
        _check_path_params(method, path, op)
        paths.setdefault(path, {})[method.lower()] = _operation(op, op_id, status)
        if op.request is not None:
            requests[component_name(op.request)] = request_schema(op.request)
    for path, path_item in paths.items():
        for method, described in path_item.items():
            for response in described["responses"].values():
                for link in response.get("links", {}).values():
                    if link["operationId"] not in seen_ids:
                        raise UndocumentedRoute(f"{method.upper()} {path}: a link to an unknown operation "
                                                f"{link['operationId']!r}")
    return {
        "openapi": OPENAPI_VERSION,
        "info": {
            "title": "Tally node API",
            "version": version,
            "description": "A Tally node's JSON API (SPEC.md §12). Errors are "
            '`{"error": {"code": …, "message": …}}` with a stable code (SPEC.md §9).',
            "license": {"name": "AGPL-3.0-or-later", "identifier": "AGPL-3.0-or-later"},
        },
        "paths": dict(sorted(paths.items())),
        "components": {
            "schemas": {name: dict(schema) for name, schema in [*COMPONENTS.items(), *sorted(requests.items())]},
            "securitySchemes": {
                BEARER: {"type": "http", "scheme": "bearer",
                         "description": "the owner's API token, `<home>/api.token`"},
            },
        },
    }


def _check_path_params(method: str, path: str, op: Operation) -> None:
    in_path = {part[1:-1].split(":")[0] for part in path.split("/") if part.startswith("{") and part.endswith("}")}
    described = {p.name for p in op.parameters if p.where == "path"}
    if in_path != described:
        raise UndocumentedRoute(
            f"{method} {path}: path parameters {sorted(in_path)} but described {sorted(described)}"
        )


def _operation(op: Operation, op_id: str, status: Mapping[str, int]) -> dict[str, Any]:
    success: dict[str, Any] = {"description": op.summary}
    if op.response is not None:
        success["content"] = {"application/json": {"schema": dict(op.response)}}
    for media_type in op.media_types:  # JSON-based (application/ld+json): an object; else text (text/csv)
        json_based = media_type.split(";")[0].strip().endswith(("/json", "+json"))
        success.setdefault("content", {})[media_type] = {"schema": {"type": "object" if json_based else "string"}}
    if op.headers:
        success["headers"] = {name: {"description": text, "schema": {"type": "string"}}
                              for name, text in op.headers.items()}
    if op.links:
        success["links"] = {name: dict(link) for name, link in op.links.items()}
    responses: dict[str, Any] = {str(op.status): success}
    by_status: dict[int, list[str]] = {}
    for code in op.error_codes():
        by_status.setdefault(status.get(code, 500), []).append(code)
    for http_status, codes in sorted(by_status.items()):
        responses[str(http_status)] = {
            "description": ", ".join(f"`{code}`" for code in codes),
            "content": {"application/json": {"schema": _error_schema(codes)}},
        }
    result: dict[str, Any] = {"operationId": op_id, "summary": op.summary}
    if op.description:
        result["description"] = op.description
    if op.parameters:
        result["parameters"] = [p.as_openapi() for p in op.parameters]
    body = ref(component_name(op.request)) if op.request is not None else op.body
    if body is not None:
        needed = op.request is None or not op.request.BODY_OPTIONAL
        result["requestBody"] = {"required": needed, "content": {"application/json": {"schema": dict(body)}}}
    result["responses"] = responses
    result["security"] = {
        Access.PUBLIC: [],
        Access.OPTIONAL: [{}, {BEARER: []}],
        Access.OWNER: [{BEARER: []}],
    }[op.access]
    return result


def _error_schema(codes: list[str]) -> Schema:
    """The Error schema, its code narrowed to `codes`."""
    return {"allOf": [ref("Error"), {"properties": {"error": {"properties": {"code": {"enum": codes}}}}}]}
