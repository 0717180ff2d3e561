"""The node's own exceptions are TallyErrors with registered codes, and the API's statuses are the one table's."""

from __future__ import annotations

from node.cli.parsing import UsageError
from node.http.errors import STATUS
from node.sync.links import LinkClosed
from node.sync.peers import MISBEHAVIOUR, PeerMisbehaved
from protocol import CODES, InvalidData, TallyError
from protocol.errors import BY_CODE, ERRORS, Fault


def test_a_usage_error_is_a_tally_error_with_its_code() -> None:
    exc = UsageError("a subcommand is required")
    assert isinstance(exc, TallyError)
    assert (exc.code, exc.message) == ("usage", "a subcommand is required")


def test_a_closed_link_keeps_its_refusal_and_reads_as_before() -> None:
    ordinary = LinkClosed(None, "closed by this side")
    assert isinstance(ordinary, TallyError)
    assert (ordinary.code, ordinary.refusal, str(ordinary)) == ("link_closed", None, "closed by this side")
    refused = LinkClosed("handshake_failed", "bad signature", by_peer=True)
    assert (refused.code, refused.refusal, str(refused)) == ("handshake_failed", "handshake_failed",
                                                              "handshake_failed: bad signature")
    newer = LinkClosed("a_code_of_a_newer_node", "what it said", by_peer=True)  # a peer may know more codes
    assert (newer.code, newer.refusal) == ("link_closed", "a_code_of_a_newer_node")


def test_a_misbehaving_peer_is_a_tally_error_with_the_code_it_broke() -> None:
    exc = PeerMisbehaved(InvalidData("bad_message", "not a map"))
    assert isinstance(exc, TallyError)
    assert (exc.code, exc.message, exc.error.code) == ("bad_message", "not a map", "bad_message")


def test_a_peer_is_blamed_only_for_codes_a_peer_can_cause() -> None:
    assert set(CODES) >= MISBEHAVIOUR
    assert all(BY_CODE[code].fault is not Fault.LOCAL for code in MISBEHAVIOUR)


def test_the_api_statuses_are_the_tables() -> None:
    assert dict(STATUS) == {e.code: e.status for e in ERRORS}
