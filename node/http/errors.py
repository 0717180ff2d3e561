"""The HTTP status of every error code, and the API's error body `{"error": {"code": …, "message": …}}`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from aiohttp import web

#: The HTTP status of every error code, in one place. A test checks it covers CODES.
STATUS: Final[Mapping[str, int]] = {
    **dict.fromkeys(
        (
            "bad_encoding", "bad_cid", "bad_did", "unknown_version", "missing_field", "unknown_field",
            "bad_field", "bad_signature", "payload_mismatch", "bad_payload", "bad_genesis", "bad_prev",
            "seq_gap", "ts_regression", "wrong_ledger", "wrong_author", "bad_fork_proof", "bad_body",
            "bad_key_file", "bad_message", "unknown_message", "handshake_failed", "bad_frame", "frame_too_large",
            "protocol_error", "bad_request", "bad_config",
            "bad_rules", "unknown_rule_key", "unknown_action", "unknown_unit", "bad_quantity",
            "unknown_bucket_recipient",
            "bad_reference", "bad_correction", "bad_agent", "not_party", "bad_time", "bad_time_range",
            "bad_amount", "bad_name",
        ),
        400,
    ),
    "unauthorized": 401,
    **dict.fromkeys(("forbidden", "not_member", "self_endorsement"), 403),
    **dict.fromkeys(("not_found", "unknown_ledger", "unknown_entry", "not_contribution"), 404),
    "method_not_allowed": 405,
    **dict.fromkeys(
        ("fork", "catching_up", "identity_exists", "already_running", "already_member", "duplicate_endorsement",
         "distribution_mismatch", "confusable_name"), 409
    ),
    "oversize": 413,
    "rate_limited": 429,
    "request_timeout": 408,
    **dict.fromkeys(("internal", "no_identity", "store_corrupt", "schema_too_new", "listen_failed"), 500),
    "not_running": 503,
    "link_timeout": 504,
    "unreachable": 502,
    # governance and pledges (SPEC.md §18)
    **dict.fromkeys(("bad_motion", "unknown_option", "vote_out_of_range", "bad_amendment", "bad_pledge",
                     "unknown_pledge", "bad_payment"), 400),
    "not_proposer": 403,
    **dict.fromkeys(("motion_closed", "motion_not_closed"), 409),
}

#: The code for an HTTP error aiohttp raises itself (unknown route, wrong method, body too large).
HTTP_CODES: Final[Mapping[int, str]] = {
    400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
    405: "method_not_allowed", 413: "oversize", 429: "rate_limited",
}


def error_response(code: str, message: str, status: int | None = None) -> web.Response:
    return web.json_response(
        {"error": {"code": code, "message": message}}, status=status or STATUS.get(code, 500)
    )
