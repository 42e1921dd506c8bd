"""``POST /v1/traces``, ``/v1/logs`` and ``/v1/metrics``: OTLP/HTTP, protobuf or JSON, answering
as the OTLP specification says.

200 with ``partial_success`` unset on success (also for an empty request); 200 with
``partial_success.rejected_spans`` (``rejected_log_records``, ``rejected_data_points``) when some
were dropped; 400 + ``google.rpc.Status`` for undecodable data; 413 past the body cap, counted
after decompression (gzip, zstd, deflate: :mod:`omium.collector.encodings`); 415 for other
content types and encodings; 503 + ``Retry-After`` under overload (counted in records and in
bytes, including bodies still being read) or when the warehouse failed (the client retries;
records are deduplicated).
"""

from __future__ import annotations

import asyncio
import json
import zlib

from google.protobuf import json_format
from google.protobuf.message import Message
from google.rpc import code_pb2, status_pb2
from starlette.requests import Request
from starlette.responses import Response

from omium.collector.encodings import ENCODINGS, BodyTooLarge, UnsupportedEncoding, decoder_for
from omium.collector.jsonbody import printable
from omium.collector.otlp import Prepared
from omium.collector.signals import LOGS, METRICS, TRACES, Signal, writer_for
from omium.collector.state import ServerState
from omium.collector.writer import Reservation
from omium.errors import DecodeError, OverloadedError

PROTOBUF = "application/x-protobuf"
JSON = "application/json"


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


def _success(kind: str, response: Message) -> Response:
    if kind == JSON:
        body = json_format.MessageToJson(response, indent=None).encode()
    else:
        body = response.SerializeToString()
    return Response(body, status_code=200, media_type=kind)


async def _read_body(request: Request, cap: int, reservation: Reservation) -> bytes:
    """The body, decompressed, counted against ``reservation`` as it arrives."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > cap:
        raise BodyTooLarge
    decoder = decoder_for(request.headers.get("content-encoding", "identity"), cap)
    chunks: list[bytes] = []
    size = 0
    try:
        async for chunk in request.stream():
            if decoder is not None:
                chunk = decoder.feed(chunk)
            else:
                size += len(chunk)
                if size > cap:
                    raise BodyTooLarge
            reservation.grow(len(chunk))
            chunks.append(chunk)
        if decoder is not None:
            tail = decoder.finish()
            reservation.grow(len(tail))
            chunks.append(tail)
    except zlib.error as exc:
        encoding = request.headers.get("content-encoding", "").strip().lower()
        raise DecodeError(f"body is not valid {encoding}: {exc}") from None
    return b"".join(chunks)


def _decode(signal: Signal, content_type: str, body: bytes) -> Prepared:
    # A function of its own, so that the decoded message is freed before the handler waits.
    if content_type == PROTOBUF:
        return signal.prepare(signal.decode_protobuf(body), body)
    return signal.prepare(signal.decode_json(body), None)


async def _export(request: Request, signal: Signal) -> Response:
    """Receive one OTLP/HTTP export of ``signal``."""
    state: ServerState = request.app.state.omium
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type not in (PROTOBUF, JSON):
        return Response(
            f"unsupported Content-Type {content_type!r}; OTLP/HTTP takes {PROTOBUF} or {JSON}\n",
            status_code=415,
            media_type="text/plain",
        )
    cap = state.settings.max_body_bytes
    writer = writer_for(state, signal)
    try:
        # Counted from the first byte: bodies being read take memory as much as queued ones.
        with writer.reserve() as reservation:
            prepared = _decode(signal, content_type, await _read_body(request, cap, reservation))
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
        supported = ", ".join(e for e in ENCODINGS if e != "identity")
        return _status_response(
            content_type,
            415,
            code_pb2.INVALID_ARGUMENT,
            f"unsupported Content-Encoding {exc.args[0]!r}; use {supported} or none",
            headers={"Accept-Encoding": ", ".join(ENCODINGS)},
        )
    except DecodeError as exc:
        return _status_response(content_type, 400, code_pb2.INVALID_ARGUMENT, str(exc))
    try:
        await asyncio.wrap_future(future)
    except Exception as exc:
        return _overloaded(content_type, f"{signal.unit} were not stored, retry: {exc}", 2.0)
    return _success(content_type, signal.response(prepared))


async def export_traces(request: Request) -> Response:
    """Receive one OTLP/HTTP trace export (``POST /v1/traces``)."""
    return await _export(request, TRACES)


async def export_logs(request: Request) -> Response:
    """Receive one OTLP/HTTP logs export (``POST /v1/logs``) into ``otel_logs``."""
    return await _export(request, LOGS)


async def export_metrics(request: Request) -> Response:
    """Receive one OTLP/HTTP metrics export (``POST /v1/metrics``) into ``otel_metrics_*``."""
    return await _export(request, METRICS)
