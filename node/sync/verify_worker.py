"""A signature-check worker process (`python -m node.sync.verify_worker`), run by node/sync/ingest.py.

It imports `protocol.identity` and nothing of the node, so it costs a fraction of a node's memory
and starts quickly. Over its stdin it reads batches, over its stdout it answers each with one
byte per signature (1 valid, 0 not), checked by `verify_many` (libsodium via PyNaCl): the very
function the node calls on its own threads. A batch is a 4-byte count, then per signature three
fields (public key, signature, signed bytes), each a 4-byte length and the bytes (big-endian).
It ends when its input ends. Ctrl-C (sent to the whole process group) is ignored: the node stops it.
"""

from __future__ import annotations

import signal
import struct
import sys
from typing import BinaryIO, Final

from protocol.identity import verify_many

_LEN: Final = struct.Struct(">I")


def read_exactly(stream: BinaryIO, n: int) -> bytes | None:
    data = stream.read(n)
    return data if len(data) == n else None


def serve(source: BinaryIO, sink: BinaryIO) -> None:
    while (head := read_exactly(source, 4)) is not None:
        triples = []
        for _ in range(_LEN.unpack(head)[0]):
            fields = []
            for _ in range(3):
                size = read_exactly(source, 4)
                field = None if size is None else read_exactly(source, _LEN.unpack(size)[0])
                if field is None:
                    return  # cut short: the node is gone
                fields.append(field)
            triples.append((fields[0], fields[1], fields[2]))
        sink.write(bytes(verify_many(triples)))
        sink.flush()


def encode_batch(triples: list[tuple[bytes, bytes, bytes]]) -> bytes:
    parts = [_LEN.pack(len(triples))]
    for triple in triples:
        for field in triple:
            parts.append(_LEN.pack(len(field)))
            parts.append(field)
    return b"".join(parts)


if __name__ == "__main__":
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    serve(sys.stdin.buffer, sys.stdout.buffer)
