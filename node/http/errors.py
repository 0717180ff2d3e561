"""The HTTP status of every error code, and the API's error body `{"error": {"code": …, "message": …}}`."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Final

from aiohttp import web

from protocol.errors import ERRORS

#: The HTTP status of every error code: its row of the one table (protocol/errors.py ERRORS).
STATUS: Final[Mapping[str, int]] = MappingProxyType({e.code: e.status for e in ERRORS})

#: The code for an HTTP error aiohttp raises itself (unknown route, wrong method, body too large).
HTTP_CODES: Final[Mapping[int, str]] = {
    400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
    405: "method_not_allowed", 413: "oversize", 429: "rate_limited",
}


def error_response(code: str, message: str, status: int | None = None) -> web.Response:
    return web.json_response(
        {"error": {"code": code, "message": message}}, status=status or STATUS.get(code, 500)
    )
