"""``POST /v1/traces``: OTLP/HTTP, protobuf or JSON, answering as the OTLP specification says.

200 with ``partial_success`` unset on success (also for an empty request); 200 with
``partial_success.rejected_spans`` when some spans were dropped; 400 + ``google.rpc.Status`` for
undecodable data; 413 past the body cap; 415 for other content types and encodings; 503 +
``Retry-After`` under overload (counted in spans and in bytes, including bodies still being read)
or when the warehouse failed (the client retries; spans are deduplicated).
"""

from __future__ import annotations

import asyncio
import json
import zlib

from google.protobuf import json_format
from google.rpc import code_pb2, status_pb2
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse
from starlette.requests import Request
from starlette.responses import Response

from omium.collector.jsonbody import printable
from omium.collector.otlp import Prepared, decode_json, decode_protobuf, prepare
from omium.collector.state import ServerState
from omium.collector.writer import Reservation
from omium.errors import DecodeError, OverloadedError

PROTOBUF = "application/x-protobuf"
JSON = "application/json"
ENCODINGS = ("gzip", "identity")


class BodyTooLarge(Exception):
    """The (decompressed) body passed the server's cap."""


class UnsupportedEncoding(Exception):
    """A ``Content-Encoding`` this server does not decode."""


def _status_response(
    kind: str, http_status: int, code: int, message: str, headers: dict[str, str] | None = None
) -> Response:
    message = printable(message)
    if kind == JSON:
        body = json.dumps({"code": code, "message": message}).encode()
    else:
        body = status_pb2.Status(code=code, message=message).SerializeToString()
    return Response(body, status_code=http_status, media_type=kind, headers=headers)


def _overloaded(kind: str, message: str, retry_after: float) -> Response:
    return _status_response(
        kind, 503, code_pb2.UNAVAILABLE, message, headers={"Retry-After": str(int(retry_after + 0.999))}
    )


def _success(kind: str, rejected: int = 0, message: str = "") -> Response:
    response = ExportTraceServiceResponse()
    if rejected:
        response.partial_success.rejected_spans = rejected
        response.partial_success.error_message = message
    if kind == JSON:
        body = json_format.MessageToJson(response, indent=None).encode()
    else:
        body = response.SerializeToString()
    return Response(body, status_code=200, media_type=kind)


class _Gunzip:
    """Streaming gzip decoding of every member of a (possibly multi-member) body, capped in total.

    Concatenated gzip streams are valid gzip (``gzip.decompress`` and ``zcat`` read them all): a
    member that ends with input left over starts a new decoder on the rest.
    """

    def __init__(self, cap: int) -> None:
        self._cap = cap
        self._size = 0
        self._member = zlib.decompressobj(16 + zlib.MAX_WBITS)
        self._seen_input = False

    def feed(self, data: bytes) -> bytes:
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
        if not self._seen_input:
            return b""
        tail = self._member.flush()
        self._count(tail)
        if not self._member.eof:
            raise DecodeError("gzip body is truncated")
        return tail

    def _count(self, piece: bytes) -> None:
        self._size += len(piece)
        if self._size > self._cap:
            raise BodyTooLarge


async def _read_body(request: Request, cap: int, reservation: Reservation) -> bytes:
    """The body, decompressed, counted against ``reservation`` as it arrives."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > cap:
        raise BodyTooLarge
    encoding = request.headers.get("content-encoding", "identity").strip().lower() or "identity"
    if encoding not in ENCODINGS:
        raise UnsupportedEncoding(encoding)
    gunzip = _Gunzip(cap) if encoding == "gzip" else None
    chunks: list[bytes] = []
    size = 0
    try:
        async for chunk in request.stream():
            if gunzip is not None:
                chunk = gunzip.feed(chunk)
            else:
                size += len(chunk)
                if size > cap:
                    raise BodyTooLarge
            reservation.grow(len(chunk))
            chunks.append(chunk)
        if gunzip is not None:
            tail = gunzip.finish()
            reservation.grow(len(tail))
            chunks.append(tail)
    except zlib.error as exc:
        raise DecodeError(f"body is not valid gzip: {exc}") from None
    return b"".join(chunks)


def _decode(content_type: str, body: bytes) -> Prepared:
    # A function of its own, so that the decoded message is freed before the handler waits.
    if content_type == PROTOBUF:
        return prepare(decode_protobuf(body), body)
    return prepare(decode_json(body))


async def export_traces(request: Request) -> Response:
    """Receive one OTLP/HTTP trace export."""
    state: ServerState = request.app.state.omium
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type not in (PROTOBUF, JSON):
        return Response(
            f"unsupported Content-Type {content_type!r}; OTLP/HTTP takes {PROTOBUF} or {JSON}\n",
            status_code=415,
            media_type="text/plain",
        )
    cap = state.settings.max_body_bytes
    writer = state.writer
    try:
        # Counted from the first byte: bodies being read take memory as much as queued ones.
        with writer.reserve() as reservation:
            prepared = _decode(content_type, await _read_body(request, cap, reservation))
            future = writer.submit(
                prepared.body,
                prepared.spans,
                days=(prepared.first_day, prepared.last_day),
                reservation=reservation,
            )
    except OverloadedError as exc:
        return _overloaded(content_type, str(exc), exc.retry_after)
    except BodyTooLarge:
        return _status_response(
            content_type, 413, code_pb2.INVALID_ARGUMENT, f"body larger than {cap} bytes (decompressed)"
        )
    except UnsupportedEncoding as exc:
        return _status_response(
            content_type,
            415,
            code_pb2.INVALID_ARGUMENT,
            f"unsupported Content-Encoding {exc.args[0]!r}; use gzip or none",
            headers={"Accept-Encoding": ", ".join(ENCODINGS)},
        )
    except DecodeError as exc:
        return _status_response(content_type, 400, code_pb2.INVALID_ARGUMENT, str(exc))
    try:
        await asyncio.wrap_future(future)
    except Exception as exc:
        return _overloaded(content_type, f"spans were not stored, retry: {exc}", 2.0)
    return _success(content_type, prepared.rejected, prepared.message)
