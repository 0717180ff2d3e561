"""Discovery's pure parts: names, TXT records, which address to dial. Real mDNS is tested on lab hosts
(tests/lab/test_discovery.py), since multicast needs a LAN: network namespaces, not loopback."""

from __future__ import annotations

import pytest

from node.sync.discovery import (
    PROTOCOL_VERSION,
    SERVICE_TYPE,
    announced_addresses,
    instance_name,
    parse_sighting,
    peer_url,
    server_name,
    service_name,
    txt_properties,
)
from protocol import SigningKey

DID = SigningKey(bytes(range(32))).did
OTHER = SigningKey(bytes(32)).did


def txt(**values: str) -> dict[bytes, bytes | None]:
    return {k.encode(): v.encode() for k, v in values.items()}


def test_names_come_from_the_did_and_are_valid_dns_labels() -> None:
    assert SERVICE_TYPE == "_tally._tcp.local."
    name = instance_name(DID)
    assert name == "tally-" + DID.removeprefix("did:key:")
    assert len(name.encode()) <= 63 and name.replace("-", "").isalnum()
    assert service_name(DID) == f"{name}._tally._tcp.local."
    assert server_name(DID) == f"{name}.local."
    assert instance_name(DID) != instance_name(OTHER)
    with pytest.raises(ValueError):
        instance_name("z6Mk-not-a-did")


def test_txt_holds_the_did_and_the_protocol_version() -> None:
    assert txt_properties(DID) == {"id": DID, "v": PROTOCOL_VERSION} == {"id": DID, "v": "1"}


def test_a_sighting_names_the_did_and_prefers_ipv4() -> None:
    s = parse_sighting("n", txt(id=DID, v="1"), 7410, ["fe80::1", "2001:db8::5", "10.77.0.2"])
    assert (s.name, s.did, s.url) == ("n", DID, "http://10.77.0.2:7410")
    # a global IPv6 address is used when there is no IPv4 one; link-local ones never (no scope id)
    assert parse_sighting("n", txt(id=DID, v="1"), 7410, ["fe80::1", "2001:db8::5"]).url == "http://[2001:db8::5]:7410"
    assert peer_url("10.0.0.1", 1) == "http://10.0.0.1:1"


@pytest.mark.parametrize(
    ("properties", "port", "addresses", "reason"),
    [
        (txt(id=DID), 7410, ["10.0.0.1"], "protocol version"),
        (txt(id=DID, v="2"), 7410, ["10.0.0.1"], "protocol version"),
        (txt(v="1"), 7410, ["10.0.0.1"], "TXT id"),
        (txt(id="did:key:zNotAKey", v="1"), 7410, ["10.0.0.1"], "TXT id"),
        ({b"id": None, b"v": b"1"}, 7410, ["10.0.0.1"], "TXT id"),
        (txt(id=DID, v="1"), 0, ["10.0.0.1"], "no port"),
        (txt(id=DID, v="1"), None, ["10.0.0.1"], "no port"),
        (txt(id=DID, v="1"), 7410, [], "no address"),
        (txt(id=DID, v="1"), 7410, ["fe80::1", "127.0.0.1", "0.0.0.0"], "no address"),
    ],
)
def test_what_is_not_a_peer(properties: dict[bytes, bytes | None], port: int | None, addresses: list[str],
                            reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        parse_sighting("n", properties, port, addresses)


def test_announced_addresses_follow_the_listen_address() -> None:
    host = ["127.0.0.1", "10.77.0.3", "192.168.1.5", "::1", "fe80::1", "2001:db8::3", "10.77.0.3"]
    assert announced_addresses("0.0.0.0", host) == ["10.77.0.3", "192.168.1.5"]
    assert announced_addresses("::", host) == ["10.77.0.3", "192.168.1.5", "2001:db8::3"]
    assert announced_addresses("10.77.0.3", host) == ["10.77.0.3"]
    # loopback is never announced: a LAN neighbour could not reach it
    assert announced_addresses("127.0.0.1", host) == []
    assert announced_addresses("::1", host) == []
