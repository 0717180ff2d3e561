"""Joining a ledger by invitation: no id is copied by hand (README "Invite a member", SPEC.md §12).

The inviter's node makes a secret and prints a link to itself, `http://HOST:PORT/join#SECRET`; it keeps
only the secret's sha2-256, with the ledger, how many may still redeem it and until when. The
newcomer's node sends the secret to that node with its did:key and a signature by its key over the
secret's hash (so a link read over someone's shoulder cannot enrol a key its reader does not hold);
the inviter's node then writes the inviter's sponsorship of the newcomer (`member.admit`, SPEC.md §16.3)
and answers with the ledger's id. The newcomer's node follows the ledger and dials the inviter's
node from then on. Where the ledger needs more sponsors, the others see the admission waiting.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import secrets
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import urlsplit

from node.http.client import NodeClient
from node.store.rows import Invitation
from node.store.store import Store
from protocol import CID, LocalError, SigningKey, ledger_ops, public_key_from_did, verify_signature
from protocol.requests import MAX_DAYS, MAX_USES, Redeem
from protocol.state import LedgerState
from protocol.writes import AppendRequest

SECRET_BYTES: Final = 32
JOIN_PATH: Final = "/join"
PROOF_PREFIX: Final = b"tally-invite-v1\x00"  # separates these signatures from entry signatures (SPEC.md §5.3)
DAY_MS: Final = 86_400_000


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str, what: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raise LocalError("bad_invitation", f"{what} is not base64url") from None


def digest(secret: bytes) -> bytes:
    return hashlib.sha256(secret).digest()


def invitation_id(hashed: bytes) -> str:
    """How the owner names an invitation (list, revoke): the start of its hash, never the secret."""
    return hashed.hex()[:12]


def proof_message(hashed: bytes, public_key: bytes) -> bytes:
    return PROOF_PREFIX + hashed + public_key


@dataclass(frozen=True, slots=True)
class Link:
    peer: str  # the inviter's node, as the newcomer's node dials it
    secret: bytes

    def __str__(self) -> str:
        return f"{self.peer}{JOIN_PATH}#{_b64(self.secret)}"

    @classmethod
    def parse(cls, text: str) -> Link:
        """`http(s)://HOST[:PORT]/join#SECRET`; `bad_invitation` for anything else."""
        parts = urlsplit(text.strip())
        if parts.scheme not in ("http", "https") or not parts.hostname or parts.path.rstrip("/") != JOIN_PATH \
                or parts.query or parts.username is not None:
            raise LocalError("bad_invitation", "an invitation link looks like http://HOST:PORT/join#SECRET")
        secret = _unb64(parts.fragment, "the link's secret")
        if len(secret) != SECRET_BYTES:
            raise LocalError("bad_invitation", "the link's secret is not whole: copy the link again")
        return cls(f"{parts.scheme}://{parts.netloc}", secret)


def new_invitation(ledger: CID, uses: int, days: float, now_ms: int, peer: str) -> tuple[Link, Invitation]:
    """A fresh secret, its link, and what the store keeps (the hash, never the secret)."""
    if not 1 <= uses <= MAX_USES:
        raise LocalError("bad_request", f"uses must be 1 to {MAX_USES}")
    if not 0 < days <= MAX_DAYS:
        raise LocalError("bad_request", f"expires must be more than 0 and at most {MAX_DAYS} days")
    secret = secrets.token_bytes(SECRET_BYTES)
    return Link(peer.rstrip("/"), secret), Invitation(digest(secret), ledger, uses, now_ms + int(days * DAY_MS),
                                                      now_ms)


def check_address(address: str) -> str:
    """The inviter's node's address as a link holds it: `http(s)://HOST[:PORT]`, nothing else."""
    url = address.strip().rstrip("/")
    try:
        parts = urlsplit(url)
        _ = parts.port  # a bad port raises
    except ValueError:
        parts = None
    if (parts is None or parts.scheme not in ("http", "https") or not parts.hostname or parts.path
            or parts.query or parts.fragment or parts.username is not None):
        raise LocalError("bad_request", f"address {url!r:.80}: the node's http://HOST:PORT (or https://), nothing more")
    return url


def invitation_row(i: Invitation, now_ms: int) -> dict[str, Any]:
    state = "revoked" if i.revoked is not None else "expired" if i.expires <= now_ms else \
        "used" if i.uses == 0 else "open"
    return {"id": invitation_id(i.hash), "ledger": str(i.ledger), "uses": i.uses, "expires": i.expires,
            "created": i.created, "state": state}


# ---- the inviter's side ------------------------------------------------------------------------------


def check_proof(secret_text: str, agent: str, sig_text: str) -> tuple[bytes, bytes]:
    """The secret's hash and the agent's key, once the signature proves the agent's key asked."""
    key = public_key_from_did(agent)
    try:
        secret, sig = _unb64(secret_text, "secret"), _unb64(sig_text, "sig")
    except LocalError:
        secret, sig = b"", b""  # malformed: refused like any wrong secret, with the same answer
    hashed = digest(secret)
    if len(secret) != SECRET_BYTES or not verify_signature(key, sig, proof_message(hashed, key)):
        raise LocalError("invitation_refused", "this invitation is unknown, expired, used up or revoked")
    return hashed, key


async def redeem_here(store: Store, state_of: Any, me: str, secret_text: str, agent: str, sig_text: str,
                      now_ms: int, append: Any) -> dict[str, Any]:
    """Redeem on the inviter's node: write the owner's sponsorship of `agent` (once per agent and invitation)."""
    hashed, _ = check_proof(secret_text, agent, sig_text)
    live = next((i for i in await store.invitations() if i.hash == hashed), None)
    if live is None:
        raise LocalError("invitation_refused", "this invitation is unknown, expired, used up or revoked")
    state: LedgerState = await state_of(live.ledger)
    earlier = await store.redeemed(hashed, agent)
    if earlier is None and agent not in state.members:
        request: AppendRequest = ledger_ops.admit(state, me, agent, now_ms)  # refuses before a use is taken
        taken = await store.take_invitation(hashed, now_ms)
        if taken is None:
            raise LocalError("invitation_refused", "this invitation is unknown, expired, used up or revoked")
        try:
            entry = await append(request)
        except BaseException:
            await store.give_back_invitation(hashed)
            raise
        await store.add_redemption(hashed, agent, entry.id)
        earlier = entry.id
        state = await state_of(live.ledger)
    return {"ledger": str(live.ledger), "name": state.rules.name, "sponsor": me,
            "sponsorship": None if earlier is None else str(earlier), "member": agent in state.members}


# ---- the newcomer's side ------------------------------------------------------------------------------


async def redeem_there(link: Link, key: SigningKey, identity: str) -> dict[str, Any]:
    """Ask the inviter's node to redeem the link for `identity` (this home's did, proven by its key)."""
    hashed = digest(link.secret)
    if key.did != identity:
        raise LocalError("bad_invitation", "join with a home whose key is its identity's own (a new home: tally init)")
    asked = Redeem(secret=_b64(link.secret), agent=identity,
                   sig=_b64(key.sign(proof_message(hashed, key.public_key))))
    async with NodeClient(link.peer, None) as inviter:
        data: dict[str, Any] = await inviter.call("POST", Redeem.PATH, asked.to_json())
    return data


async def joined(store: Store, link: Link, answer: dict[str, Any]) -> CID:
    """After a redemption: follow its ledger and keep dialing the inviter's node."""
    ledger = CID.parse(str(answer.get("ledger", "")))
    await store.follow(ledger)
    await store.add_invited_peer(link.peer, ledger)
    return ledger
