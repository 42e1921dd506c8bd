"""How LangGraph values become content-addressed blobs, and back.

Values are serialized by the saver's serde (``dumps_typed``: LangGraph's ``JsonPlusSerializer``
unless another is given) into *typed bytes*, ``type NUL data``. A channel value becomes a
*reference*, which the checkpoint's state blob holds:

- ``[0, typed]`` — a small value (at most ``INLINE_MAX`` bytes), inline;
- ``[1, digest]`` — a value in a blob of its own (``digest``: the 32 raw bytes of its SHA-256);
- ``[2, chunks, tail]`` — a ``list`` (a message history; a list of numbers stays one value),
  split into items. Each item is an *entry*: its digest when it is a blob of its own,
  ``[typed]`` when small enough to be inline. The entries go in chunks of ``CHUNK``; each full
  chunk is a blob (``chunks`` are their digests), the last partial one is ``tail``.

So a history that grew by a message is the same full chunks (stored once, 32 bytes each in the
reference), the tail, and one new item blob: storage grows with what was added, not with what
was kept. Identical values and items (the same message in the channel and in the write that
produced it) are one blob. Everything but the values themselves is msgpack.

A serde that does not give equal values equal bytes (an encrypting one) stays correct but loses
the sharing.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import ormsgpack
from langgraph.checkpoint.serde.base import SerializerProtocol

from omium.adapters.langgraph._shared import BlobCache

INLINE, BLOB, LIST = 0, 1, 2
INLINE_MAX = 64  # bytes: below this, a digest (32 bytes) and a blob row cost more than the value
CHUNK = 32  # entries per chunk: a reference lists len/32 chunks and at most 31 entries
FORMAT = 1  # of the state blob
# A list of only these (a vector, say) is one value: items this small gain nothing apart.
SCALARS = frozenset({int, float, bool, type(None)})


def pack_typed(typed: tuple[str, bytes]) -> bytes:
    """``(type, data)`` from ``dumps_typed`` as one byte string."""
    return typed[0].encode() + b"\0" + typed[1]


def unpack_typed(data: bytes) -> tuple[str, bytes]:
    """The inverse of :func:`pack_typed`."""
    kind, _, payload = data.partition(b"\0")
    return kind.decode(), payload


@dataclass(frozen=True)
class State:
    """A checkpoint's state blob: the checkpoint without its values, and references to them."""

    header: bytes  # typed bytes of the checkpoint minus ``channel_values``
    refs: dict[str, Any]  # channel -> reference
    metadata: bytes | None = None  # typed metadata, when JSON would not round-trip it

    def pack(self) -> bytes:
        """The blob."""
        body: dict[str, Any] = {"f": FORMAT, "c": self.header, "r": self.refs}
        if self.metadata is not None:
            body["m"] = self.metadata
        return ormsgpack.packb(body)

    @classmethod
    def unpack(cls, data: bytes) -> State:
        """A state from its blob."""
        body = ormsgpack.unpackb(data)
        return cls(body["c"], body["r"], body.get("m"))


class Codec:
    """Values to references and back, through a store's blobs."""

    def __init__(self, serde: SerializerProtocol, blobs: BlobCache) -> None:
        self.serde = serde
        self.blobs = blobs

    def typed(self, value: Any) -> bytes:
        """``value`` as typed bytes."""
        return pack_typed(self.serde.dumps_typed(value))

    def load(self, typed: bytes) -> Any:
        """The value of typed bytes."""
        return self.serde.loads_typed(unpack_typed(typed))

    def encode(self, value: Any) -> list[Any]:
        """The reference of ``value``, storing what it needs."""
        if type(value) is list and not all(type(item) in SCALARS for item in value):
            entries = [self._entry(item) for item in value]
            full = len(entries) - len(entries) % CHUNK
            chunks = [self.blobs.put(ormsgpack.packb(entries[i : i + CHUNK])) for i in range(0, full, CHUNK)]
            return [LIST, chunks, entries[full:]]
        typed = self.typed(value)
        if len(typed) <= INLINE_MAX:
            return [INLINE, typed]
        return [BLOB, self.blobs.put(typed)]

    def _entry(self, item: Any) -> bytes | list[bytes]:
        typed = self.typed(item)
        return [typed] if len(typed) <= INLINE_MAX else self.blobs.put(typed)

    def decode(self, refs: Iterable[list[Any]]) -> list[Any]:
        """The values of references (two batched blob reads: chunks and values, then items)."""
        refs = list(refs)
        first = self.blobs.get_many(
            key for ref in refs if ref[0] != INLINE for key in (ref[1] if ref[0] == LIST else [ref[1]])
        )
        entries: dict[int, list[Any]] = {}
        for i, ref in enumerate(refs):
            if ref[0] == LIST:
                entries[i] = [e for chunk in ref[1] for e in ormsgpack.unpackb(first[chunk])] + list(ref[2])
        items = self.blobs.get_many(e for found in entries.values() for e in found if isinstance(e, bytes))
        values: list[Any] = []
        for i, ref in enumerate(refs):
            if ref[0] == INLINE:
                values.append(self.load(ref[1]))
            elif ref[0] == BLOB:
                values.append(self.load(first[ref[1]]))
            else:
                values.append([self.load(items[e] if isinstance(e, bytes) else e[0]) for e in entries[i]])
        return values

    def encode_writes(self, writes: Iterable[tuple[str, int, Any]]) -> bytes:
        """The blob of one task's writes, ``(channel, index, value)`` each."""
        return self.blobs.put(ormsgpack.packb([[c, i, self.encode(v)] for c, i, v in writes]))

    def decode_writes(self, keys: Iterable[bytes]) -> dict[bytes, list[tuple[str, int, Any]]]:
        """The writes in each blob of :meth:`encode_writes`, values decoded."""
        unpacked = {key: ormsgpack.unpackb(data) for key, data in self.blobs.get_many(keys).items()}
        values = iter(self.decode(ref for rows in unpacked.values() for _, _, ref in rows))
        return {key: [(c, i, next(values)) for c, i, _ in rows] for key, rows in unpacked.items()}
