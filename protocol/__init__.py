"""Tally's protocol: formats, rules and state machines, with no I/O.

Nothing here opens a socket or a file, reads a clock or draws randomness it was
not handed; `node/` does all of that.
"""

from .chain import ChainHead, check_next, verify_chain
from .cid import CID
from .dagjson import from_json_value, parse_body, to_json_value
from .entry import (
    FORMAT_VERSION,
    GENESIS_KIND,
    MAX_HEADER_BYTES,
    MAX_PAYLOAD_BYTES,
    SIGNING_PREFIX,
    Entry,
    Header,
    Payload,
    check_entry_signature,
    create_entry,
    create_entry_with,
    decode_entry,
    decode_header,
    decode_stored_entries,
    decode_stored_entry,
)
from .errors import CODES, InvalidData, LocalError, TallyError
from .fork import ForkProof
from .handshake import Handshake, Transport
from .identity import AgentId, SigningKey, did_from_public_key, public_key_from_did, verify_signature

__all__ = [
    "CID",
    "CODES",
    "FORMAT_VERSION",
    "GENESIS_KIND",
    "MAX_HEADER_BYTES",
    "MAX_PAYLOAD_BYTES",
    "SIGNING_PREFIX",
    "AgentId",
    "ChainHead",
    "Entry",
    "ForkProof",
    "Handshake",
    "Header",
    "InvalidData",
    "LocalError",
    "Payload",
    "SigningKey",
    "TallyError",
    "Transport",
    "check_entry_signature",
    "check_next",
    "create_entry",
    "create_entry_with",
    "decode_entry",
    "decode_header",
    "decode_stored_entries",
    "decode_stored_entry",
    "did_from_public_key",
    "from_json_value",
    "parse_body",
    "public_key_from_did",
    "to_json_value",
    "verify_chain",
    "verify_signature",
]
