"""Replication: peer links running the sync protocol, live push, forks, safe restore.

One `Replicator` per node process. It keeps a link to each peer it is given or
finds (dialing with backoff, refusing for a while a peer that broke the protocol),
pushes new entries and fork proofs to every link, and holds local appends until
safe restore is done (node/sync/restore.py). Each authenticated link runs a
`SyncSession` (node/sync/session.py), which asks `LedgerAccess` (node/sync/access.py)
which ledgers its peer may see; what the node knows of each peer is a `PeerInfo`
(node/sync/peers.py).
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable, Coroutine, Sequence
from typing import Any, Final

import aiohttp
from aiohttp import web

from node.store.states import MEMBER_KIND_PREFIX, LedgerStates
from node.store.store import Store
from node.sync.access import LedgerAccess
from node.sync.gate import MAX_LINKS_PER_ADDRESS, REFUSED_HTTP, LinkGate, host_of
from node.sync.healing import Healer, HealRecord
from node.sync.ingest import Verifier
from node.sync.links import LinkClosed, SecureLink, accept_link, dial_link, link_websocket, peer_address
from node.sync.peers import MISBEHAVIOUR, PeerInfo, PeerMisbehaved, wall_ms
from node.sync.restore import SafeRestore
from node.sync.session import SyncSession
from protocol import CID, Entry, ForkProof, SigningKey, TallyError

log = logging.getLogger(__name__)

BACKOFF_MIN_S: Final = 1.0
BACKOFF_MAX_S: Final = 60.0
MAX_DIALED_IN: Final = 512  # peer-table rows of identities that only dialled in (the idle longest go first)


class Replicator:
    """Runs the node's peer links. See the module docstring."""

    def __init__(
        self,
        store: Store,
        identity: SigningKey,
        *,
        peers: Sequence[str | tuple[str, str]] = (),
        offline: bool = False,
        found: str = "flag",
        rng: random.Random | None = None,
        states: LedgerStates | None = None,
        heal: float | None = None,
    ) -> None:
        self._store = store
        self._own_states = states is None
        self.states = states if states is not None else LedgerStates(store)
        self._identity = identity
        self._did = identity.did
        # Peers to keep linked (and to catch up from): a URL, found as `found`, or (URL, how it was found).
        self._peer_found: dict[str, str] = {}
        for peer in peers:
            url, how = (peer, found) if isinstance(peer, str) else peer
            self._peer_found.setdefault(url, how)
        self._peer_urls = list(self._peer_found)
        self._offline = offline
        self._rng = rng or random.Random()
        self._verifier = Verifier()
        # The running node heals its store (quarantine, fetch again; `heal`: asking again every that many seconds);
        # a one-shot `tally sync` does not.
        self.healing = HealRecord()
        self._healer = (None if heal is None else
                        Healer(store, self.states, lambda: self._sessions.values(), self.healing, retry_s=heal))
        self._sessions: dict[str, SyncSession] = {}
        self._info: dict[str, PeerInfo] = {}  # by did, or "url:<url>" until the did is known
        self._tasks: set[asyncio.Task[None]] = set()
        self._http: aiohttp.ClientSession | None = None
        self._access = LedgerAccess(store, self.states)
        self._gate = LinkGate()  # inbound caps, refusals and bans (node/sync/gate.py)
        self._unsubscribe: Callable[[], None] | None = None
        self._stopping = False
        self._forgotten: set[str] = set()
        # Safe restore: no local append until our own chains are caught up.
        self._restore = SafeRestore(self._peer_urls, offline=offline, links=lambda: self._sessions.values(),
                                    did_at=self._did_at)

    # ---- public surface --------------------------------------------------------

    @property
    def catching_up(self) -> bool:
        return self._restore.catching_up

    @property
    def did(self) -> str:
        return self._did

    @property
    def stopping(self) -> bool:
        return self._stopping

    async def start(self) -> None:
        self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None, connect=10))
        self._unsubscribe = self._store.on_new_entries(self._on_new_entries)
        if self._healer is not None:
            self._healer.start()
        for url in self._peer_urls:
            self.add_peer(url, self._peer_found[url])
        if self._restore.catching_up:
            self._spawn(self._restore.deadline())

    def add_peer(self, url: str, found: str, expected_remote: str | None = None) -> None:
        """Dial `url` and keep a link to it, reconnecting with backoff. `expected_remote`:
        the did:key the peer must prove (as mDNS announces it); never our own."""
        if expected_remote == self._did:
            return
        key = f"url:{url}"
        if key in self._info or any(i.address == url for i in self._info.values()):
            self._forgotten.discard(url)
            return
        self._forgotten.discard(url)  # it left and came back
        # It may have dialed us first: its record then becomes this one (one row per peer).
        info = self._info.pop(f"did:{expected_remote}", None) if expected_remote else None
        if info is not None:
            info.address, info.found = url, found
        self._info[key] = info or PeerInfo(expected_remote, url, found)
        self._spawn(self._dial_loop(url, key, expected_remote))

    def forget_peer(self, url: str) -> None:
        """Stop dialing `url` (e.g. it left the LAN). A link that is up stays up until it
        ends by itself: liveness comes from links, never from discovery."""
        key = f"url:{url}"
        info = self._info.get(key)
        if info is None:
            return
        self._forgotten.add(url)
        if not info.connected:
            self._info.pop(key, None)

    async def stop(self) -> None:
        if self._stopping:
            return  # stopped already (a second stop, e.g. from a test's teardown, has nothing left to do)
        self._stopping = True
        if self._unsubscribe is not None:
            self._unsubscribe()
        if self._healer is not None:
            await self._healer.stop()
        for session in list(self._sessions.values()):
            await session.link.close(None, "node shutting down")
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._http is not None:
            await self._http.close()
        await self._verifier.aclose()
        if self._own_states:
            await self.states.aclose()  # saves the snapshots of ledgers that grew

    def refuse_link(self, request: web.Request) -> web.Response | None:
        """The 503 for a link attempt beyond the gate's caps (node/sync/gate.py), else None.

        Checked before any handshake work (key exchanges, a signature check) and, by the API's first
        middleware, before anything else the request would cost.
        """
        address = peer_address(request)
        return self._gate.refusal(host_of(address), address)

    def refuse_link_early(self, ip: str, port: int, head: bytes) -> bytes | None:
        """The whole 503 answer (gate.REFUSED_HTTP) for a link attempt from `ip`:`port` beyond the gate's caps, from
        the first bytes of its connection, else None, and then a handshake place is held for it: for a listener that
        answers it before any HTTP work (node/http/guard.py). The same attempts as `refuse_link`'s, counted and
        logged the same way."""
        if not head.startswith((b"GET /api/v1/sync ", b"GET /api/v1/sync?")):
            return None
        host = f"[{ip}]" if ":" in ip else ip
        return None if self._gate.reserve(host, f"{host}:{port}") else REFUSED_HTTP

    async def handle_sync(self, request: web.Request) -> web.StreamResponse:
        """`GET /api/v1/sync`: a peer dials in."""
        address = peer_address(request)
        host = host_of(address)
        refused = self._gate.refusal(host, address)
        if refused is not None:
            return refused
        with self._gate.inbound(host):
            ws = link_websocket()
            with self._gate.handshake(host, address):  # from before the upgrade: no await goes uncounted
                await ws.prepare(request)
                try:
                    link = await accept_link(ws, self._identity, remote_address=address)
                except (TallyError, LinkClosed) as exc:
                    log.warning("inbound handshake failed peer=%s error=%s", address, exc)
                    return ws
            info = next((i for i in self._info.values() if i.did == link.remote_did), None)
            given = info is not None and info.found != "inbound"
            if not given:
                # Fresh identities are free to make: a host that keeps misbehaving, or opens more
                # links than a household would, is slowed by its address. Peers this node dials
                # (flags, configuration, mDNS) are known by did and never refused for their address.
                if self._gate.ban_left(f"host:{host}") > 0:
                    await link.close("forbidden", "backing off after a protocol violation from this address")
                    return ws
                if self._gate.too_many_from(host):
                    await link.close("rate_limited", f"more than {MAX_LINKS_PER_ADDRESS} links from one address")
                    return ws
            if info is None:
                self._trim_dialed_in()
                info = self._info.setdefault(f"did:{link.remote_did}", PeerInfo(link.remote_did, address, "inbound"))
            if await self._run_link(link, info) == "misbehaved" and not given:
                self._gate.ban(f"host:{host}")
            return ws

    def _trim_dialed_in(self) -> None:
        """Keep at most MAX_DIALED_IN rows of peers that only dialled in: the idle longest go, never a member's
        of a members-only ledger here (fresh keys cannot become one)."""
        inbound = [(i.last_seen or 0, k) for k, i in self._info.items()
                   if i.found == "inbound" and not i.connected and i.did not in self._access.members_seen]
        extra = sum(1 for i in self._info.values() if i.found == "inbound") + 1 - MAX_DIALED_IN
        for _, k in sorted(inbound)[: max(0, extra)]:
            del self._info[k]

    async def follow(self, ledger: CID) -> None:
        """Start replicating `ledger` (already marked followed in the store) with every peer."""
        for session in list(self._sessions.values()):
            await session.reconsider([ledger])  # the peer may have named it before we followed it

    def peers(self) -> list[PeerInfo]:
        return sorted(self._info.values(), key=lambda i: (not i.connected, i.did or "", i.address or ""))

    async def sync_once(self, url: str, *, progress: Callable[[int, int], None] | None = None) -> PeerInfo:
        """Dial `url`, sync every shared ledger both ways, and close (for `tally sync`)."""
        assert self._http is not None, "start() first"
        info = PeerInfo(None, url, "flag")
        link = await dial_link(self._http, url, self._identity)
        info.did = link.remote_did
        session = self._session(link, info, one_shot=True, progress=progress)
        await self._run_session(session)
        if session.failure is not None:
            raise session.failure
        return info

    # ---- links ---------------------------------------------------------------

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _dial_loop(self, url: str, key: str, expected: str | None) -> None:
        delay = BACKOFF_MIN_S
        assert self._http is not None
        mine = self._info.get(key)
        while not self._stopping and url not in self._forgotten:
            info = self._info.get(key)
            if info is None or info is not mine:
                return  # forgotten, or added anew (the newer loop dials)
            if expected is not None and expected in self._sessions:
                # Already linked (it dialed us): check again later, without knocking.
                await asyncio.sleep(BACKOFF_MIN_S * self._rng.uniform(0.8, 1.2))
                continue
            try:
                link = await dial_link(self._http, url, self._identity, expected_remote=expected)
            except (TimeoutError, OSError, aiohttp.ClientError, TallyError, LinkClosed) as exc:
                code = (exc.refusal if isinstance(exc, LinkClosed) else getattr(exc, "code", None)) or "unreachable"
                info.note_error(code, str(exc) or type(exc).__name__)
                log.info("dial failed peer=%s error=%s", url, info.errors[-1])
            else:
                outcome = await self._run_link(link, info, url=url)
                if outcome == "duplicate":
                    expected = link.remote_did  # linked the other way: wait quietly while that lasts
                delay = max(delay, self._gate.ban_left(link.remote_did)) if outcome == "misbehaved" else BACKOFF_MIN_S
            # Exponential backoff with jitter: never hammer a peer that is down.
            await asyncio.sleep(delay * self._rng.uniform(0.8, 1.2))
            delay = min(BACKOFF_MAX_S, delay * 2)
        if not self._stopping and url in self._forgotten and self._info.get(key) is mine:
            del self._info[key]  # it left while linked; the link has ended now
            self._forgotten.discard(url)

    async def _run_link(self, link: SecureLink, info: PeerInfo, url: str | None = None) -> str:
        """Run a session on `link` until it closes: "misbehaved", "duplicate" or "ended"."""
        did = link.remote_did
        if self._gate.ban_left(did) > 0:
            await link.close("forbidden", "backing off after a protocol violation")
            return "misbehaved"
        existing = self._sessions.get(did)
        if existing is not None:
            # Two links to one peer (both dialed at once, or found twice): both sides keep the
            # one dialed by the smaller did, so they agree without talking.
            if self._dialer(link) < self._dialer(existing.link):
                await existing.link.close(None, "replaced by a link dialed by the smaller did")
            else:
                await link.close(None, "a link with this peer is already open")
                if url is not None:
                    self._adopt(existing, info)
                return "duplicate"
        if self._stopping:
            # A link whose handshake ended after stop() closed the others would keep the node from exiting
            # until the server's shutdown timeout. No await from here until the session is registered.
            await link.close(None, "node shutting down")
            return "ended"
        if url is not None:
            self._info.pop(f"did:{did}", None)  # a record made when it dialed us first gives way to this one
        info.did = did
        session = self._session(link, info, one_shot=False)
        self._sessions[did] = session
        try:
            await self._run_session(session)
        finally:
            if self._sessions.get(did) is session:
                del self._sessions[did]
            self._restore.check()
        if session.failure is not None and session.failure.code in MISBEHAVIOUR:
            self._gate.ban(did)
            return "misbehaved"
        return "ended"

    def _session(
        self, link: SecureLink, info: PeerInfo, *, one_shot: bool, progress: Callable[[int, int], None] | None = None,
    ) -> SyncSession:
        return SyncSession(self, link, info, store=self._store, verifier=self._verifier,
                           me=self._identity.public_key, one_shot=one_shot, progress=progress)

    def _adopt(self, session: SyncSession, info: PeerInfo) -> None:
        """The peer at `info`'s URL had dialed us first and that link stays: it reports into `info`
        from now on, so `tally peers` shows one row (with the URL and how it was found)."""
        old = session.info
        if old is info or self._info.get(f"did:{session.peer_did}") is not old:
            return
        info.did = session.peer_did
        for name in ("connected", "last_seen", "last_sync", "entries_behind", "entries_in", "entries_out",
                     "bytes_in", "bytes_out"):
            setattr(info, name, getattr(old, name))
        session.info = info
        del self._info[f"did:{session.peer_did}"]

    def _dialer(self, link: SecureLink) -> str:
        return self._did if link.initiator else link.remote_did

    async def _run_session(self, session: SyncSession) -> None:
        info = session.info
        info.connected = True
        info.last_seen = wall_ms()
        log.info("peer connected peer=%s address=%s found=%s", session.peer_did, info.address, info.found)
        try:
            await session.run()
        finally:
            info = session.info  # it may have moved to the peer's URL record meanwhile (_adopt)
            if self._sessions.get(session.peer_did, session) is session:
                info.connected = False  # unless a newer link to this peer reports into it now
            code = session.failure.code if session.failure else None
            log.info("peer disconnected peer=%s code=%s in=%d out=%d", session.peer_did, code,
                     info.entries_in, info.entries_out)

    # ---- safe restore, access and live push ------------------------------------

    def restore_answered(self, did: str) -> None:
        """A peer told us our own heads and we fetched everything it had of our chains."""
        self._restore.answered(did)

    def _did_at(self, url: str) -> str | None:
        info = self._info.get(f"url:{url}")
        return None if info is None else info.did

    async def may_share(self, ledger: CID, peer: str) -> bool:
        return await self._access.may_share(ledger, peer)

    def _on_new_entries(self, entries: Sequence[Entry]) -> None:
        for session in list(self._sessions.values()):
            session.offer(entries)
        admitted = {e.ledger_id.raw: e.ledger_id for e in entries
                    if e.kind.startswith(MEMBER_KIND_PREFIX) or e.is_genesis}
        if admitted:
            # Someone may have just become a member, or the genesis tells who may see the ledger:
            # offer it now, not at the next link.
            for session in list(self._sessions.values()):
                self._spawn(session.reconsider(list(admitted.values())))

    def gossip_fork(self, proof: ForkProof, source: SyncSession | None) -> None:
        self.states.forget(proof.a.ledger_id)  # the author's entries past the fork stop counting
        for session in list(self._sessions.values()):
            if session is not source:
                session.gossip(proof)  # only where the ledger is shared: members-only proofs reach members only


__all__ = ["PeerInfo", "PeerMisbehaved", "Replicator"]
