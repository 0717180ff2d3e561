"""Finding peers on the LAN with mDNS / DNS-SD (SPEC.md §15).

The node registers `_tally._tcp.local.` under an instance name made from its did:key,
with TXT `id=<did:key>` and `v=<protocol version>`, browses for the others and hands
each one it finds to the replicator, which dials it expecting that did: mDNS only says
where to knock, the handshake says who answered. A service that says goodbye is
forgotten (no more dialing; a link that is up lives on until it ends by itself).

What mDNS does not do, and this class does instead:
- it never removes a crashed peer (a PTR record lives 75 min): liveness comes from
  the replicator's links, never from here;
- two sides of a healed partition that never met do not find each other, since a
  browser queries only at start: we query again every `requery_s` (with jitter) and
  at once when an interface changes (carrier, addresses), and re-announce then too;
- a goodbye is only sent when the unregister is awaited to the end, which `stop()` does.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import random
import socket
from collections.abc import Coroutine, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Protocol

from protocol import InvalidData, public_key_from_did

if TYPE_CHECKING:
    from zeroconf import ServiceStateChange, Zeroconf
    from zeroconf.asyncio import AsyncServiceBrowser, AsyncServiceInfo, AsyncZeroconf

log = logging.getLogger(__name__)

SERVICE_TYPE: Final = "_tally._tcp.local."
PROTOCOL_VERSION: Final = "1"  # TXT `v`: the peer-link protocol version (the `tally-sync/1` prologue)
INSTANCE_PREFIX: Final = "tally-"
REQUERY_S: Final = 10.0  # ask again for peers this often (±20 %)
INTERFACE_POLL_S: Final = 1.0  # look for interface changes this often
RESOLVE_TIMEOUT_MS: Final = 3000
STOP_TIMEOUT_S: Final = 5.0  # the goodbye takes ~0.25 s; never hang a shutdown on it
_QUERY: Final = 0  # DNS header flags of a query (RFC 6762 §18)
_TYPE_PTR: Final = 12
_CLASS_IN: Final = 1
_DID_PREFIX: Final = "did:key:"


class PeerSink(Protocol):
    """What discovery tells (node.sync.replication.Replicator)."""

    def add_peer(self, url: str, found: str, expected_remote: str | None = None) -> None: ...

    def forget_peer(self, url: str) -> None: ...


@dataclass(frozen=True, slots=True)
class Sighting:
    """A Tally node announced on the LAN: its service name, did:key and the URL to dial."""

    name: str
    did: str
    url: str


def instance_name(did: str) -> str:
    """`tally-z6Mk…`: unique per identity (all hosts of a lab, or of a container, may share one hostname)."""
    if not did.startswith(_DID_PREFIX):
        raise ValueError(f"not a did:key: {did!r}")
    return INSTANCE_PREFIX + did[len(_DID_PREFIX):]


def service_name(did: str) -> str:
    return f"{instance_name(did)}.{SERVICE_TYPE}"


def server_name(did: str) -> str:
    return f"{instance_name(did)}.local."


def txt_properties(did: str) -> dict[str, str]:
    return {"id": did, "v": PROTOCOL_VERSION}


def peer_url(address: str, port: int) -> str:
    ip = ipaddress.ip_address(address)
    return f"http://[{ip}]:{port}" if ip.version == 6 else f"http://{ip}:{port}"


def parse_sighting(name: str, properties: Mapping[bytes, bytes | None], port: int | None,
                   addresses: Iterable[str]) -> Sighting:
    """The peer a resolved service names; ValueError if it is not a Tally node we can dial."""
    txt = {k.decode("utf-8", "replace"): (v or b"").decode("utf-8", "replace") for k, v in properties.items()}
    version = txt.get("v")
    if version != PROTOCOL_VERSION:
        raise ValueError(f"protocol version {version!r}, not {PROTOCOL_VERSION}")
    did = txt.get("id", "")
    try:
        public_key_from_did(did)
    except InvalidData as exc:
        raise ValueError(f"TXT id: {exc.message}") from None
    if not port:
        raise ValueError("no port")
    usable = [a for a in addresses if _dialable(a)]
    if not usable:
        raise ValueError("no address to dial")
    # IPv4 first: IPv6 link-local addresses come without the scope id needed to dial them.
    usable.sort(key=lambda a: ipaddress.ip_address(a).version)
    return Sighting(name, did, peer_url(usable[0], port))


def announced_addresses(listen_host: str, host_addresses: Iterable[str]) -> list[str]:
    """The addresses to announce for a node listening on `listen_host` (an IP, or a wildcard)."""
    if listen_host in ("0.0.0.0", "::", "*", ""):
        want = {4} if listen_host == "0.0.0.0" else {4, 6}
        return [a for a in dict.fromkeys(host_addresses)
                if ipaddress.ip_address(a).version in want and _dialable(a)]
    try:
        ip = ipaddress.ip_address(listen_host)
    except ValueError:
        return []
    return [str(ip)] if _dialable(str(ip)) else []


def _dialable(address: str) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return not (ip.is_loopback or ip.is_unspecified or ip.is_multicast or (ip.version == 6 and ip.is_link_local))


def host_addresses() -> list[str]:
    """This host's interface addresses (in this network namespace)."""
    import ifaddr  # with zeroconf (~4 MB): loaded only by a node that runs mDNS

    out = []
    for adapter in ifaddr.get_adapters():
        for ip in adapter.ips:
            out.append(ip.ip if isinstance(ip.ip, str) else ip.ip[0])
    return out


def interface_state() -> tuple[tuple[str, str, tuple[str, ...]], ...]:
    """Each interface's name, operational state (carrier) and addresses: a change means re-announce and re-query."""
    import ifaddr  # with zeroconf (~4 MB): loaded only by a node that runs mDNS

    state = []
    for adapter in ifaddr.get_adapters():
        ips = sorted(ip.ip if isinstance(ip.ip, str) else ip.ip[0] for ip in adapter.ips)
        try:
            oper = Path("/sys/class/net", adapter.name, "operstate").read_text().strip()
        except OSError:
            oper = ""
        state.append((adapter.name, oper, tuple(ips)))
    return tuple(sorted(state))


class Discovery:
    """mDNS announce and browse for one node. `start()` after the replicator; `stop()` before it."""

    def __init__(
        self, sink: PeerSink, did: str, listen_host: str, port: int, *,
        max_peers: int = 32, requery_s: float = REQUERY_S, rng: random.Random | None = None,
    ) -> None:
        self._sink = sink
        self._did = did
        self._listen_host = listen_host
        self._port = port
        self._max_peers = max_peers
        self._requery_s = requery_s
        self._rng = rng or random.Random()
        self._aiozc: AsyncZeroconf | None = None
        self._browser: AsyncServiceBrowser | None = None
        self._info: AsyncServiceInfo | None = None
        self._registered = False
        self._found: dict[str, Sighting] = {}  # by service name
        self._resolving: dict[str, asyncio.Task[None]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._full_logged = False
        self._stopped = False

    async def start(self) -> None:
        # zeroconf and ifaddr (~4 MB of RSS) only for a node that runs mDNS, not at every node's start
        from zeroconf import IPVersion
        from zeroconf.asyncio import AsyncServiceBrowser, AsyncServiceInfo, AsyncZeroconf

        loop = asyncio.get_running_loop()
        addresses = await self._addresses()
        try:
            self._aiozc = AsyncZeroconf(ip_version=IPVersion.V4Only)
        except OSError as exc:  # no multicast-capable interface, port 5353 refused …: run without discovery
            log.warning("mdns unavailable; running without LAN discovery", extra={"error": repr(exc)})
            self._stopped = True
            return
        zc = self._aiozc.zeroconf
        self._browser = AsyncServiceBrowser(zc, SERVICE_TYPE, handlers=[self._on_change])
        if addresses:
            self._info = AsyncServiceInfo(
                SERVICE_TYPE, service_name(self._did), port=self._port, properties=txt_properties(self._did),
                server=server_name(self._did), parsed_addresses=addresses,
            )
            self._spawn(self._register(self._info))
        else:
            log.warning("mdns: nothing to announce (listening on a loopback address); browsing only",
                        extra={"host": self._listen_host})
        self._spawn(self._watch(loop.time()))
        log.info("mdns started", extra={"type": SERVICE_TYPE, "service": service_name(self._did),
                                        "addresses": ",".join(addresses) or "-", "port": self._port})

    async def stop(self) -> None:
        """Withdraw our records (the goodbye is awaited, so peers forget us at once) and stop browsing."""
        if self._stopped or self._aiozc is None:
            self._stopped = True
            return
        self._stopped = True
        tasks = [*self._tasks, *self._resolving.values()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        try:
            async with asyncio.timeout(STOP_TIMEOUT_S):
                if self._info is not None and self._registered:
                    await (await self._aiozc.async_unregister_service(self._info))
                if self._browser is not None:
                    await self._browser.async_cancel()
                await self._aiozc.async_close()
        except (TimeoutError, OSError, RuntimeError) as exc:
            log.warning("mdns: unclean stop", extra={"error": repr(exc)})
        log.info("mdns stopped")

    # ---- announcing --------------------------------------------------------------

    async def _register(self, info: AsyncServiceInfo) -> None:
        assert self._aiozc is not None
        try:
            announced = await self._aiozc.async_register_service(info, allow_name_change=True)
            self._registered = True
            await announced
        except Exception as exc:  # a task root: log and carry on browsing
            log.warning("mdns: could not register", extra={"service": info.name, "error": repr(exc)})
            return
        log.info("mdns registered", extra={"service": info.name})

    async def _addresses(self) -> list[str]:
        host = self._listen_host
        try:
            ipaddress.ip_address(host)
        except ValueError:
            if host not in ("", "*"):  # a host name: announce what it resolves to
                loop = asyncio.get_running_loop()
                try:
                    infos = await loop.getaddrinfo(host, None, type=socket.SOCK_STREAM)
                except OSError:
                    return []
                return list(dict.fromkeys(a for info in infos
                                          if _dialable(a := str(info[4][0])) and ":" not in a))
        return announced_addresses(host, host_addresses())

    # ---- browsing ----------------------------------------------------------------

    def _on_change(self, zeroconf: Zeroconf, service_type: str, name: str,
                   state_change: ServiceStateChange) -> None:
        # Called by zeroconf on the event loop; the parameter names are zeroconf's.
        from zeroconf import ServiceStateChange  # loaded by start() already: see there

        if self._stopped or name == (self._info.name if self._info else None):
            return
        if state_change is ServiceStateChange.Removed:
            pending = self._resolving.pop(name, None)
            if pending is not None:
                pending.cancel()
            self._lost(name)
            return
        if name not in self._resolving:
            task = asyncio.create_task(self._resolve(name), name=f"mdns-resolve {name}")
            self._resolving[name] = task
            task.add_done_callback(self._resolved)

    def _resolved(self, task: asyncio.Task[None]) -> None:
        for name, pending in list(self._resolving.items()):
            if pending is task:
                del self._resolving[name]

    async def _resolve(self, name: str) -> None:
        from zeroconf.asyncio import AsyncServiceInfo  # loaded by start() already: see there

        assert self._aiozc is not None
        info = AsyncServiceInfo(SERVICE_TYPE, name)
        if not await info.async_request(self._aiozc.zeroconf, RESOLVE_TIMEOUT_MS):
            log.info("mdns: could not resolve", extra={"service": name})
            return
        try:
            sighting = parse_sighting(name, info.properties, info.port, info.parsed_addresses())
        except ValueError as exc:
            log.info("mdns: not a peer", extra={"service": name, "reason": str(exc)})
            return
        if sighting.did == self._did or self._stopped:
            return
        old = self._found.get(name)
        if old is None and len(self._found) >= self._max_peers:
            if not self._full_logged:
                log.warning("mdns: peer limit reached; ignoring more", extra={"max_mdns_peers": self._max_peers})
                self._full_logged = True
            return
        self._found[name] = sighting
        if old is not None and old.url != sighting.url:
            self._forget_url(old.url)
        if old != sighting:
            log.info("mdns peer found", extra={"service": name, "peer": sighting.did, "url": sighting.url})
        self._sink.add_peer(sighting.url, "mdns", expected_remote=sighting.did)

    def _lost(self, name: str) -> None:
        sighting = self._found.pop(name, None)
        if sighting is None:
            return
        self._full_logged = False
        log.info("mdns peer left", extra={"service": name, "peer": sighting.did, "url": sighting.url})
        self._forget_url(sighting.url)

    def _forget_url(self, url: str) -> None:
        if all(s.url != url for s in self._found.values()):
            self._sink.forget_peer(url)

    # ---- staying findable ----------------------------------------------------------

    async def _watch(self, now: float) -> None:
        """Query again every `requery_s` (jittered) and whenever an interface changes."""
        loop = asyncio.get_running_loop()
        assert self._aiozc is not None
        await self._aiozc.zeroconf.async_wait_for_start()
        state = interface_state()
        next_query = now + self._jittered()
        while True:
            await asyncio.sleep(INTERFACE_POLL_S)
            now = loop.time()
            try:
                current = interface_state()
                if current != state:
                    state = current
                    log.info("mdns: interfaces changed; re-announcing and querying again")
                    await self._interfaces_changed()
                    self._query()
                    next_query = now + self._jittered()
                elif now >= next_query:
                    self._query()
                    next_query = now + self._jittered()
            except Exception as exc:  # a task root: log, and try again next round
                log.warning("mdns: watch failed", extra={"error": repr(exc)})

    def _jittered(self) -> float:
        return self._requery_s * self._rng.uniform(0.8, 1.2)

    def _query(self) -> None:
        """Ask for every `_tally._tcp` service, listing the fresh ones we know (RFC 6762 §7.1) so only others answer."""
        from zeroconf import DNSOutgoing, DNSQuestion, current_time_millis  # loaded by start() already: see there

        assert self._aiozc is not None
        zc = self._aiozc.zeroconf
        now = current_time_millis()
        out = DNSOutgoing(_QUERY)
        out.add_question(DNSQuestion(SERVICE_TYPE, _TYPE_PTR, _CLASS_IN))
        for record in zc.cache.get_all_by_details(SERVICE_TYPE, _TYPE_PTR, _CLASS_IN):
            if not record.is_stale(now):
                out.add_answer_at_time(record, now)
        zc.async_send(out)

    async def _interfaces_changed(self) -> None:
        assert self._aiozc is not None
        try:
            await self._aiozc.async_update_interfaces()
            if self._info is not None and self._registered:
                addresses = await self._addresses()
                if addresses and addresses != self._info.parsed_addresses():
                    self._info.addresses = [socket.inet_pton(socket.AF_INET6 if ":" in a else socket.AF_INET, a)
                                            for a in addresses]
                # Re-announce: a peer that never heard us (a cable was out) learns of us now.
                await (await self._aiozc.async_update_service(self._info))
        except (OSError, RuntimeError) as exc:
            log.warning("mdns: interface update failed", extra={"error": repr(exc)})

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


__all__ = [
    "PROTOCOL_VERSION", "SERVICE_TYPE", "Discovery", "PeerSink", "Sighting", "announced_addresses",
    "instance_name", "parse_sighting", "peer_url", "server_name", "service_name", "txt_properties",
]
