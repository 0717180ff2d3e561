"""Listen addresses: `tally run --listen HOST:PORT` and the URL a local client dials."""

from __future__ import annotations

from typing import Final

DEFAULT_HOST: Final = "0.0.0.0"
DEFAULT_PORT: Final = 7410


def parse_listen(text: str) -> tuple[str, int]:
    """`HOST:PORT` (`[::1]:7410` for IPv6) -> (host, port); ValueError if malformed. Port 0: any free port."""
    host, sep, port_text = text.strip().rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not sep or not host or not port_text.isdigit() or int(port_text) > 65535:
        raise ValueError(f"expected HOST:PORT, e.g. {DEFAULT_HOST}:{DEFAULT_PORT} or 127.0.0.1:0, not {text!r}")
    return host, int(port_text)


def local_address(host: str, port: int) -> str:
    """The URL a client on this machine uses to reach a node listening on host:port."""
    if host == "0.0.0.0":
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"
