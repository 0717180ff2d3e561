"""A node's home folder: identity key, API token and the store.

Secrets are written once, with mode 0600 from the moment they exist (created
with O_EXCL and the mode, never chmod'ed afterwards), and never overwritten.
"""

from __future__ import annotations

import json
import os
import secrets
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from protocol import LocalError, SigningKey
from protocol.kel import KeyLog, start_log
from protocol.keys import next_digest

KEY_FILE: Final = "identity.key"
#: The key kept for the next rotation (SPEC.md §19): ledgers hold only its digest until it signs.
NEXT_KEY_FILE: Final = "next.key"
#: The identity this home writes as, once its key is no longer the identity's first key (after a rotation).
IDENTITY_FILE: Final = "identity.did"
#: The identity's key log (SPEC.md §19.9): each key, signed by itself, committing to the next; no ledger in it.
KEY_LOG_FILE: Final = "identity.kel"
TOKEN_FILE: Final = "api.token"
STORE_FILE: Final = "tally.sqlite3"
SECRET_MODE: Final = 0o600


def default_home() -> Path:
    """`$TALLY_HOME`, else the platform's user data folder."""
    env = os.environ.get("TALLY_HOME")
    if env:
        return Path(env).expanduser()
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Application Support" / "Tally"
    if sys.platform == "win32":
        return Path(os.environ.get("APPDATA", Path.home() / "AppData" / "Roaming")) / "Tally"
    xdg = os.environ.get("XDG_DATA_HOME")
    return (Path(xdg) if xdg else Path.home() / ".local" / "share") / "tally"


@dataclass(frozen=True, slots=True)
class Home:
    path: Path

    @property
    def key_path(self) -> Path:
        return self.path / KEY_FILE

    @property
    def token_path(self) -> Path:
        return self.path / TOKEN_FILE

    @property
    def store_path(self) -> Path:
        return self.path / STORE_FILE

    @property
    def next_key_path(self) -> Path:
        return self.path / NEXT_KEY_FILE

    def has_identity(self) -> bool:
        return self.key_path.exists()

    def create_identity(self, key: SigningKey, token: str | None = None) -> None:
        """Write the key and a fresh API token; refuse if an identity exists."""
        self.path.mkdir(parents=True, exist_ok=True, mode=0o700)
        if self.has_identity():
            raise LocalError("identity_exists", f"{self.key_path} exists; it is never overwritten")
        _write_secret(self.key_path, key.seed.hex() + "\n")
        if not self.next_key_path.exists():
            _write_secret(self.next_key_path, secrets.token_bytes(32).hex() + "\n")
            following = self.load_next_key()
            assert following is not None
            self._write_log(start_log(key, next_digest(following.public_key)))
        if not self.token_path.exists():
            _write_secret(self.token_path, (token or secrets.token_urlsafe(32)) + "\n")
        _fsync_dir(self.path)

    def load_key(self) -> SigningKey:
        try:
            data = self.key_path.read_bytes()
        except FileNotFoundError:
            raise LocalError("no_identity", f"no identity in {self.path} (run `tally init`)") from None
        return SigningKey.from_key_file(data)

    def load_next_key(self) -> SigningKey | None:
        """The pre-rotation key, or None for a home made before there was one."""
        try:
            return SigningKey.from_key_file(self.next_key_path.read_bytes())
        except FileNotFoundError:
            return None

    def add_next_key(self, key: SigningKey) -> None:
        """Give a home made before pre-rotation its next.key (never overwrites one), and its key log."""
        _write_secret(self.next_key_path, key.seed.hex() + "\n")
        self.ensure_key_log()
        _fsync_dir(self.path)

    def ensure_key_log(self) -> None:
        """Start the key log of a home made before there was one, while its key is still the identity's own."""
        current, following = self.load_key(), self.load_next_key()
        if following is not None and current.did == self.identity() and not (self.path / KEY_LOG_FILE).exists():
            self._write_log(start_log(current, next_digest(following.public_key)))

    def load_key_log(self) -> KeyLog | None:
        """The identity's key log, or None for a home that has none (made before it existed, a device, a
        recovered key: SPEC.md §19.9)."""
        try:
            data = json.loads((self.path / KEY_LOG_FILE).read_text(encoding="ascii"))
            return KeyLog.from_body({"identity": data["identity"],
                                     "keys": [[bytes.fromhex(x) for x in step] for step in data["keys"]]})
        except FileNotFoundError:
            return None
        except (ValueError, KeyError, TypeError) as exc:
            raise LocalError("bad_key_file", f"{self.path / KEY_LOG_FILE} is damaged: {exc}") from None

    def _write_log(self, log: KeyLog) -> None:
        """Write the key log whole beside its file and rename it over (a crash leaves the old or the new one)."""
        path = self.path / KEY_LOG_FILE
        fresh = path.with_name(path.name + ".new")
        fresh.unlink(missing_ok=True)
        text = json.dumps({"identity": log.identity, "keys": [[b.hex() for b in step] for step in log.steps]})
        _write_secret(fresh, text + "\n")
        os.replace(fresh, path)

    def identity(self) -> str:
        """The did:key ledgers name this home's member by: its first key's, whatever key signs now."""
        try:
            return (self.path / IDENTITY_FILE).read_text(encoding="ascii").strip()
        except FileNotFoundError:
            return self.load_key().did

    def write_as(self, identity: str) -> None:
        """From now on this home writes as `identity` (a device's member, a recovered identity)."""
        path = self.path / IDENTITY_FILE
        if path.exists() or identity == self.load_key().did:
            if self.identity() != identity:
                raise LocalError("identity_exists", f"this home already writes as {self.identity()}")
            return
        _write_secret(path, identity + "\n")
        _fsync_dir(self.path)

    def rotate(self, new: SigningKey, after: SigningKey, identity: str) -> None:
        """Make `new` the signing key and `after` the next one; the old key's seed is gone from the home.

        Each file is written whole beside its target (mode 0600 from the start) and renamed over it, so
        a crash leaves either file old or new, never half written."""
        if not (self.path / IDENTITY_FILE).exists():
            _write_secret(self.path / IDENTITY_FILE, identity + "\n")
        log = self.load_key_log()
        if log is not None and next_digest(new.public_key) == log.next:  # the log goes on with the key it named
            self._write_log(log.extended(new, next_digest(after.public_key)))
        for path, key in ((self.next_key_path, after), (self.key_path, new)):
            fresh = path.with_name(path.name + ".new")
            fresh.unlink(missing_ok=True)
            _write_secret(fresh, key.seed.hex() + "\n")
            os.replace(fresh, path)
        _fsync_dir(self.path)

    def load_token(self) -> str:
        try:
            return self.token_path.read_text().strip()
        except FileNotFoundError:
            raise LocalError("no_identity", f"no API token in {self.path} (run `tally init`)") from None


def _write_secret(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, SECRET_MODE)
    try:
        os.write(fd, text.encode("ascii"))
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(path: Path) -> None:
    if sys.platform == "win32":
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
