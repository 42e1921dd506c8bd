"""``Content-Encoding`` decoders for request bodies, each bounded while it decompresses.

``gzip`` (every member of a multi-member body), ``deflate`` (zlib-wrapped, as RFC 9110 says, or
raw, as several HTTP clients send it: told apart by the zlib header) and ``zstd`` (every frame).
Each decoder is fed the body as it arrives and raises :class:`BodyTooLarge` as soon as its output
passes the cap, never holding much more than the cap: a zip bomb stops there.
"""

from __future__ import annotations

import zlib
from typing import Protocol

from omium.errors import DecodeError

ENCODINGS: tuple[str, ...] = ("gzip", "zstd", "deflate", "identity")
# Compressed bytes given to the zstd decoder at once: they decode to at most 32 MiB (blocks of
# 4 bytes holding 128 KiB each), the most it may hold past the cap before it is stopped.
_ZSTD_SLICE = 1024


class BodyTooLarge(Exception):
    """The (decompressed) body passed the server's cap."""


class UnsupportedEncoding(Exception):
    """A ``Content-Encoding`` this server does not decode."""


class Decoder(Protocol):
    """Decompresses a body fed in pieces."""

    def feed(self, data: bytes) -> bytes:
        """The output of ``data`` (raises :class:`BodyTooLarge` past the cap)."""

    def finish(self) -> bytes:
        """What is left once the body ended (raises ``DecodeError`` for a truncated one)."""


class _Capped:
    def __init__(self, cap: int) -> None:
        self._cap = cap
        self._size = 0

    def _count(self, piece: bytes) -> None:
        self._size += len(piece)
        if self._size > self._cap:
            raise BodyTooLarge


class Gunzip(_Capped):
    """Streaming gzip decoding of every member of a (possibly multi-member) body, capped in total.

    Concatenated gzip streams are valid gzip (``gzip.decompress`` and ``zcat`` read them all): a
    member that ends with input left over starts a new decoder on the rest.
    """

    def __init__(self, cap: int) -> None:
        super().__init__(cap)
        self._member = zlib.decompressobj(16 + zlib.MAX_WBITS)
        self._seen_input = False

    def feed(self, data: bytes) -> bytes:
        """Decompress ``data``; see :class:`Decoder`."""
        out: list[bytes] = []
        while data:
            self._seen_input = True
            if self._member.eof:
                if not data.strip(b"\x00"):
                    break  # zero padding after the last member, as gzip(1) allows
                self._member = zlib.decompressobj(16 + zlib.MAX_WBITS)
            # max_length bounds what this input may inflate to: a zip bomb stops at the cap.
            piece = self._member.decompress(data, self._cap + 1 - self._size)
            if self._member.unconsumed_tail:
                raise BodyTooLarge
            self._count(piece)
            out.append(piece)
            data = self._member.unused_data if self._member.eof else b""
        return b"".join(out)

    def finish(self) -> bytes:
        """The rest; see :class:`Decoder`."""
        if not self._seen_input:
            return b""
        tail = self._member.flush()
        self._count(tail)
        if not self._member.eof:
            raise DecodeError("gzip body is truncated")
        return tail


class Inflate(_Capped):
    """``deflate``: a zlib stream (RFC 1950), or a raw deflate stream (RFC 1951), capped.

    The kind is read from the first two bytes: a zlib header names method 8 and is a multiple of
    31; a raw stream's first bytes almost never are, and when they are the zlib checksum fails.
    """

    def __init__(self, cap: int) -> None:
        super().__init__(cap)
        self._stream: zlib._Decompress | None = None
        self._head = b""

    def feed(self, data: bytes) -> bytes:
        """Decompress ``data``; see :class:`Decoder`."""
        if self._stream is None:
            self._head += data
            if len(self._head) < 2:
                return b""
            data, self._head = self._head, b""
            zlib_header = data[0] & 0x0F == 8 and (data[0] << 8 | data[1]) % 31 == 0
            self._stream = zlib.decompressobj(zlib.MAX_WBITS if zlib_header else -zlib.MAX_WBITS)
        if self._stream.eof:
            return b""  # bytes after the end of the stream are ignored, as zlib does
        piece = self._stream.decompress(data, self._cap + 1 - self._size)
        if self._stream.unconsumed_tail:
            raise BodyTooLarge
        self._count(piece)
        return piece

    def finish(self) -> bytes:
        """The rest; see :class:`Decoder`."""
        if self._stream is None:
            if self._head:
                raise DecodeError("deflate body is truncated")
            return b""
        tail = self._stream.flush()
        self._count(tail)
        if not self._stream.eof:
            raise DecodeError("deflate body is truncated")
        return tail


class Unzstd(_Capped):
    """``zstd``: every frame of the body (concatenated frames are one body, as gzip members),
    through zstandard's streaming decompressor, capped.

    zstandard's decompressor has no output limit, so input is given to it at most
    :data:`_ZSTD_SLICE` bytes at a time: the most a slice can decode to is bounded (a 4-byte
    block holds at most 128 KiB), and the cap is checked after each. A body that ends inside a
    frame is refused as truncated.
    """

    def __init__(self, cap: int) -> None:
        import zstandard  # the server extra's; imported when a client sends zstd

        super().__init__(cap)
        self._context = zstandard.ZstdDecompressor()
        self._frame = self._context.decompressobj()
        self._error: type[Exception] = zstandard.ZstdError
        self._seen_input = False

    def feed(self, data: bytes) -> bytes:
        """Decompress ``data``; see :class:`Decoder`."""
        out: list[bytes] = []
        position = 0
        while position < len(data):
            self._seen_input = True
            if self._frame.eof:
                self._frame = self._context.decompressobj()
            piece = data[position : position + _ZSTD_SLICE]
            position += len(piece)
            try:
                output = self._frame.decompress(piece)
            except self._error as exc:
                raise DecodeError(f"body is not valid zstd: {exc}") from None
            self._count(output)
            out.append(output)
            if self._frame.eof:
                position -= len(self._frame.unused_data)  # the next frame starts there
        return b"".join(out)

    def finish(self) -> bytes:
        """The rest; see :class:`Decoder`."""
        if self._seen_input and not self._frame.eof:
            raise DecodeError("zstd body is truncated")
        return b""


def decoder_for(encoding: str, cap: int) -> Decoder | None:
    """The decoder of ``encoding`` (a ``Content-Encoding`` value), None for ``identity``.

    Raises:
        UnsupportedEncoding: for any other encoding.
    """
    encoding = encoding.strip().lower() or "identity"
    if encoding == "identity":
        return None
    if encoding in ("gzip", "x-gzip"):
        return Gunzip(cap)
    if encoding == "deflate":
        return Inflate(cap)
    if encoding == "zstd":
        return Unzstd(cap)
    raise UnsupportedEncoding(encoding)


__all__ = [
    "ENCODINGS",
    "BodyTooLarge",
    "Decoder",
    "Gunzip",
    "Inflate",
    "UnsupportedEncoding",
    "Unzstd",
    "decoder_for",
]
