"""One error tree for Tally, each error with a stable code.

Codes are part of the contract (SPEC.md, CLI `error: <code>: …`, API bodies):
never rename one, only add.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from types import MappingProxyType
from typing import Final


class Fault(StrEnum):
    """Whose refusal it is: who must change something for the call to go through."""

    LOCAL = "local"  # this node or its user: the command, the request, the home, the store
    REMOTE = "remote"  # the peer at the other end of a link, or the network to it
    EITHER = "either"  # data that breaks a rule, refused alike from a peer or from the local user


LOCAL, REMOTE, EITHER = Fault.LOCAL, Fault.REMOTE, Fault.EITHER


@dataclass(frozen=True, slots=True)
class ErrorCode:
    """One stable code: its string (never renamed), the HTTP status the API answers it with, whose fault it
    is, and what it means."""

    code: str
    status: int
    fault: Fault
    meaning: str


#: Every stable code, once. SPEC.md §9's table is this table row for row (tests/test_spec.py); the API's
#: statuses (node/http/errors.py) and its OpenAPI error enum (node/http/schemas.py) are read from it.
ERRORS: Final[tuple[ErrorCode, ...]] = (
    # encoding of bytes
    ErrorCode("bad_encoding", 400, EITHER, "bytes are not canonical DAG-CBOR"),
    ErrorCode("oversize", 413, EITHER, "a block or message is larger than its limit"),
    ErrorCode("bad_cid", 400, EITHER, "a CID string or link is malformed or unsupported"),
    ErrorCode("bad_did", 400, EITHER, "a did:key is malformed, of another key type, or of the wrong length"),
    # entries
    ErrorCode("unknown_version", 400, EITHER, "a format version this node does not know"),
    ErrorCode("missing_field", 400, EITHER, "a required header field is absent"),
    ErrorCode("unknown_field", 400, EITHER, "a header holds a field this version does not define"),
    ErrorCode("bad_field", 400, EITHER, "a header field has the wrong type or an impossible value"),
    ErrorCode("bad_signature", 400, EITHER, "the Ed25519 signature does not verify"),
    ErrorCode("payload_mismatch", 400, EITHER, "the payload's CID or size differs from the header's"),
    ErrorCode("bad_payload", 400, EITHER, "the payload is not a DAG-CBOR map"),
    ErrorCode("bad_genesis", 400, EITHER, "an entry without a ledger is not a valid genesis entry, or the reverse"),
    # chains
    ErrorCode("bad_prev", 400, EITHER, "prev does not link the previous entry of the chain"),
    ErrorCode("seq_gap", 400, EITHER, "seq is not one more than the previous entry's"),
    ErrorCode("ts_regression", 400, EITHER, "ts is below the previous entry's"),
    ErrorCode("wrong_ledger", 400, EITHER, "the entry belongs to another ledger than its chain"),
    ErrorCode("wrong_author", 400, EITHER, "the entry has another author than its chain"),
    ErrorCode("fork", 409, EITHER, "two validly signed entries share author, ledger and seq"),
    ErrorCode("bad_fork_proof", 400, EITHER, "a fork proof does not prove a fork"),
    # local state and input
    ErrorCode("bad_body", 400, EITHER, "a JSON body is not an object or holds values DAG-CBOR cannot"),
    ErrorCode("bad_key_file", 400, LOCAL, "a key file is neither 64 hex characters nor an Ed25519 PKCS#8 PEM"),
    ErrorCode("identity_exists", 409, LOCAL, "the home already has an identity; it is never overwritten"),
    ErrorCode("no_identity", 500, LOCAL, "the home has no identity yet"),
    ErrorCode("unknown_ledger", 404, LOCAL, "no ledger with that id is stored here"),
    ErrorCode("unknown_entry", 404, LOCAL, "no entry with that id is stored here"),
    ErrorCode("store_corrupt", 500, LOCAL,
              "the store is damaged: a stored entry fails verification, or its file is unreadable (truncated, "
              "flipped bytes); the message names the file and what to do (§10)"),
    ErrorCode("disk_full", 507, LOCAL,
              "the store could not be written: the disk is full or a file size limit was reached; nothing was "
              "written (§10)"),
    ErrorCode("schema_too_new", 500, LOCAL, "the store was written by a newer Tally"),
    # sync
    ErrorCode("bad_message", 400, REMOTE,

              "a sync message is malformed (not a map, missing or extra keys, wrong types, over limits) (§13.1)"),
    ErrorCode("unknown_message", 400, REMOTE, "a sync message of a type this node does not know (§13.1)"),
    # peer links
    ErrorCode("handshake_failed", 400, REMOTE,
              "the peer-link handshake failed (wrong length, failed authentication, low-order key, bad identity "
              "payload or signature, unexpected did)"),
    ErrorCode("bad_frame", 400, REMOTE, "a transport frame fails authentication or is malformed"),
    ErrorCode("frame_too_large", 400, REMOTE, "a frame or its plaintext exceeds the Noise limit"),
    ErrorCode("protocol_error", 400, REMOTE,
              "a handshake or transport call out of order, after a failure, or past the nonce space; in sync, a "
              "message that breaks the conversation (§13.5)"),
    ErrorCode("link_timeout", 504, REMOTE, "the peer did not complete the handshake or a frame in time"),
    ErrorCode("unreachable", 502, REMOTE,

              "the peer could not be reached, refused the link, or went away before the sync finished"),
    # node API
    ErrorCode("unauthorized", 401, LOCAL, "an API call needs the owner's token and it is missing or wrong (§12)"),
    ErrorCode("forbidden", 403, LOCAL, "the API refuses the call even with a valid token"),
    ErrorCode("not_found", 404, LOCAL, "no API route at that path"),
    ErrorCode("method_not_allowed", 405, LOCAL, "the API route does not take that HTTP method"),
    ErrorCode("catching_up", 409, LOCAL,

              "the node is catching up with its peers (safe restore) and holds local writes until it is done"),
    ErrorCode("request_timeout", 408, LOCAL,

              "an API request's body did not arrive within `BODY_TIMEOUT_S = 30` s (§12)"),
    ErrorCode("rate_limited", 429, EITHER,
              "too many refused API calls from this address; retry later. In sync, a peer over its request limits "
              "(§13.9)"),
    ErrorCode("node_unresponsive", 503, LOCAL,
              "a node holds this home (its lock) but does not answer; the CLI writes nothing rather than bypass it "
              "(§12)"),
    ErrorCode("not_running", 503, LOCAL, "a command needs a running node and none answers for this home"),
    ErrorCode("internal", 500, LOCAL, "the node failed unexpectedly while answering; its log has the details"),
    ErrorCode("bad_request", 400, LOCAL,

              "an API request is malformed: not a JSON object, a missing or unknown field, a wrong type"),
    ErrorCode("already_running", 409, LOCAL, "a node is already running on this home"),
    ErrorCode("listen_failed", 500, LOCAL, "the node cannot listen on the given address"),
    ErrorCode("bad_config", 400, LOCAL,
              "the node's configuration file (`tally.toml`) is malformed: bad TOML, an unknown key, a value of the "
              "wrong type or out of range"),
    # ledger rules
    ErrorCode("bad_rules", 400, EITHER,
              "a ledger's rules (a `--rules` file, API `rules`, a genesis body) are malformed: not TOML, a wrong "
              "type, a missing key, a value out of range, buckets that do not add up (§14)"),
    ErrorCode("unknown_rule_key", 400, EITHER,

              "the rules hold a key Tally does not define; the message names the dotted key (§14)"),
    ErrorCode("unknown_action", 400, EITHER, "an action that is not one of the 19 ValueFlows 1.0 actions (§14)"),
    ErrorCode("unknown_unit", 400, EITHER, "a unit that is not one of the ledger's units (§14)"),
    ErrorCode("bad_quantity", 400, EITHER,
              "a quantity is not an exact decimal (a float, an exponent, over 18 digits before or after the point) "
              "or is out of range (§14)"),
    ErrorCode("unknown_bucket_recipient", 400, EITHER,

              "a bucket's recipient is neither `\"ledger\"` nor a did:key (§14)"),
    # ledger state
    ErrorCode("not_member", 403, EITHER,
              "the author is not a member where the entry was made (or left earlier), or does not name the "
              "admission that made them one (§16)"),
    ErrorCode("already_member", 409, EITHER, "an admission of an agent who is already a member (§16)"),
    ErrorCode("self_endorsement", 403, EITHER, "a member endorsing their own contribution (§16)"),
    ErrorCode("duplicate_endorsement", 409, LOCAL,

              "an endorsement with the same verdict as the member's latest one on it (refused locally; §16)"),
    ErrorCode("not_contribution", 404, EITHER,

              "the entry named is not a contribution (a `vf.event`) of this ledger (§16)"),
    ErrorCode("bad_reference", 400, EITHER, "a payload link names an entry of the wrong kind (§16)"),
    ErrorCode("bad_correction", 400, EITHER, "a correction must name an earlier `vf.event` of its own author (§16)"),
    ErrorCode("bad_agent", 400, EITHER, "a provider, receiver or agent is neither a did:key nor the ledger's id (§16)"),
    ErrorCode("not_party", 400, EITHER,

              "the author is neither provider nor receiver and the rules do not allow logging for others (§16)"),
    ErrorCode("bad_name", 400, EITHER,
              "a member's or ledger's name holds a control, bidi-control or line-separator character, has only "
              "invisible characters, or is not in Unicode NFC form (§16.1)"),
    ErrorCode("confusable_name", 409, LOCAL,
              "a name that reads as another member's name in the ledger (same TR39 skeleton); a node refuses to "
              "write it (§16.1)"),
    ErrorCode("bad_time", 400, EITHER, "a time is not an ISO 8601 date, or a date-time without a UTC offset (§16)"),
    ErrorCode("bad_time_range", 400, EITHER,

              "a beginning after its end, or a point in time together with a range (§16)"),
    # governance and pledges (SPEC.md §18)
    ErrorCode("bad_motion", 400, EITHER,

              "a motion without a title, with fewer than 2 or more than 32 options, or an option twice (§18)"),
    ErrorCode("unknown_option", 400, EITHER, "a ballot scores an option its motion does not have (§18)"),
    ErrorCode("vote_out_of_range", 400, EITHER,

              "a score that is not a whole number within the voting range in effect at the motion (§18)"),
    ErrorCode("motion_closed", 409, EITHER,
              "a ballot or closing of a motion already closed in the entry's causal past, or (version 2) a ballot "
              "signed at or after the motion's closing time (§18)"),
    ErrorCode("motion_not_closed", 409, EITHER,
              "a closing before the motion's closing time: by anyone (version 2), by someone other than the "
              "proposer (version 1), or by the proposer without saying `early` (a node's check, version 1) (§18)"),
    ErrorCode("not_proposer", 403, EITHER,

              "a closing by someone other than the proposer of a motion without a closing time (§18)"),
    ErrorCode("bad_amendment", 400, EITHER,

              "an amendment that is malformed or would make the rules in effect invalid (§18)"),
    ErrorCode("bad_pledge", 400, EITHER,

              "a pledge with a wrong action, provider or receiver, period, basis or months (§18)"),
    ErrorCode("unknown_pledge", 400, EITHER, "a payment's `fulfills` names no valid pledge of this ledger (§18)"),
    ErrorCode("bad_payment", 400, EITHER,

              "a payment that is not a transfer of the pledge's unit from its pledger to the ledger (§18)"),
    # distributions (SPEC.md §17)
    ErrorCode("bad_amount", 400, EITHER,
              "an amount to distribute is not an exact decimal above 0, or has more decimal places than its unit's "
              "minor unit (§17)"),
    ErrorCode("distribution_mismatch", 409, EITHER,
              "a recorded distribution's lines differ from what the value equation gives over the entries it counts "
              "(§17)"),
    # keys (SPEC.md §19)
    ErrorCode("bad_key_event", 400, EITHER,
              "a key event that is malformed or does not follow from the identity's key history: a rotation by "
              "another key than the one committed to, a second inception, a device that is the identity's own key "
              "(§19)"),
    ErrorCode("key_not_authorized", 403, EITHER,
              "an entry by a key that no device grant, rotation or completed recovery authorizes for the identity "
              "it writes as (§19)"),
    ErrorCode("key_rotated", 403, EITHER,

              "an entry by a key after the last entry its identity's rotation, or a recovery, let count (§19.6)"),
    ErrorCode("key_revoked", 403, EITHER, "an entry by a device after the last entry its revocation let count (§19.6)"),
    ErrorCode("self_recovery", 403, EITHER, "a member approving the recovery of their own identity (§19)"),
    # invitations (SPEC.md §12)
    ErrorCode("bad_invitation", 400, LOCAL,
              "an invitation link that is not one: not `http(s)://HOST:PORT/join#SECRET`, or its secret cut short "
              "(§12)"),
    ErrorCode("unknown_invitation", 404, LOCAL, "no open invitation of this node has that id (§12)"),
    ErrorCode("invitation_refused", 403, LOCAL, "the inviter's node refused the invitation: unknown, expired, used up "
              "or revoked, or a wrong signature; one answer for all (§12)"),
    # erasure (SPEC.md §20)
    ErrorCode("not_erasable", 403, EITHER,
              "an erasure of an entry that is not an earlier entry of the same key's chain, is its first entry, is of "
              "a kind that is never erased, or that a distribution counted (§20)"),
    # the node's own exceptions (UsageError in node/cli/context.py, LinkClosed in node/sync/links.py)
    ErrorCode("usage", 400, LOCAL, "the command line is wrong: an unknown option, a missing argument, options that "
              "exclude each other (the CLI exits 2)"),
    ErrorCode("link_closed", 502, REMOTE, "a peer link closed without a refusal: an ordinary close by either side, "
              "or a lost connection"),
)
BY_CODE: Final[Mapping[str, ErrorCode]] = MappingProxyType({e.code: e for e in ERRORS})
#: Every stable code and what it means (ERRORS as a mapping).
CODES: Final[Mapping[str, str]] = MappingProxyType({e.code: e.meaning for e in ERRORS})


class TallyError(Exception):
    """Base of every error Tally raises on purpose. `code` is stable."""

    code: str

    def __init__(self, code: str, message: str) -> None:
        if code not in CODES:
            raise ValueError(f"unregistered error code {code!r}")
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message

    def __reduce__(self) -> tuple[type[TallyError], tuple[str, str]]:
        # Pickled as (code, message): an error may cross a process boundary.
        return type(self), (self.code, self.message)


class InvalidData(TallyError):
    """Bytes, entries or messages that break the format or the chain rules.

    Raised the same whether they came from a peer or from a local caller; the
    caller decides whom to blame.
    """


class LocalError(TallyError):
    """The local user asked for something this node cannot do."""

    @classmethod
    def of(cls, exc: TallyError) -> LocalError:
        """`exc`'s refusal (its code, already registered) as the local user's: a local write checked with the
        same rules a peer's entry meets is the writer's mistake, not a peer's."""
        return cls(exc.code, exc.message)

    @classmethod
    def declared(cls, code: str, message: str) -> LocalError:
        """A refusal whose code a declaration holds (a request field's `code`): the code scan of
        tests/protocol/test_error_codes.py cannot read it, so it is checked against the table here."""
        if code not in CODES:
            raise ValueError(f"unregistered error code {code!r}")
        return cls(code, message)
