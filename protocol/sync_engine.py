"""One link's sync conversation (SPEC §13) as a sans-IO state machine.

The engine owns every decision of the conversation and nothing else: it is fed
messages the peer sent, the store's answers and the current time, and hands
back actions (protocol/sync_actions.py: messages to send, ranges to read, entries to verify and store,
events to report). It never reads a clock, a socket or a store, so one loop
can drive it over a real link (node/) and another over a simulated network
(tests/sim/), the same code deciding in both.

Calling convention (what a driver does):

- `start(facts, now)` once the link is up, with the facts of every ledger the node replicates.
- For each frame: `parse(data, now)`; then `lookup(message)` names ledgers whose facts the
  engine needs (the driver reads them, following them first when asked), and
  `receive(message, now, facts)` handles it.
- Actions are performed in the order given. `Serve` / `Tail` are answered with `served` /
  `tail_read`; `Verify` with `verified`; `Store` (emitted in arrival order) with `stored`;
  `CheckIds` with `ids_checked`; `AnswerOwn` with `own_heads`.
- Entries newly stored by anyone go to `offer(entries, now)` (live push); a ledger whose
  visibility changed goes to `reconsider(facts, now)`.
- `handle_timer(now)` at `next_timer()`.

A peer's violation turns into `Send(Err)` then `Close(code, message)`; afterwards the
engine ignores every input. Per-ledger phases move only through `sync_table.step`.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Final

from .cid import CID
from .entry import Entry
from .errors import InvalidData
from .fork import MAX_FORK_PROOF_BYTES, ForkProof
from .sync import (
    WANT_MAX,
    Ents,
    Err,
    Fork,
    Front,
    Head,
    Level,
    Message,
    Own,
    RateLimit,
    Sent,
    Sub,
    Want,
    check_ents,
    decode_message,
    ents_messages,
    front_messages,
    frontier_digest,
    plan,
)
from .sync_actions import (
    Action,
    AnswerOwn,
    CheckIds,
    Close,
    KeepFork,
    LedgerFacts,
    Report,
    Rows,
    Send,
    Serve,
    Store,
    StoreResult,
    Tail,
    Verify,
)
from .sync_table import Event, Phase, step

#: The engine and its vocabulary (protocol/sync_actions.py): a driver imports both from here.
__all__ = [
    "EMPTY_DIGEST", "MAX_FRONT_HEADS", "MAX_NAMED_LEDGERS", "OWN_WANTS", "PEER_WANTS_QUEUED", "REQUEST_BURST",
    "REQUEST_RATE", "SUB_CHUNK", "WANT_TIMEOUT_S", "Action", "AnswerOwn", "CheckIds", "Close", "KeepFork",
    "LedgerFacts", "Report", "Rows", "Send", "Serve", "Store", "StoreResult", "SyncEngine", "Tail", "Verify",
]

REQUEST_RATE: Final = 200.0  # messages other than ents/sent a peer may send per second …
REQUEST_BURST: Final = 400.0  # … in bursts of this many
OWN_WANTS: Final = 8  # our wants unanswered per link (one per chain)
PEER_WANTS_QUEUED: Final = 64  # the peer's wants waiting to be served before `rate_limited`
MAX_NAMED_LEDGERS: Final = 1024  # ledgers a peer named that a link remembers, in case we follow them later
MAX_FRONT_HEADS: Final = 10_000  # heads the peer's fronts may hold on one link, all ledgers together
SUB_CHUNK: Final = 500  # ledgers per sub, heads per own answer: each fits one frame
WANT_TIMEOUT_S: Final = 120.0  # a want unanswered this long ends the link (`link_timeout`)
EMPTY_DIGEST: Final = frontier_digest({})


@dataclass(slots=True)
class _Job:
    ents: Ents
    entries: tuple[Entry, ...] | None = None  # set once verified
    stored: bool = False


class SyncEngine:
    """The conversation with one peer over one link. See the module docstring."""

    def __init__(self, me: bytes, peer: bytes, *, one_shot: bool = False, catching_up: bool = False) -> None:
        self.me = me
        self.peer = peer
        self.one_shot = one_shot
        self.failure: InvalidData | None = None
        self.closed = False
        self.limit = RateLimit(REQUEST_RATE, REQUEST_BURST)
        self.phase: dict[bytes, Phase] = {}
        self.ledgers: dict[bytes, CID] = {}
        self.facts: dict[bytes, LedgerFacts] = {}
        self.mine: dict[bytes, dict[bytes, Head]] = {}  # our frontier, kept current by offers and stores
        self.my_sub: dict[bytes, bytes] = {}
        self.their_sub: dict[bytes, bytes] = {}
        self.known: dict[bytes, dict[bytes, int]] = {}  # ledger -> author -> seq the peer holds
        self.advertised: dict[bytes, dict[bytes, int]] = {}  # what our front told the peer
        self.fronts: dict[bytes, dict[bytes, Head]] = {}
        self.front_heads = 0
        self.fronts_sent: set[bytes] = set()
        self.outstanding: dict[tuple[bytes, bytes], tuple[Want, float]] = {}
        # The next window of a chain, asked while `outstanding`'s full window is still answered or stored
        # (so the link never idles between windows); it becomes the chain's outstanding want at that `sent`.
        self.ahead: dict[tuple[bytes, bytes], tuple[Want, float]] = {}
        self.queued: deque[Want] = deque()
        self.checking: set[bytes] = set()  # ledgers waiting for ids_checked
        self.level_mine: set[bytes] = set()
        self.level_theirs: set[bytes] = set()
        self.probed: set[tuple[bytes, bytes]] = set()
        self.refetched: set[tuple[bytes, bytes, int]] = set()  # entries asked again (damaged here), once per link
        self.peer_wants: deque[Want] = deque()
        self.serving: Want | None = None
        self.jobs: dict[int, _Job] = {}
        self.inflow: deque[int | Sent] = deque()  # jobs and `sent`s in arrival order
        self.next_job = 0
        self.store_emitted = -1  # last job handed out as Store
        self.catching_up = catching_up
        self.restoring = catching_up
        self.own_pending: set[bytes] = set()
        self.own_answered = False
        self.sub_sent = False
        self.sub_received = False
        self.peer_err_seen = False
        self.received = 0
        self.expected = 0
        self.done = False

    # ---- small helpers ------------------------------------------------------------

    def _phase(self, raw: bytes) -> Phase:
        return self.phase.get(raw, Phase.UNSHARED)

    def _move(self, raw: bytes, event: Event) -> None:
        self.phase[raw] = step(self._phase(raw), event)

    def shared(self, raw: bytes) -> bool:
        return self._phase(raw) not in (Phase.UNSHARED, Phase.NAMED) or raw in self.own_pending

    def _shown(self, raw: bytes) -> dict[bytes, Head]:
        """Our frontier as we show it: empty while we lack the genesis (who may see it is unknown)."""
        facts = self.facts.get(raw)
        return dict(self.mine.get(raw, {})) if facts is not None and facts.genesis else {}

    def _learn(self, facts: LedgerFacts) -> None:
        raw = facts.ledger.raw
        self.ledgers[raw] = facts.ledger
        self.facts[raw] = facts
        mine = self.mine.setdefault(raw, {})
        for author, head in facts.heads.items():  # heads only grow: keep what offers told us since
            if author not in mine or head[0] > mine[author][0]:
                mine[author] = head

    def _known(self, raw: bytes) -> dict[bytes, int]:
        return self.known.setdefault(raw, {})

    def _note_known(self, raw: bytes, author: bytes, seq: int) -> None:
        chain = self._known(raw)
        if seq > chain.get(author, 0):
            chain[author] = seq

    def _fail(self, error: InvalidData) -> list[Action]:
        if self.closed:
            return []
        self.failure = error
        self.closed = True
        return [Send(Err(error.code, error.message[:200])), Close(error.code, error.message)]

    def _guard(self, fn: Iterable[Action]) -> list[Action]:
        """Run a handler; a violation replaces its output with err + close."""
        if self.closed:
            return []
        try:
            return list(fn)
        except InvalidData as exc:
            return self._fail(exc)

    def _charge(self, now: float) -> None:
        if not self.limit.allow(now):
            raise InvalidData("rate_limited", f"more than {REQUEST_RATE:.0f} requests per second")

    # ---- start, parse, receive ------------------------------------------------------

    def start(self, facts: Sequence[LedgerFacts], now: float) -> list[Action]:
        """The link is up: send the opening `sub` (visible ledgers) and, catching up, `own`."""
        for f in facts:
            self._learn(f)
        return self._guard(self._start(facts))

    def _start(self, facts: Sequence[LedgerFacts]) -> Iterable[Action]:
        yield from self._send_sub([f for f in facts if f.replicated and f.genesis and f.visible], opening=True)
        if self.catching_up:
            yield Send(Own(None))

    def parse(self, data: bytes, now: float) -> tuple[Message | None, list[Action]]:
        """Decode one frame; a malformed one is a violation, an unknown type is charged and ignored."""
        if self.closed:
            return None, []
        try:
            return decode_message(data), []
        except InvalidData as exc:
            if exc.code == "unknown_message":
                return None, self._guard(self._charge_only(now))
            return None, self._fail(exc)

    def _charge_only(self, now: float) -> Iterable[Action]:
        self._charge(now)
        return ()

    def lookup(self, message: Message) -> tuple[tuple[CID, ...], bool]:
        """Ledgers whose facts `receive(message)` needs, and whether to follow them first."""
        if isinstance(message, Sub):
            return tuple(ledger for ledger, _ in message.ledgers), False
        if isinstance(message, Own) and message.heads is not None and self.restoring:
            return tuple(ledger for ledger, _, _ in message.heads), True
        return (), False

    def receive(self, message: Message, now: float, facts: Sequence[LedgerFacts] = ()) -> list[Action]:
        for f in facts:
            self._learn(f)
        return self._guard(self._receive(message, now, facts))

    def _receive(self, m: Message, now: float, facts: Sequence[LedgerFacts]) -> Iterable[Action]:
        if isinstance(m, Ents):
            yield from self._on_ents(m)
        elif isinstance(m, Sent):
            self.inflow.append(m)
            yield from self._drain(now)
        else:
            self._charge(now)  # every other message costs the peer a token, `err` and `fork` too
            if isinstance(m, Want):
                yield from self._on_want(m)
            elif isinstance(m, Sub):
                yield from self._on_sub(m, facts)
            elif isinstance(m, Front):
                yield from self._on_front(m, now)
            elif isinstance(m, Level):
                yield from self._on_level(m)
            elif isinstance(m, Fork):
                yield from self._on_fork(m)
            elif isinstance(m, Own):
                yield from self._on_own(m, facts, now)
            elif isinstance(m, Err) and not self.peer_err_seen:  # one per link reaches the log
                self.peer_err_seen = True
                yield Report("peer_err", text=f"{m.code}: {m.message[:200]}")

    # ---- sub and front ------------------------------------------------------------------

    def _send_sub(self, facts: Sequence[LedgerFacts], *, opening: bool = False) -> Iterable[Action]:
        items: list[tuple[CID, bytes]] = []
        for f in facts:
            raw = f.ledger.raw
            if raw in self.my_sub:
                continue
            digest = frontier_digest(self._shown(raw)) if f.genesis else EMPTY_DIGEST
            self.my_sub[raw] = digest
            if self._phase(raw) is Phase.UNSHARED:
                self._move(raw, Event.NAME)
            items.append((f.ledger, digest))
        if not items and self.sub_sent:
            return
        self.sub_sent = True
        for i in range(0, max(len(items), 1), SUB_CHUNK):
            yield Send(Sub(tuple(items[i : i + SUB_CHUNK])))

    def _on_sub(self, m: Sub, facts: Sequence[LedgerFacts]) -> Iterable[Action]:
        by_raw = {f.ledger.raw: f for f in facts}
        for ledger, digest in m.ledgers:
            raw = ledger.raw
            if raw in self.their_sub or len(self.their_sub) < MAX_NAMED_LEDGERS:
                self.their_sub[raw] = digest
            yield from self._answer_sub_item(ledger, digest, by_raw.get(raw) or self.facts.get(raw))
        self.sub_received = True
        yield from self._check_done()

    def _answer_sub_item(self, ledger: CID, digest: bytes, f: LedgerFacts | None) -> Iterable[Action]:
        raw = ledger.raw
        if f is None or not f.replicated or (f.genesis and not f.visible):
            return  # reveal nothing of a ledger we do not replicate or the peer may not see
        if self.shared(raw) and raw not in self.own_pending:
            return  # named twice: the first counts
        if raw not in self.my_sub:
            yield from self._send_sub([f])
        shown = self._shown(raw)
        if frontier_digest(shown) == digest:
            self._move(raw, Event.SUB_EQUAL)
            self.known[raw] = {a: seq for a, (seq, _) in shown.items()}
            self.level_mine.add(raw)
            self.level_theirs.add(raw)
            yield from self._synced()
        else:
            self._move(raw, Event.SUB_DIFFERS)
            yield from self._send_front(raw)

    def _send_front(self, raw: bytes) -> Iterable[Action]:
        if raw in self.fronts_sent:
            return
        self.fronts_sent.add(raw)
        shown = self._shown(raw)
        self.advertised[raw] = {a: seq for a, (seq, _) in shown.items()}
        for front in front_messages(self.ledgers[raw], shown):
            yield Send(front)

    def _on_front(self, m: Front, now: float) -> Iterable[Action]:
        raw = m.ledger.raw
        phase = self._phase(raw)
        if phase is Phase.UNSHARED:
            return  # not shared with this peer: ignore, reveal nothing
        self._move(raw, Event.FRONT_DONE if m.done else Event.FRONT_PART)
        part = self.fronts.setdefault(raw, {})
        for author, seq, cid in m.heads:
            if author not in part:
                self.front_heads += 1
            part[author] = (seq, cid)
        if self.front_heads > MAX_FRONT_HEADS:
            raise InvalidData("rate_limited", f"fronts of more than {MAX_FRONT_HEADS} heads on one link")
        if not m.done:
            return
        yield from self._send_front(raw)  # fronts go both ways, whoever saw a difference first
        theirs = self.fronts.pop(raw)
        for author, (seq, _) in theirs.items():
            self._note_known(raw, author, seq)
        mine = dict(self.mine.get(raw, {}))
        p = plan(m.ledger, mine, theirs)
        self.expected += p.behind
        if p.behind:
            yield Report("behind", p.behind)
        deeper = []
        for author, seq, their_id in p.suspects:
            if seq == mine[author][0]:
                yield from self._probe(m.ledger, author, seq, now)
            else:
                deeper.append((author, seq, their_id))
        if deeper:
            self.checking.add(raw)
            yield CheckIds(m.ledger, tuple(deeper))
        for want in p.wants:
            yield from self._want(want, now)
        yield from self._pump(now)
        yield from self._maybe_level(raw)

    def ids_checked(self, ledger: CID, forked: Sequence[tuple[bytes, int]], now: float) -> list[Action]:
        """The answer to `CheckIds`: the (author, seq) where the node's entry has another id."""
        return self._guard(self._ids_checked(ledger, forked, now))

    def _ids_checked(self, ledger: CID, forked: Sequence[tuple[bytes, int]], now: float) -> Iterable[Action]:
        self.checking.discard(ledger.raw)
        for author, seq in forked:
            yield from self._probe(ledger, author, seq, now)
        yield from self._pump(now)
        yield from self._maybe_level(ledger.raw)

    def _on_level(self, m: Level) -> Iterable[Action]:
        raw = m.ledger.raw
        if not self.shared(raw):
            return  # nothing is remembered for a ledger that is not shared
        self._move(raw, Event.LEVEL)
        self.level_theirs.add(raw)
        # The peer holds all we advertised, whichever link it fetched it from: without this a
        # peer that got our entries elsewhere would stay "still fetching" and never get a push.
        for author, seq in self.advertised.get(raw, {}).items():
            self._note_known(raw, author, seq)
        yield from self._check_done()

    # ---- our wants --------------------------------------------------------------------

    def _want(self, want: Want, now: float) -> Iterable[Action]:
        raw = want.ledger.raw
        if self._phase(raw) is not Phase.UNSHARED:  # own-chain fetches of safe restore may be unshared
            self._move(raw, Event.ASKED)
        self.queued.append(want)
        return ()

    def _probe(self, ledger: CID, author: bytes, seq: int, now: float) -> Iterable[Action]:
        """Ask for the peer's entry at `seq`, which differs from ours: storing it proves the fork."""
        if (ledger.raw, author) in self.probed:
            return
        self.probed.add((ledger.raw, author))
        yield from self._want(Want(ledger, author, seq, 1), now)

    def refetch(self, ledger: CID, author: bytes, seq: int, now: float) -> list[Action]:
        """Ask the peer again for an entry this node stored and found damaged (SPEC.md §10, §13.5 step 8): only
        on a link where the ledger is shared (a members-only ledger's members), once per link."""
        key = (ledger.raw, author, seq)
        if self.closed or not self.shared(ledger.raw) or key in self.refetched:
            return []
        self.refetched.add(key)
        return self._guard(self._refetch(Want(ledger, author, seq, 1), now))

    def _refetch(self, want: Want, now: float) -> Iterable[Action]:
        yield from self._want(want, now)
        yield from self._pump(now)

    def _pump(self, now: float) -> Iterable[Action]:
        """Send queued wants, one per chain at a time, at most OWN_WANTS at once."""
        held: list[Want] = []
        while self.queued and len(self.outstanding) < OWN_WANTS:
            want = self.queued.popleft()
            key = (want.ledger.raw, want.author)
            if key in self.outstanding:
                held.append(want)  # that chain is busy; other chains go ahead
                continue
            self.outstanding[key] = (want, now)
            yield Send(want)
            yield from self._ask_ahead(key, want, now)
        self.queued.extendleft(reversed(held))

    def _ask_ahead(self, key: tuple[bytes, bytes], want: Want, now: float) -> Iterable[Action]:
        """After a full window, ask for the next one now if the peer is known to hold more of the chain."""
        if key in self.ahead or want.limit < WANT_MAX:
            return
        end = want.start + want.limit - 1
        have = self._known(want.ledger.raw).get(want.author, 0)
        if have > end:
            following = Want(want.ledger, want.author, end + 1, min(WANT_MAX, have - end))
            self.ahead[key] = (following, now)
            yield Send(following)

    def _busy(self, raw: bytes) -> bool:
        return (
            raw in self.fronts or raw in self.checking or any(k[0] == raw for k in self.outstanding)
            or any(w.ledger.raw == raw for w in self.queued)
        )

    def _maybe_level(self, raw: bytes) -> Iterable[Action]:
        if self._busy(raw):
            return
        if self._phase(raw) in (Phase.FETCHING, Phase.LEVEL, Phase.COMPARING, Phase.NAMED):
            if self._phase(raw) is Phase.FETCHING:
                self._move(raw, Event.ANSWERED)
            if self._phase(raw) is Phase.LEVEL and raw not in self.level_mine:
                self.level_mine.add(raw)
                yield Send(Level(self.ledgers[raw], frontier_digest(self._shown(raw))))
                yield from self._synced()
        yield from self._own_progress(raw)
        yield from self._check_done()

    def _on_sent(self, m: Sent, now: float) -> Iterable[Action]:
        key = (m.ledger.raw, m.author)
        entry = self.outstanding.pop(key, None)
        if entry is None:
            raise InvalidData("protocol_error", "sent for a want we did not make")
        want = entry[0]
        following = self.ahead.pop(key, None)
        if following is not None:
            # The next window was asked already: it is the chain's unanswered want now (its `sent` follows).
            self.outstanding[key] = following
            if m.upto == want.start + want.limit - 1:
                yield from self._ask_ahead(key, following[0], now)
        else:
            have = self._known(m.ledger.raw).get(m.author, 0)
            again = want.limit == 1 and (m.ledger.raw, m.author, want.start) in self.refetched
            if m.upto >= want.start and have > m.upto and not again:
                yield from self._want(Want(m.ledger, m.author, m.upto + 1, min(WANT_MAX, have - m.upto)), now)
        yield from self._pump(now)
        yield from self._maybe_level(m.ledger.raw)

    def _synced(self) -> Iterable[Action]:
        shared = [raw for raw in self.phase if self.shared(raw)]
        if shared and all(raw in self.level_mine for raw in shared):
            yield Report("synced")

    def _check_done(self) -> Iterable[Action]:
        """A one-shot sync is done when every shared ledger is level both ways."""
        if not self.one_shot or self.done or not self.sub_received or self.outstanding or self.queued:
            return
        if self.fronts or self.checking or self.inflow:
            return
        shared = [raw for raw in self.phase if self.shared(raw)]
        if all(raw in self.level_mine and raw in self.level_theirs for raw in shared):
            self.done = True
            yield Report("done")
            yield Close(None, "done")

    # ---- serving the peer's wants ---------------------------------------------------------

    def _may_serve(self, want: Want) -> bool:
        if want.author == self.peer:
            return True  # the author may always fetch its own chain (safe restore, §13.8)
        f = self.facts.get(want.ledger.raw)
        return f is not None and f.replicated and f.genesis and f.visible

    def _on_want(self, m: Want) -> Iterable[Action]:
        if len(self.peer_wants) >= PEER_WANTS_QUEUED:
            raise InvalidData("rate_limited", f"more than {PEER_WANTS_QUEUED} wants waiting")
        self.peer_wants.append(m)
        yield from self._serve_next()

    def _serve_next(self) -> Iterable[Action]:
        while self.serving is None and self.peer_wants:
            want = self.peer_wants.popleft()
            if self._may_serve(want):
                self.serving = want
                yield Serve(want)
            else:
                yield Send(Sent(want.ledger, want.author, want.start - 1))  # nothing, and nothing revealed

    def served(self, want: Want, rows: Rows, now: float) -> list[Action]:
        """The store's rows for the want being served: (seq, header, payload) from want.start on."""
        return self._guard(self._served(want, rows))

    def _served(self, want: Want, rows: Rows) -> Iterable[Action]:
        if self.serving != want:
            return
        self.serving = None
        upto = want.start - 1
        run: list[tuple[bytes, bytes | None]] = []
        for seq, header, payload in rows[: want.limit]:
            if seq != upto + 1:
                break
            run.append((header, payload))
            upto = seq
        for message in ents_messages(want.ledger, want.author, run):
            yield Send(message)
        if run:
            self._note_known(want.ledger.raw, want.author, upto)
        yield Send(Sent(want.ledger, want.author, upto))
        if self.shared(want.ledger.raw) and not self._still_fetching(want.ledger.raw, want.author):
            # Push what was stored on this chain while the peer fetched it.
            yield Tail(want.ledger, want.author, self._known(want.ledger.raw).get(want.author, 0) + 1)
        yield from self._serve_next()

    def _still_fetching(self, raw: bytes, author: bytes) -> bool:
        return self._known(raw).get(author, 0) < self.advertised.get(raw, {}).get(author, 0)

    def tail_read(
        self, ledger: CID, author: bytes, rows: Rows, now: float
    ) -> list[Action]:
        """Rows read for a `Tail`: pushed if they still start right after what the peer holds."""
        return self._guard(self._push_rows(ledger, author, rows))

    def _push_rows(self, ledger: CID, author: bytes, rows: Rows) -> Iterable[Action]:
        raw = ledger.raw
        have = self._known(raw).get(author, 0)
        run: list[tuple[bytes, bytes | None]] = []
        for seq, header, payload in rows[:WANT_MAX]:
            if seq <= have and not run:
                continue
            if seq != have + 1:
                break
            run.append((header, payload))
            have = seq
        if run:
            self._note_known(raw, author, have)
            for message in ents_messages(ledger, author, run):
                yield Send(message)

    def own_heads(self, heads: Sequence[tuple[CID, int, CID]], now: float) -> list[Action]:
        """The heads of the peer's own chains here (answer to `AnswerOwn`)."""
        if self.closed:
            return []
        return [Send(Own(tuple(heads[:SUB_CHUNK])))]

    # ---- live push ------------------------------------------------------------------------------

    def offer(self, entries: Sequence[Entry], now: float) -> list[Action]:
        """Entries just stored (by anyone): track our frontier, push runs the peer lacks."""
        return self._guard(self._offer(entries))

    def _offer(self, entries: Sequence[Entry]) -> Iterable[Action]:
        runs: dict[tuple[bytes, bytes], list[Entry]] = {}
        for entry in entries:
            raw = entry.ledger_id.raw
            author = entry.header.author
            mine = self.mine.get(raw)
            if mine is not None and (author not in mine or entry.seq > mine[author][0]):
                mine[author] = (entry.seq, entry.id)
            runs.setdefault((raw, author), []).append(entry)
        for (raw, author), run in runs.items():
            if not self.shared(raw) or self._still_fetching(raw, author):
                continue
            have = self._known(raw).get(author, 0)
            fresh = [e for e in run if e.seq > have]
            if not fresh:
                continue
            if fresh[0].seq != have + 1:
                # The peer lacks earlier entries too (a push it missed, a run we skipped):
                # read them from the store rather than leaving the peer a gap nobody fills.
                yield Tail(fresh[0].ledger_id, author, have + 1)
                continue
            self._note_known(raw, author, fresh[-1].seq)
            for message in ents_messages(fresh[0].ledger_id, author, [(e.header_raw, e.payload_raw) for e in fresh]):
                yield Send(message)

    def gossip(self, proof: ForkProof) -> list[Action]:
        """Send a fork proof the node learned, if its ledger is shared here (members-only: the peer
        may see it, which `shared` already means)."""
        if self.closed or not self.shared(proof.a.ledger_id.raw):
            return []
        return [Send(Fork(proof.encode()))]

    def reconsider(self, facts: Sequence[LedgerFacts], now: float) -> list[Action]:
        """Who may see these ledgers changed (a member admitted, the genesis arrived)."""
        for f in facts:
            self._learn(f)
        return self._guard(self._reconsider(facts))

    def _reconsider(self, facts: Sequence[LedgerFacts]) -> Iterable[Action]:
        yield from self._send_sub([f for f in facts if f.replicated and (not f.genesis or f.visible)])
        for f in facts:
            raw = f.ledger.raw
            if raw in self.their_sub and not self.shared(raw):
                yield from self._answer_sub_item(f.ledger, self.their_sub[raw], f)

    # ---- forks ------------------------------------------------------------------------------

    def _on_fork(self, m: Fork) -> Iterable[Action]:
        if len(m.proof) > MAX_FORK_PROOF_BYTES:
            raise InvalidData("bad_message", f"a fork proof is at most {MAX_FORK_PROOF_BYTES} bytes")
        proof = ForkProof.decode(m.proof)
        f = self.facts.get(proof.a.ledger_id.raw)
        if f is not None and f.replicated and self.shared(proof.a.ledger_id.raw):
            yield KeepFork(proof)  # else: a ledger we do not replicate here; nothing is kept

    # ---- safe restore -----------------------------------------------------------------------

    def _on_own(self, m: Own, facts: Sequence[LedgerFacts], now: float) -> Iterable[Action]:
        if m.heads is None:
            yield AnswerOwn()
            return
        if not self.restoring:
            return  # an answer we no longer wait for
        self.own_answered = True
        by_raw = {f.ledger.raw: f for f in facts}
        named = []
        for ledger, seq, their_id in m.heads:
            f = by_raw.get(ledger.raw)
            if f is None:
                continue
            self.ledgers[ledger.raw] = ledger
            head = f.heads.get(self.me)
            if head is None or seq > head[0]:
                self._note_known(ledger.raw, self.me, seq)
                self.own_pending.add(ledger.raw)
                start = 1 if head is None else head[0] + 1
                self.queued.append(Want(ledger, self.me, start, min(WANT_MAX, seq - start + 1)))
            elif seq == head[0] and their_id != head[1]:
                yield from self._probe(ledger, self.me, seq, now)
            named.append(f)
        yield from self._pump(now)
        yield from self._send_sub([f for f in named if f.genesis and f.visible])
        yield from self._own_progress(None)

    def _own_progress(self, raw: bytes | None) -> Iterable[Action]:
        if raw is not None and raw in self.own_pending and (raw, self.me) not in self.outstanding and not any(
            w.ledger.raw == raw and w.author == self.me for w in self.queued
        ):
            self.own_pending.discard(raw)
        if self.restoring and self.own_answered and not self.own_pending:
            self.restoring = False
            yield Report("restored")

    # ---- taking in entries ------------------------------------------------------------------

    def _on_ents(self, m: Ents) -> Iterable[Action]:
        raw = m.ledger.raw
        if not self.shared(raw) and self._phase(raw) is not Phase.NAMED and raw not in self.own_pending:
            raise InvalidData("protocol_error", "entries of a ledger not shared on this link")
        if self.shared(raw) and raw not in self.own_pending:
            self._move(raw, Event.ENTS)
        job = self.next_job
        self.next_job += 1
        self.jobs[job] = _Job(m)
        self.inflow.append(job)
        yield Verify(job, m)

    @property
    def pending_jobs(self) -> int:
        """`ents` messages not yet stored: the driver stops reading at its inbox limit."""
        return len(self.jobs)

    def verified(self, job: int, entries: Sequence[Entry], error: InvalidData | None, now: float) -> list[Action]:
        """Entries of job `job` decoded and verified (in order), or the first entry's refusal."""
        return self._guard(self._verified(job, entries, error, now))

    def _verified(self, job: int, entries: Sequence[Entry], error: InvalidData | None, now: float) -> Iterable[Action]:
        j = self.jobs.get(job)
        if j is None or j.entries is not None:
            return
        if error is not None:
            raise error
        check_ents(j.ents, entries)
        j.entries = tuple(entries)
        # The peer has what it sent: noted now, so live push does not echo it back.
        self._note_known(j.ents.ledger.raw, j.ents.author, entries[-1].seq)
        yield from self._drain_stores()

    def _drain_stores(self) -> Iterable[Action]:
        """Hand out Store actions in arrival order, each once its entries are verified."""
        while (j := self.jobs.get(self.store_emitted + 1)) is not None and j.entries is not None:
            self.store_emitted += 1
            yield Store(self.store_emitted, j.entries)

    def stored(self, job: int, result: StoreResult, now: float) -> list[Action]:
        """What storing job `job` did."""
        return self._guard(self._stored(job, result, now))

    def _stored(self, job: int, result: StoreResult, now: float) -> Iterable[Action]:
        j = self.jobs.pop(job, None)
        if j is None:
            return
        j.stored = True
        ledger, author = j.ents.ledger, j.ents.author
        raw = ledger.raw
        self.received += len(j.entries or ())
        if result.head is not None and raw in self.mine:
            mine = self.mine[raw]
            if author not in mine or result.head[0] > mine[author][0]:
                mine[author] = result.head
        if result.gap_last is not None and (raw, author) not in self.outstanding and not any(
            w.ledger.raw == raw and w.author == author for w in self.queued
        ):
            start = 1 if result.head is None else result.head[0] + 1
            if result.gap_last >= start:
                yield from self._want(Want(ledger, author, start, min(WANT_MAX, result.gap_last - start + 1)), now)
        for seq in result.bad_prev:
            if seq > 1:
                yield from self._probe(ledger, author, seq - 1, now)
        yield from self._pump(now)
        yield from self._drain(now)

    def _drain(self, now: float) -> Iterable[Action]:
        """Handle `sent`s whose earlier entries are all stored (a `sent` never overtakes them)."""
        while self.inflow:
            head = self.inflow[0]
            if isinstance(head, int):
                if head in self.jobs:
                    return
                self.inflow.popleft()
                continue
            self.inflow.popleft()
            yield from self._on_sent(head, now)
        yield from self._check_done()

    # ---- time ---------------------------------------------------------------------------

    def next_timer(self) -> float | None:
        if not self.outstanding or self.closed:
            return None
        return min(at for _, at in self.outstanding.values()) + WANT_TIMEOUT_S

    def handle_timer(self, now: float) -> list[Action]:
        """A want unanswered for WANT_TIMEOUT_S ends the link: the peer stalls, redial and resync."""
        deadline = self.next_timer()
        if deadline is None or now < deadline or self.closed:
            return []
        self.closed = True
        self.failure = InvalidData("link_timeout", f"a want unanswered for {WANT_TIMEOUT_S:.0f} s")
        return [Close("link_timeout", self.failure.message)]
