"""`<home>/tally.toml`: the node's settings. Flags of `tally run` override them.

    listen = "0.0.0.0:7410"                  # where to serve the API and peer sync
    peers = ["https://coop-b.example:7410"]  # peers to keep in sync with (found="config")
    mdns = true                              # find peers on the LAN, and be found
    trusted_proxies = ["127.0.0.1"]          # reverse proxies whose X-Forwarded-For names the client

    [limits]
    max_mdns_peers = 32                      # LAN peers dialed at once; more are ignored
    shutdown_timeout_s = 30                  # how long requests in flight get on shutdown
    max_connections = 512                    # HTTP connections open at once (fewer if the files limit says so)
    header_timeout_s = 10                    # a request's headers must arrive within this
    heal_retry_s = 5                         # how often a damaged entry is asked for again (SPEC.md §10)

Every key is optional. A key this version does not know, a value of the wrong type
and malformed TOML are refused (`bad_config`, naming the key), never ignored: a typo
must not silently turn a setting off.
"""

from __future__ import annotations

import ipaddress
import math
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, TypeVar
from urllib.parse import urlsplit

from node.listen import DEFAULT_HOST, DEFAULT_PORT, parse_listen
from protocol import LocalError

CONFIG_FILE: Final = "tally.toml"
PEER_SCHEMES: Final = frozenset({"http", "https", "ws", "wss"})
MAX_PEERS: Final = 1000  # entries in `peers`
MAX_TRUSTED_PROXIES: Final = 64  # entries in `trusted_proxies`
DEFAULT_MAX_MDNS_PEERS: Final = 32
DEFAULT_SHUTDOWN_TIMEOUT_S: Final = 30.0
DEFAULT_MAX_CONNECTIONS: Final = 512
DEFAULT_HEADER_TIMEOUT_S: Final = 10.0
DEFAULT_HEAL_RETRY_S: Final = 5.0

_T = TypeVar("_T")


def check_peer_url(url: str) -> str:
    """A peer's base URL (`http://host:port`, `https://…`, `ws://…`, `wss://…`); ValueError if not one."""
    try:
        parts = urlsplit(url)
        _ = parts.port  # raises ValueError for a bad port
    except ValueError as exc:
        raise ValueError(f"{url!r} is not a URL: {exc}") from None
    if parts.scheme not in PEER_SCHEMES or not parts.hostname:
        raise ValueError(f"{url!r} is not an http://, https://, ws:// or wss:// URL with a host")
    if parts.query or parts.fragment or parts.username is not None:
        raise ValueError(f"{url!r}: a peer URL has no query, fragment or user part")
    return url


@dataclass(frozen=True, slots=True)
class Limits:
    max_mdns_peers: int = DEFAULT_MAX_MDNS_PEERS
    shutdown_timeout_s: float = DEFAULT_SHUTDOWN_TIMEOUT_S
    max_connections: int = DEFAULT_MAX_CONNECTIONS
    header_timeout_s: float = DEFAULT_HEADER_TIMEOUT_S
    heal_retry_s: float = DEFAULT_HEAL_RETRY_S

    def __post_init__(self) -> None:
        if not 16 <= self.max_connections <= 100_000:
            raise ValueError(f"limits.max_connections must be 16..100000, not {self.max_connections}")
        if not (math.isfinite(self.header_timeout_s) and 0 < self.header_timeout_s <= 3600):
            raise ValueError(f"limits.header_timeout_s must be in (0, 3600], not {self.header_timeout_s}")
        if not 0 <= self.max_mdns_peers <= 10_000:
            raise ValueError(f"limits.max_mdns_peers must be 0..10000, not {self.max_mdns_peers}")
        if not (math.isfinite(self.shutdown_timeout_s) and 0 < self.shutdown_timeout_s <= 3600):
            raise ValueError(f"limits.shutdown_timeout_s must be in (0, 3600], not {self.shutdown_timeout_s}")
        if not (math.isfinite(self.heal_retry_s) and 0.1 <= self.heal_retry_s <= 3600):
            raise ValueError(f"limits.heal_retry_s must be in [0.1, 3600], not {self.heal_retry_s}")


@dataclass(frozen=True, slots=True)
class Config:
    listen: tuple[str, int] = (DEFAULT_HOST, DEFAULT_PORT)
    peers: tuple[str, ...] = ()
    mdns: bool = True
    limits: Limits = field(default_factory=Limits)
    trusted_proxies: tuple[str, ...] = ()  # IP addresses, normalized

    def __post_init__(self) -> None:
        host, port = self.listen
        if not host or not 0 <= port <= 65535:
            raise ValueError(f"listen: bad address {host}:{port}")
        if len(self.peers) > MAX_PEERS:
            raise ValueError(f"peers: at most {MAX_PEERS} peers")
        for url in self.peers:
            check_peer_url(url)


def load(home: Path) -> Config:
    """The settings in `<home>/tally.toml`; the defaults if there is no such file."""
    path = home / CONFIG_FILE
    try:
        text = path.read_bytes().decode("utf-8")
    except FileNotFoundError:
        return Config()
    except (OSError, UnicodeDecodeError) as exc:
        raise LocalError("bad_config", f"{path}: cannot read it: {exc}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise LocalError("bad_config", f"{path}: not valid TOML: {exc}") from None
    try:
        return parse(data)
    except ValueError as exc:
        raise LocalError("bad_config", f"{path}: {exc}") from None


def parse(data: Mapping[str, object]) -> Config:
    """A Config from parsed TOML; ValueError naming the key if anything is wrong."""
    _known(data, "", ("listen", "peers", "mdns", "limits", "trusted_proxies"))
    listen = (DEFAULT_HOST, DEFAULT_PORT)
    if "listen" in data:
        try:
            listen = parse_listen(_typed(data, "listen", str))
        except ValueError as exc:
            raise ValueError(f"listen: {exc}") from None
    peers: tuple[str, ...] = ()
    if "peers" in data:
        items: list[Any] = _typed(data, "peers", list)
        for i, item in enumerate(items):
            if not isinstance(item, str):
                raise ValueError(f"peers[{i}] must be a string (a URL), not {_toml_type(item)}")
            try:
                check_peer_url(item)
            except ValueError as exc:
                raise ValueError(f"peers[{i}]: {exc}") from None
        peers = tuple(dict.fromkeys(items))
    mdns = _typed(data, "mdns", bool) if "mdns" in data else True
    proxies: list[str] = []
    if "trusted_proxies" in data:
        listed: list[Any] = _typed(data, "trusted_proxies", list)
        if len(listed) > MAX_TRUSTED_PROXIES:
            raise ValueError(f"trusted_proxies: at most {MAX_TRUSTED_PROXIES} addresses")
        for i, item in enumerate(listed):
            try:
                proxies.append(str(ipaddress.ip_address(item if isinstance(item, str) else "")))
            except ValueError:
                raise ValueError(f"trusted_proxies[{i}] must be an IP address as a string (\"127.0.0.1\", \"::1\"), "
                                 f"not {item!r}") from None
    limits = Limits()
    if "limits" in data:
        table: dict[str, Any] = _typed(data, "limits", dict)
        _known(table, "limits.", ("max_mdns_peers", "shutdown_timeout_s", "max_connections", "header_timeout_s",
                                  "heal_retry_s"))
        limits = Limits(
            max_mdns_peers=_integer(table, "limits.", "max_mdns_peers", DEFAULT_MAX_MDNS_PEERS),
            shutdown_timeout_s=_number(table, "limits.", "shutdown_timeout_s", DEFAULT_SHUTDOWN_TIMEOUT_S),
            max_connections=_integer(table, "limits.", "max_connections", DEFAULT_MAX_CONNECTIONS),
            header_timeout_s=_number(table, "limits.", "header_timeout_s", DEFAULT_HEADER_TIMEOUT_S),
            heal_retry_s=_number(table, "limits.", "heal_retry_s", DEFAULT_HEAL_RETRY_S),
        )
    return Config(listen=listen, peers=peers, mdns=mdns, limits=limits, trusted_proxies=tuple(dict.fromkeys(proxies)))


def _known(table: Mapping[str, object], prefix: str, keys: tuple[str, ...]) -> None:
    for key in table:
        if key not in keys:
            raise ValueError(f"unknown key {prefix + key!r} (known: {', '.join(prefix + k for k in keys)})")


def _typed(table: Mapping[str, object], key: str, kind: type[_T], prefix: str = "") -> _T:
    value = table[key]
    if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
        raise ValueError(f"{prefix}{key} must be {_toml_name(kind)}, not {_toml_type(value)}")
    return value


def _integer(table: Mapping[str, object], prefix: str, key: str, default: int) -> int:
    return _typed(table, key, int, prefix) if key in table else default


def _number(table: Mapping[str, object], prefix: str, key: str, default: float) -> float:
    if key not in table:
        return default
    value = table[key]
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{prefix}{key} must be a number, not {_toml_type(value)}")
    return float(value)


_TOML_NAMES: Final[dict[type, str]] = {
    str: "a string", bool: "a boolean (true or false)", int: "an integer", float: "a number",
    list: "an array", dict: "a table",
}


def _toml_name(kind: type) -> str:
    return _TOML_NAMES.get(kind, kind.__name__)


def _toml_type(value: object) -> str:
    for kind in (bool, str, int, float, list, dict):
        if isinstance(value, kind):
            return _toml_name(kind)
    return type(value).__name__  # dates and times
