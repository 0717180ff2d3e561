"""An identity's portable key log (SPEC.md §19.9): how a key that is not the identity's own founds a ledger.

Key events live in the ledgers (§19.1), so a new ledger holds none: a member who rotated could not
show there that their current key is theirs. The home therefore keeps a log outside every ledger,
each step signed by the key it names: step 0 by the inception key, committing (pre-rotation, as
`key.incept` does) to the digest of the next key; each later step by the key the step before
committed to, committing to the one after. It names no ledger, so it shows one coop nothing of
another. A genesis carries it as its rules' `creator` (protocol/rules.py) when its author is the
log's last key.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any, Final

from . import dagcbor
from .errors import InvalidData, LocalError
from .identity import SigningKey, did_from_public_key, public_key_from_did, verify_signature

KEL_PREFIX: Final = b"tally-kel-v1\x00"  # separates these signatures from entry signatures (§5.3)
MAX_KEL_STEPS: Final = 64


def step_message(identity: str, index: int, key: bytes, next_hash: bytes) -> bytes:
    """What step `index` of `identity`'s log signs: the prefix, then DAG-CBOR [identity, index, key, next]."""
    return KEL_PREFIX + dagcbor.encode([identity, index, key, next_hash])


@dataclass(frozen=True, slots=True)
class KeyLog:
    identity: str
    steps: tuple[tuple[bytes, bytes, bytes], ...]  # (key, next digest, signature)

    @property
    def key(self) -> bytes:
        """The log's current key: the last step's."""
        return self.steps[-1][0]

    @property
    def next(self) -> bytes:
        """The digest the last step committed to: the key that may take over next."""
        return self.steps[-1][1]

    def to_body(self) -> dict[str, Any]:
        return {"identity": self.identity, "keys": [list(s) for s in self.steps]}

    @classmethod
    def from_body(cls, value: object, path: str = "creator") -> KeyLog:
        """Strictly read and check a log; `bad_rules` (naming `path`) if it does not prove its last key."""
        if not isinstance(value, dict) or set(value) != {"identity", "keys"}:
            raise InvalidData("bad_rules", f"{path}: a table of identity and keys")
        identity, raw = value["identity"], value["keys"]
        if not isinstance(identity, str):
            raise InvalidData("bad_rules", f"{path}.identity: a did:key")
        try:
            first = public_key_from_did(identity)
        except InvalidData as exc:
            raise InvalidData("bad_rules", f"{path}.identity: {exc.message}") from None
        if not isinstance(raw, list) or not 1 <= len(raw) <= MAX_KEL_STEPS:
            raise InvalidData("bad_rules", f"{path}.keys: 1 to {MAX_KEL_STEPS} steps")
        steps: list[tuple[bytes, bytes, bytes]] = []
        for i, step in enumerate(raw):
            if (not isinstance(step, list) or len(step) != 3 or not all(isinstance(b, bytes) for b in step)
                    or (len(step[0]), len(step[1]), len(step[2])) != (32, 32, 64)):
                raise InvalidData("bad_rules", f"{path}.keys[{i}]: [key: 32 bytes, next: 32 bytes, sig: 64 bytes]")
            key, following, sig = step
            expected = first if i == 0 else None
            if expected is not None and key != expected:
                raise InvalidData("bad_rules", f"{path}.keys[0]: the identity's own key")
            if i and hashlib.sha256(key).digest() != steps[-1][1]:  # as protocol/keys.py next_digest
                raise InvalidData("bad_rules", f"{path}.keys[{i}]: not the key step {i - 1} committed to")
            if not verify_signature(key, sig, step_message(identity, i, key, following)):
                raise InvalidData("bad_rules", f"{path}.keys[{i}]: its signature does not verify")
            steps.append((key, following, sig))
        return cls(identity, tuple(steps))

    def extended(self, key: SigningKey, following: bytes) -> KeyLog:
        """The log with a step by `key` (the one the last step committed to), committing to `following`."""
        index = len(self.steps)
        return KeyLog(self.identity, (*self.steps, (key.public_key, following,
                                                    key.sign(step_message(self.identity, index, key.public_key,
                                                                          following)))))


def start_log(inception: SigningKey, following: bytes) -> KeyLog:
    """Step 0: the inception key commits to `following`, the next key's digest."""
    return KeyLog(inception.did, ()).extended(inception, following)


def founding_proof(identity: str, key: bytes, log: KeyLog | None) -> KeyLog | None:
    """What a genesis by `key` names as its rules' `creator` so that it founds the ledger as `identity`: nothing
    when the key is the identity's own, else the home's key log, which must end at that key."""
    if did_from_public_key(key) == identity:
        return None
    if log is None or log.identity != identity or log.key != key:
        raise LocalError("key_not_authorized", f"this home signs for {identity} with a key its key log does not "
                         "prove (a device, a recovered key, or a home rotated before key logs existed): found the "
                         "ledger from a home whose key log ends at its key")
    return log
