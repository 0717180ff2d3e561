"""A signature-check worker process (`python -m node.sync.verify_worker`), run by node/sync/ingest.py.

It imports `protocol` and nothing of the node, so it costs a fraction of a node's memory and
starts quickly. It checks what costs the most CPU of a received entry (SPEC §5.4): the signature
(libsodium via PyNaCl, `verify_signed_many`: the very function the node calls on its own threads)
and, for a job that carries one, that the payload is a canonical DAG-CBOR map
(`payload_is_canonical_map`, the check `decode_entry` makes). The node sends none today: it
decodes each entry in full (node/sync/ingest.py), which costs it less than the check costs here.

Over its stdin it reads batches, over its stdout it answers each with one byte per entry
(`SIG_OK` | `PAYLOAD_OK` bits). A batch is read in one piece: an 8-byte head (entry count, body
size), then per entry an 8-byte head (the signed blob's size, the payload's size plus one, 0 for
no payload), the 32-byte public key, the signed blob (signature then signed bytes, as libsodium
takes them) and the payload (big-endian sizes). It ends when its input ends. Ctrl-C (sent to the
whole process group) is ignored: the node stops it.
"""

from __future__ import annotations

import signal
import struct
import sys
from collections.abc import Sequence
from typing import BinaryIO, Final

from protocol.entry import payload_is_canonical_map
from protocol.identity import PUBLIC_KEY_BYTES, verify_signed_many

#: One entry to check: (public key, signature + the bytes it signs, payload bytes or None).
Job = tuple[bytes, bytes, bytes | None]
SIG_OK: Final = 1
PAYLOAD_OK: Final = 2  # the payload is absent (erased) or a canonical DAG-CBOR map

_HEAD: Final = struct.Struct(">II")


def check_jobs(jobs: Sequence[Job]) -> bytes:
    """One verdict byte per job: in the worker process, or on a thread when the workers failed."""
    valid = verify_signed_many([(key, signed) for key, signed, _ in jobs])
    return bytes(
        (SIG_OK if ok else 0) | (PAYLOAD_OK if payload is None or payload_is_canonical_map(payload) else 0)
        for ok, (_, _, payload) in zip(valid, jobs, strict=True)
    )


def encode_batch(jobs: Sequence[Job]) -> bytes:
    parts = [b""]
    size = 0
    for key, signed, payload in jobs:
        if len(key) != PUBLIC_KEY_BYTES:  # never valid: an empty blob fails as a bad key would
            key, signed = bytes(PUBLIC_KEY_BYTES), b""
        head = _HEAD.pack(len(signed), 0 if payload is None else len(payload) + 1)
        parts += (head, key, signed, payload or b"")
        size += 8 + PUBLIC_KEY_BYTES + len(signed) + (len(payload) if payload else 0)
    parts[0] = _HEAD.pack(len(jobs), size)
    return b"".join(parts)


def decode_batch(count: int, body: bytes) -> list[Job] | None:
    """The jobs of a batch's body; None if it is cut short or overlong (the node is gone or broken)."""
    jobs: list[Job] = []
    pos = 0
    unpack = _HEAD.unpack_from
    for _ in range(count):
        if pos + 8 + PUBLIC_KEY_BYTES > len(body):
            return None
        signed_size, payload_size = unpack(body, pos)
        key_at = pos + 8
        signed_at = key_at + PUBLIC_KEY_BYTES
        payload_at = signed_at + signed_size
        pos = payload_at + max(0, payload_size - 1)
        if pos > len(body):
            return None
        payload = body[payload_at:pos] if payload_size else None
        jobs.append((body[key_at:signed_at], body[signed_at:payload_at], payload))
    return jobs if pos == len(body) else None


def serve(source: BinaryIO, sink: BinaryIO) -> None:
    while len(head := source.read(8)) == 8:
        count, size = _HEAD.unpack(head)
        body = source.read(size)
        jobs = decode_batch(count, body) if len(body) == size else None
        if jobs is None:
            return  # cut short: the node is gone
        sink.write(check_jobs(jobs))
        sink.flush()


if __name__ == "__main__":
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    serve(sys.stdin.buffer, sys.stdout.buffer)
