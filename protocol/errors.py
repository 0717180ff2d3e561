"""One error tree for Tally, each error with a stable code.

Codes are part of the contract (SPEC.md, CLI `error: <code>: …`, API bodies):
never rename one, only add.
"""

from __future__ import annotations

from typing import Final

#: Every stable code and what it means. SPEC.md lists the same table; a test checks it.
CODES: Final[dict[str, str]] = {
    # encoding of bytes
    "bad_encoding": "bytes are not canonical DAG-CBOR (non-shortest form, unsorted or duplicate "
    "keys, floats, indefinite lengths, tags other than 42, trailing bytes, too deep)",
    "oversize": "a block or message is larger than its limit",
    "bad_cid": "a CID string or link is malformed or of an unsupported kind",
    "bad_did": "a did:key is malformed, of another key type, or of the wrong length",
    # entries
    "unknown_version": "the header's format version is not one this node knows",
    "missing_field": "a required header field is absent",
    "unknown_field": "a header holds a field this version does not define",
    "bad_field": "a header field has the wrong type or an impossible value",
    "bad_signature": "the Ed25519 signature does not verify",
    "payload_mismatch": "the payload's CID or size differs from what the header commits to",
    "bad_payload": "the payload is not a DAG-CBOR map",
    "bad_genesis": "an entry without a ledger is not a valid genesis entry, or the reverse",
    # chains
    "bad_prev": "prev does not link to the previous entry of the author's chain",
    "seq_gap": "seq is not one more than the previous entry's",
    "ts_regression": "ts is lower than the previous entry's",
    "wrong_ledger": "the entry belongs to another ledger than the chain",
    "wrong_author": "the entry has another author than the chain",
    "fork": "two validly signed entries share author, ledger and seq",
    "bad_fork_proof": "a fork proof does not prove a fork",
    # local state and input
    "bad_body": "an entry body given as JSON is not an object or holds values DAG-CBOR cannot",
    "bad_key_file": "a key file to import is neither 64 hex characters nor an Ed25519 PKCS#8 PEM",
    "identity_exists": "this home already has an identity; it is never overwritten",
    "no_identity": "this home has no identity yet (run `tally init`)",
    "unknown_ledger": "no ledger with that id is stored here",
    "unknown_entry": "no entry with that id is stored here",
    "store_corrupt": "a stored entry fails verification",
    "schema_too_new": "the store was written by a newer Tally",
    # sync
    "bad_message": "a sync message is malformed: not a map, missing or extra keys, wrong types, over limits",
    "unknown_message": "a sync message of a type this node does not know",
    # peer links
    "handshake_failed": "the peer-link handshake failed: a message of the wrong length, one that fails "
    "authentication, a malformed identity payload, a bad signature or an unexpected did",
    "bad_frame": "a transport frame fails authentication (tampered, reordered, replayed or from another "
    "link) or is malformed",
    "frame_too_large": "a transport frame or its plaintext exceeds the Noise limit of 65535 bytes",
    "protocol_error": "a handshake or transport call made out of order, after a failure, or after the "
    "nonce space is used up",
    "link_timeout": "the peer did not complete the handshake or a frame in time",
    "unreachable": "the peer could not be reached, refused the link, or went away before the sync finished",
    # node API
    "unauthorized": "the API call needs the owner's token (`Authorization: Bearer <token>`) and it is "
    "missing or wrong",
    "forbidden": "the API refuses this call even with a valid token",
    "not_found": "no API route at that path",
    "method_not_allowed": "the API route does not take that HTTP method",
    "catching_up": "the node is catching up with its peers (safe restore); local writes wait until it is done",
    "request_timeout": "an API request's body did not arrive in time (a slow client); its connection is closed",
    "rate_limited": "too many refused API calls from this address; wait and retry",
    "not_running": "the command needs a running node (`tally run`) and none answers for this home",
    "internal": "the node failed unexpectedly while answering; its log has the details",
    "bad_request": "an API request is malformed: not a JSON object, a missing or unknown field, a wrong type",
    "already_running": "a node is already running on this home",
    "listen_failed": "the node cannot listen on the given address (in use, or not an address of this host)",
    "bad_config": "the node's configuration file (`tally.toml`) is malformed: bad TOML, an unknown key, a "
    "value of the wrong type or out of range",
    # ledger rules
    "bad_rules": "a ledger's rules (a `--rules` file, API `rules` or a genesis body) are malformed: not TOML, "
    "a value of the wrong type, a missing key, a value out of range, buckets that do not add up",
    "unknown_rule_key": "the rules hold a key Tally does not define (the message names the dotted key)",
    "unknown_action": "an action that is not one of the 19 ValueFlows 1.0 actions (exact VF spelling)",
    "unknown_unit": "a unit that is not one of the ledger's units",
    "bad_quantity": "a quantity is not an exact decimal (a float, an exponent, more than 18 digits before or "
    "after the point) or is out of range",
    "unknown_bucket_recipient": "a bucket's recipient is neither \"ledger\" nor a did:key",
    # ledger state
    "not_member": "the author is not a member of the ledger where the entry was made (or left it earlier), or "
    "does not name the admission that made them one",
    "already_member": "an admission of an agent who is already a member",
    "self_endorsement": "a member endorsing their own contribution",
    "duplicate_endorsement": "an endorsement with the same verdict as the member's latest one on that contribution",
    "not_contribution": "the entry named is not a contribution (a vf.event) of this ledger",
    "bad_reference": "a payload link that must name an entry of some kind names something else",
    "bad_correction": "a correction must name an earlier vf.event of its own author",
    "bad_agent": "a provider, receiver or agent is neither a did:key nor the ledger's id",
    "not_party": "the author is neither the provider nor the receiver, and the rules do not allow logging for others",
    "bad_name": "a member's or ledger's name holds a control, bidi-control or line-separator character, has only "
    "invisible characters, or is not in Unicode NFC form",
    "confusable_name": "a name that reads as another member's name in the ledger (same Unicode TR39 skeleton): "
    "the node refuses to write it",
    "bad_time": "a time is not an ISO 8601 date, or a date-time without a UTC offset",
    "bad_time_range": "a beginning after its end, or a point in time together with a range",
    # governance and pledges (SPEC.md §18)
    "bad_motion": "a motion without a title, with fewer than 2 or more than 32 options, or with an option twice",
    "unknown_option": "a ballot scores an option its motion does not have",
    "vote_out_of_range": "a score that is not a whole number within the ledger's voting range",
    "motion_closed": "a ballot or closing of a motion that is already closed where it was made, or a ballot signed "
                     "after the motion's closing time (version 2 rules)",
    "motion_not_closed": "the motion is still open until its closing time (under version 1 rules its proposer may "
                         "close it earlier)",
    "not_proposer": "only the motion's proposer may close a motion without a closing time",
    "bad_amendment": "an amendment that is malformed or would make the ledger's rules invalid",
    "bad_pledge": "a pledge with a wrong action, provider or receiver, period, basis or months",
    "unknown_pledge": "a payment's fulfills names no pledge (vf.commitment) of this ledger",
    "bad_payment": "a payment that is not a transfer of the pledge's unit from its pledger to the ledger",
    # distributions (SPEC.md §17)
    "bad_amount": "an amount to distribute is not an exact decimal above 0, or has more decimal places than its "
    "unit's minor unit",
    "distribution_mismatch": "a recorded distribution's lines differ from what the ledger's value equation gives "
    "over the entries it counts",
    # keys (SPEC.md §19)
    "bad_key_event": "a key event that is malformed or does not follow from the identity's key history (a "
    "rotation by another key than the one committed to, a second inception, a device that is the identity's own key)",
    "key_not_authorized": "an entry by a key that no device grant, rotation or completed recovery authorizes "
    "for the identity it writes as",
    "key_rotated": "an entry by a key after the last entry its identity's rotation (or recovery) let count",
    "key_revoked": "an entry by a device after the last entry its revocation let count",
    "self_recovery": "a member approving the recovery of their own identity",
}


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
        # Pickled as (code, message): a state computed in a child process may raise one (node/store/worker.py).
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
