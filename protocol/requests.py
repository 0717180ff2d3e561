"""Every write a member asks for, declared once: its fields, their kinds, bounds and documentation.

The API (node/http/), the dashboard's forms (node/web/forms.py) and the CLI (node/cli/options.py) read
and show each request through these declarations (protocol/request_fields.py says how); `build` turns a
request into the entry it appends, through the builders of protocol/ledger_ops.py and governance_ops.py,
which check it against the ledger's state and refuse with the code the member sees.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Final

from . import governance_ops, key_ops, ledger_ops
from .cid import CID
from .entry import GENESIS_KIND, Entry
from .errors import LocalError
from .governance import MAX_OPTIONS, MAX_TITLE_CHARS
from .kel import KeyLog
from .payouts import Payout
from .pledges import PERIODS
from .references import MAX_CITES
from .request_fields import Kind, WriteRequest, param
from .rules import Rules
from .state import LedgerState
from .valueflows import MAX_NAME_CHARS, MAX_NOTE_CHARS
from .writes import MAX_LEDGER_NAME_CHARS, VISIBILITIES, AppendRequest, check_append_kind, genesis_body

_LEDGER: Final = "LEDGER"


@dataclass(frozen=True, slots=True)
class Found:
    """What a write's build reads from the store besides the ledger's state. protocol/ does no I/O, so the
    write service (node/store/writes.py) looks it up: the entry the request names, the store's signing key,
    and the head of the chain the request's `chain_of` names."""

    target: Entry | None = None  # the entry named by the path (TARGET "entry", "motion" or "written")
    key: bytes | None = None  # the public key this node's store signs with
    head: CID | None = None  # the last entry of `chain_of`'s key in the ledger, if this node holds one


class LedgerWrite(WriteRequest):
    """A write whose entry goes to a ledger named by the request (its `ledger`), or to the ledger of the entry
    it names (TARGET "entry"; "motion" and "written": an entry that is not a ledger's genesis, the one
    refused as not "of a ledger")."""

    __slots__ = ()
    TARGET: ClassVar[str] = "ledger"

    def target(self) -> CID:
        (named,) = [getattr(self, f.name) for f in self.fields() if f.spec.in_path]
        assert isinstance(named, CID)
        return named

    def chain_of(self, state: LedgerState) -> str | None:
        """The did whose key's chain head the build needs (`Found.head`); None: no head is needed."""
        return None

    def build(self, state: LedgerState, me: str, ts: int) -> AppendRequest:
        raise NotImplementedError

    def build_with(self, state: LedgerState, me: str, ts: int, found: Found) -> AppendRequest:
        """`build`, given what the write service found in the store (most writes need none of it)."""
        return self.build(state, me, ts)


@dataclass(frozen=True, slots=True, kw_only=True)
class Contribute(LedgerWrite):
    SUMMARY: ClassVar[str] = "Log a contribution (a `vf.event` entry)"
    PATH: ClassVar[str] = "/ledgers/{ledger}/contributions"

    ledger: CID = param(Kind.CID, required=True, in_path=True, metavar=_LEDGER)
    action: str = param(Kind.TEXT, "a ValueFlows action: work, use, transfer …", required=True, cli="--action",
                        metavar="ACTION")
    quantity: str | int = param(Kind.DECIMAL, "an exact decimal, e.g. 2.5", required=True, code="bad_quantity",
                                cli="--quantity", metavar="N")
    unit: str = param(Kind.TEXT, "one of the ledger's units", required=True, cli="--unit", metavar="UNIT")
    resource: str | None = param(Kind.TEXT, "what kind of resource or skill (resourceClassifiedAs)",
                                 cli="--resource", metavar="TYPE")
    provider: str | None = param(Kind.TEXT, "who gave (default: you)", cli="--provider", metavar="DID")
    receiver: str | None = param(Kind.TEXT, "who received (default: the coop, i.e. the ledger's id)",
                                 cli="--receiver", metavar="DID")
    at: str | None = param(Kind.TEXT, "when (ISO 8601 date or date-time with offset)", cli="--at", metavar="TIME",
                           group="when")
    start: str | None = param(Kind.TEXT, "when it began (with `to`)", wire="from", cli="--from", metavar="TIME",
                              group="when", cli_help="when it began (with --to)")
    end: str | None = param(Kind.TEXT, "when it ended (with `from`)", wire="to", cli="--to", metavar="TIME",
                            cli_help="when it ended (with --from)")
    note: str | None = param(Kind.TEXT, max_chars=MAX_NOTE_CHARS, cli="--note", metavar="TEXT")
    corrects: CID | None = param(Kind.CID, "a contribution of yours this one corrects", cli="--corrects",
                                 metavar="ENTRY_ID")
    fulfills: CID | None = param(Kind.CID, "the pledge this transfer pays (SPEC.md §18.5)", cli="--fulfills",
                                 metavar="PLEDGE_ID", cli_help="the pledge this transfer pays (tally pledge create)")
    cites: tuple[CID, ...] = param(
        Kind.CIDS, "entries of other ledgers it cites, by id (SPEC.md §18.6; nothing of them is copied)",
        default=(), max_items=MAX_CITES, cli="--cites", metavar="ENTRY_ID",
        cli_help="an entry of another ledger this one cites, by id (repeatable; nothing of it is copied)")

    def build(self, state: LedgerState, me: str, ts: int) -> AppendRequest:
        return ledger_ops.contribute(
            state, me, action=self.action, quantity=self.quantity, unit=self.unit, ts=ts, resource=self.resource,
            provider=self.provider, receiver=self.receiver, at=self.at, start=self.start, end=self.end,
            note=self.note, corrects=self.corrects, fulfills=self.fulfills, cites=self.cites,
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class Endorse(LedgerWrite):
    SUMMARY: ClassVar[str] = "Accept or reject a contribution (a `vf.endorse` entry)"
    TARGET: ClassVar[str] = "entry"
    PATH: ClassVar[str] = "/entries/{entry}/endorsements"

    entry: CID = param(Kind.CID, required=True, in_path=True, metavar="ENTRY_ID")
    verdict: str = param(Kind.CHOICE, required=True, choices=("accept", "reject"), code="bad_request",
                         cli="--reject", switch=("reject", "accept"), cli_help="reject it instead of accepting it")
    note: str | None = param(Kind.TEXT, max_chars=MAX_NOTE_CHARS, cli="--note", metavar="TEXT")

    def build(self, state: LedgerState, me: str, ts: int) -> AppendRequest:
        return ledger_ops.endorse(state, me, self.entry, accept=self.verdict == "accept", note=self.note, ts=ts)


@dataclass(frozen=True, slots=True, kw_only=True)
class Admit(LedgerWrite):
    SUMMARY: ClassVar[str] = "Admit an agent to a ledger (a `member.admit` entry)"
    PATH: ClassVar[str] = "/ledgers/{ledger}/members"

    ledger: CID = param(Kind.CID, required=True, in_path=True, metavar=_LEDGER)
    agent: str = param(Kind.DID, required=True, metavar="DID")

    def build(self, state: LedgerState, me: str, ts: int) -> AppendRequest:
        return ledger_ops.admit(state, me, self.agent, ts)


@dataclass(frozen=True, slots=True, kw_only=True)
class Leave(LedgerWrite):
    SUMMARY: ClassVar[str] = "Leave a ledger (a `member.leave` entry)"
    PATH: ClassVar[str] = "/ledgers/{ledger}/leave"

    ledger: CID = param(Kind.CID, required=True, in_path=True, metavar=_LEDGER)

    def build(self, state: LedgerState, me: str, ts: int) -> AppendRequest:
        return ledger_ops.leave(state, me, ts)


@dataclass(frozen=True, slots=True, kw_only=True)
class Name(LedgerWrite):
    SUMMARY: ClassVar[str] = ("Set the name the other members see for the owner in a ledger (a `member.about` "
                              "entry)")
    PATH: ClassVar[str] = "/ledgers/{ledger}/about"

    ledger: CID = param(Kind.CID, required=True, in_path=True, metavar=_LEDGER)
    name: str = param(Kind.TEXT, f"1 to {MAX_NAME_CHARS} characters, e.g. \"Ana Silva\"", required=True,
                      min_chars=1, max_chars=MAX_NAME_CHARS, metavar="NAME")

    def build(self, state: LedgerState, me: str, ts: int) -> AppendRequest:
        return ledger_ops.about(state, me, self.name, ts)


@dataclass(frozen=True, slots=True, kw_only=True)
class MotionCreate(LedgerWrite):
    SUMMARY: ClassVar[str] = "Propose a motion (a `gov.motion` entry); with `amend`, passing it amends the rules"
    PATH: ClassVar[str] = "/ledgers/{ledger}/motions"

    ledger: CID = param(Kind.CID, required=True, in_path=True, metavar=_LEDGER)
    title: str = param(Kind.TEXT, required=True, max_chars=MAX_TITLE_CHARS, cli="--title", metavar="TEXT")
    options: tuple[str, ...] = param(
        Kind.TEXTS, "the options to score: 2 or more; with `amend` the default is yes and no", default=(),
        max_items=MAX_OPTIONS, cli="--option", metavar="OPTION",
        cli_help="an option to score (repeatable, 2 or more; with --amend the default is yes and no)")
    closes: str | None = param(Kind.TEXT, "ISO 8601 date or date-time with offset; from then on any member may "
                               "close it (before, only you)", cli="--closes", metavar="TIME")
    amend: Mapping[str, Any] | None = param(
        Kind.OBJECT, "a partial rules table (SPEC.md §18.3), as an amendment file: if the first option wins, its "
        "tables replace the rules' own from the closing on", code="bad_amendment", cli="--amend",
        metavar="RULES_FILE", cli_help="a partial rules file (TOML): if the first option wins, its tables replace "
        "the rules' own from the closing on")
    note: str | None = param(Kind.TEXT, max_chars=MAX_NOTE_CHARS, cli="--note", metavar="TEXT")

    def build(self, state: LedgerState, me: str, ts: int) -> AppendRequest:
        return governance_ops.create_motion(state, me, title=self.title, options=self.options, ts=ts,
                                            closes=self.closes, amend=self.amend, note=self.note)


@dataclass(frozen=True, slots=True, kw_only=True)
class MotionClose(LedgerWrite):
    SUMMARY: ClassVar[str] = "Close a motion (a `gov.close` entry listing the ballots it counts)"
    PATH: ClassVar[str] = "/motions/{motion}/close"
    TARGET: ClassVar[str] = "motion"

    motion: CID = param(Kind.CID, required=True, in_path=True, metavar="MOTION")
    early: bool = param(Kind.BOOL, "close it before the closing time the members were told (version 1 rules let "
                        "its proposer; every member's node shows it was closed early)", default=False,
                        cli="--early", form="confirm")

    def build(self, state: LedgerState, me: str, ts: int) -> AppendRequest:
        return governance_ops.close_motion(state, me, self.motion, ts, early=self.early)


@dataclass(frozen=True, slots=True, kw_only=True)
class Vote(LedgerWrite):
    SUMMARY: ClassVar[str] = "Vote on a motion (a `gov.vote` entry); a later ballot of the same member replaces it"
    PATH: ClassVar[str] = "/motions/{motion}/votes"
    TARGET: ClassVar[str] = "motion"

    motion: CID = param(Kind.CID, required=True, in_path=True, metavar="MOTION")
    scores: Mapping[str, int] = param(
        Kind.SCORES, "a whole score for an option; an option left out is blank", required=True,
        code="vote_out_of_range", form="score", cli="--score", metavar="OPTION=N",
        cli_help="a whole score for an option (repeatable); an option left out is blank")

    def build(self, state: LedgerState, me: str, ts: int) -> AppendRequest:
        return governance_ops.vote(state, me, self.motion, self.scores, ts)


@dataclass(frozen=True, slots=True, kw_only=True)
class PledgeCreate(LedgerWrite):
    SUMMARY: ClassVar[str] = "Pledge recurring transfers to the ledger (a `vf.commitment` entry)"
    PATH: ClassVar[str] = "/ledgers/{ledger}/pledges"

    ledger: CID = param(Kind.CID, required=True, in_path=True, metavar=_LEDGER)
    amount: str | int = param(Kind.DECIMAL, "due each period (per `per` unit), e.g. 0.10", required=True,
                              code="bad_quantity", cli="--amount", metavar="N",
                              cli_help="due each period (per --per unit), e.g. 0.10")
    unit: str = param(Kind.TEXT, "one of the ledger's units, e.g. euro", required=True, cli="--unit",
                      metavar="UNIT")
    per: str | None = param(Kind.TEXT, "the amount is per unit of a basis, e.g. m2 (with `basis`)", cli="--per",
                            metavar="UNIT", cli_help="the amount is per unit of a basis, e.g. m2 (with --basis)")
    basis: str | int | None = param(Kind.DECIMAL, "how many `per` units, e.g. 300", code="bad_quantity",
                                    cli="--basis", metavar="N", cli_help="how many --per units, e.g. 300")
    every: str = param(Kind.CHOICE, required=True, choices=tuple(PERIODS), cli="--every")
    start: str = param(Kind.TEXT, "the first period's month", required=True, cli="--start", metavar="YYYY-MM")
    until: str | None = param(Kind.TEXT, "no period starts after this month", cli="--until", metavar="YYYY-MM")
    escalate: str | None = param(
        Kind.TEXT, "how the amount rises after each full year: +5%/year (5 % a year, compounded) or "
        "+0.05 euro/year (a fixed step in the pledge's unit)", cli="--escalate", metavar="RISE")
    note: str | None = param(Kind.TEXT, max_chars=MAX_NOTE_CHARS, cli="--note", metavar="TEXT")

    def build(self, state: LedgerState, me: str, ts: int) -> AppendRequest:
        return governance_ops.pledge(
            state, me, amount=self.amount, unit=self.unit, every=self.every, start=self.start, ts=ts, per=self.per,
            basis=self.basis, until=self.until, escalate=self.escalate, note=self.note,
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class RecordDistribution(LedgerWrite):
    SUMMARY: ClassVar[str] = "Record a distribution (a `ledger.distribution` entry) and return its lines"
    PATH: ClassVar[str] = "/ledgers/{ledger}/distributions"

    ledger: CID = param(Kind.CID, required=True, in_path=True, metavar=_LEDGER)
    amount: str | int = param(Kind.DECIMAL, "an exact decimal, at most the unit's minor unit (e.g. 1000 or 999.99 "
                              "euro)", required=True, code="bad_amount", cli="--amount", metavar="N")
    unit: str = param(Kind.TEXT, "one of the ledger's units", required=True, cli="--unit", metavar="UNIT")
    since: str | None = param(Kind.DAY, "count contributions from this day on (YYYY-MM-DD, UTC)", cli="--since",
                              metavar="DATE")
    until: str | None = param(Kind.DAY, "count contributions up to this day, inclusive (YYYY-MM-DD)",
                              cli="--until", metavar="DATE")

    def preview(self, state: LedgerState) -> Payout:
        """What the value equation gives for it now (nothing is written)."""
        return ledger_ops.preview_distribution(state, amount=self.amount, unit=self.unit, since=self.since,
                                               until=self.until)

    def build(self, state: LedgerState, me: str, ts: int) -> AppendRequest:
        return ledger_ops.record_distribution(state, me, self.preview(state), ts)


@dataclass(frozen=True, slots=True, kw_only=True)
class Erase(LedgerWrite):
    SUMMARY: ClassVar[str] = "Erase an entry's payload (a `ledger.erase` entry)"
    PATH: ClassVar[str] = "/entries/{entry}/erasure"
    TARGET: ClassVar[str] = "written"
    BODY_OPTIONAL: ClassVar[bool] = True  # nothing to say but the path; an empty body was always accepted

    entry: CID = param(Kind.CID, required=True, in_path=True, metavar="ENTRY_ID")

    def build_with(self, state: LedgerState, me: str, ts: int, found: Found) -> AppendRequest:
        # only the key that wrote the entry erases it: this store's (ledger_ops.erase refuses another's)
        assert found.target is not None and found.key is not None
        return ledger_ops.erase(state, me, found.target, found.key, ts)


@dataclass(frozen=True, slots=True, kw_only=True)
class RecoverApprove(LedgerWrite):
    SUMMARY: ClassVar[str] = "Approve a new key for a member who lost theirs (a `key.recover` entry)"
    PATH: ClassVar[str] = "/ledgers/{ledger}/recoveries"

    ledger: CID = param(Kind.CID, required=True, in_path=True, metavar=_LEDGER)
    identity: str = param(Kind.DID, required=True, metavar="OLD_DID")
    key: str = param(Kind.DID, required=True, metavar="NEW_DID")

    def chain_of(self, state: LedgerState) -> str | None:
        return key_ops.keys_of(state, self.identity).key  # the lost key: its last entry here still counts

    def build_with(self, state: LedgerState, me: str, ts: int, found: Found) -> AppendRequest:
        return key_ops.approve_recovery(state, me, self.identity, self.key, found.head, ts)


#: an invitation's bounds (SPEC.md §12): how many may redeem it, how many days it is valid
MAX_USES: Final = 1000
MAX_DAYS: Final = 365


@dataclass(frozen=True, slots=True, kw_only=True)
class Invite(WriteRequest):
    """Not an entry: the store keeps the invitation (node/http/invites.py makes its secret and link)."""

    SUMMARY: ClassVar[str] = "Invite someone into a ledger: a link with a secret, shown once"
    PATH: ClassVar[str] = "/ledgers/{ledger}/invitations"

    ledger: CID = param(Kind.CID, required=True, in_path=True, metavar=_LEDGER)
    uses: int = param(Kind.INT, default=1, minimum=1, maximum=MAX_USES, cli="--uses", metavar="N",
                      cli_help="how many may redeem it (default 1)")
    expires: float = param(Kind.NUMBER, "days (default 7)", default=7, minimum=0, above=True, maximum=MAX_DAYS,
                           unit="days", cli="--expires", metavar="DAYS", cli_help="valid for DAYS days (default 7)")
    address: str | None = param(Kind.TEXT, "this node's address as the newcomer reaches it (default: the one this "
                                "request reached)", cli="--address", metavar="URL",
                                cli_help="your node's address as the newcomer reaches it, e.g. "
                                "http://raspberrypi.local:7410 (default: where the CLI reaches it)")


@dataclass(frozen=True, slots=True, kw_only=True)
class InviteRevoke(WriteRequest):
    """Not an entry: the store marks the invitation revoked. At the CLI a mode of `tally invites` (MODE)."""

    SUMMARY: ClassVar[str] = "Revoke an invitation: nobody redeems it from now on"
    PATH: ClassVar[str] = "/invitations/{invitation}/revoke"
    BODY_OPTIONAL: ClassVar[bool] = True
    MODE: ClassVar[bool] = True

    invitation: str = param(Kind.TEXT, "an invitation's id (or its start)", required=True, in_path=True,
                            cli="--revoke", metavar="ID", cli_help="revoke the invitation whose id starts with ID")


@dataclass(frozen=True, slots=True, kw_only=True)
class Redeem(WriteRequest):
    """What a newcomer's node sends the inviter's (node/http/invites.py redeem_there, under `tally join`)."""

    SUMMARY: ClassVar[str] = "Redeem an invitation (what a newcomer's node calls)"
    PATH: ClassVar[str] = "/invitations/redeem"
    PEER: ClassVar[bool] = True

    secret: str = param(Kind.TEXT, "the link's secret, base64url", required=True)
    agent: str = param(Kind.DID, required=True)
    sig: str = param(Kind.TEXT, "base64url Ed25519 signature by the agent's key of \"tally-invite-v1\" 00 ‖ "
                     "sha2-256(secret) ‖ public key", required=True)


@dataclass(frozen=True, slots=True, kw_only=True)
class Join(WriteRequest):
    """Not an entry here: the inviter's node writes the sponsorship; this node follows the ledger."""

    SUMMARY: ClassVar[str] = "Join a ledger by an invitation link"
    PATH: ClassVar[str] = "/join"

    link: str = param(Kind.TEXT, "http://HOST:PORT/join#SECRET", required=True, metavar="LINK", cli_help="")


@dataclass(frozen=True, slots=True, kw_only=True)
class LedgerCreate(WriteRequest):
    SUMMARY: ClassVar[str] = "Found a ledger"
    PATH: ClassVar[str] = "/ledgers"

    name: str = param(Kind.TEXT, required=True, min_chars=1, max_chars=MAX_LEDGER_NAME_CHARS, metavar="NAME")
    visibility: str | None = param(Kind.CHOICE, choices=VISIBILITIES, cli="--public", switch=("public", None),
                                   cli_help="anyone may read it (default: members only)")
    rules: Mapping[str, Any] | None = param(
        Kind.OBJECT, "the rules file (README, Ledger rules) as JSON, decimals strings", code="bad_rules",
        cli="--rules", metavar="FILE",
        cli_help="the ledger's rules, a TOML file (see README \"Ledger rules\"; default: every default)")

    def genesis(self, creator: str, proof: KeyLog | None = None) -> Rules:
        """The new ledger's rules; `bad_request` when `visibility` and `rules.visibility` differ. `proof`: the
        creator's key log, when a later key of theirs signs the genesis (SPEC.md §19.9)."""
        name = genesis_body(self.name, "members" if self.visibility is None else self.visibility)["name"]  # "" refused
        config = self.rules or {}
        given = config.get("visibility")
        if self.visibility is not None and isinstance(given, str) and given != self.visibility:
            raise LocalError("bad_request", f"visibility {self.visibility!r} differs from rules.visibility")
        return Rules.from_config(config, name=name, creator=creator, public=self.visibility == "public", proof=proof)

    def build(self, creator: str, ts: int, *, proof: KeyLog | None = None) -> AppendRequest:
        return AppendRequest(None, GENESIS_KIND, self.genesis(creator, proof).to_body(), ts)


@dataclass(frozen=True, slots=True, kw_only=True)
class Follow(WriteRequest):
    SUMMARY: ClassVar[str] = "Replicate a ledger this node did not found"
    PATH: ClassVar[str] = "/follow"

    ledger: CID = param(Kind.CID, required=True, metavar="LEDGER_ID")


@dataclass(frozen=True, slots=True, kw_only=True)
class AppendEntry(WriteRequest):
    SUMMARY: ClassVar[str] = "Append an entry to the owner's chain in a ledger"
    PATH: ClassVar[str] = "/ledgers/{ledger}/entries"

    ledger: CID = param(Kind.CID, required=True, in_path=True, cli="--ledger", metavar="ID")
    kind: str = param(Kind.TEXT, "namespaced, e.g. `note.text`; not `ledger.genesis`", required=True, cli="--kind",
                      metavar="KIND", cli_help="namespaced kind, e.g. note.text")
    body: Mapping[str, Any] = param(Kind.BODY, "the payload in the DAG-JSON mapping (SPEC.md §8); no floats",
                                    required=True, cli="--body", metavar="JSON", cli_help="a JSON object (no floats)")

    def build(self, ts: int) -> AppendRequest:
        """A plain append; it may not found a ledger (`bad_genesis`)."""
        check_append_kind(self.kind)
        return AppendRequest(self.ledger, self.kind, dict(self.body), ts)


#: Every declared write (tests/node/test_requests.py checks each against the API, OpenAPI, forms and CLI).
WRITES: Final[tuple[type[WriteRequest], ...]] = (
    Contribute, Endorse, Admit, Leave, Name, MotionCreate, MotionClose, Vote, PledgeCreate, RecordDistribution,
    Erase, RecoverApprove, Invite, InviteRevoke, Redeem, Join, LedgerCreate, Follow, AppendEntry,
)
