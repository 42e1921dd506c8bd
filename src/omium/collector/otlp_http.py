"""``POST /v1/traces``: OTLP/HTTP, protobuf or JSON, answering as the OTLP specification says.

200 with ``partial_success`` unset on success (also for an empty request); 200 with
``partial_success.rejected_spans`` when some spans were dropped; 400 + ``google.rpc.Status`` for
undecodable data; 413 past the body cap; 415 for other content types; 503 + ``Retry-After``
under overload or when the warehouse failed (the client retries; spans are deduplicated).
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

from omium.collector.otlp import decode_json, decode_protobuf, prepare
from omium.collector.state import ServerState
from omium.errors import DecodeError, OverloadedError

PROTOBUF = "application/x-protobuf"
JSON = "application/json"


class BodyTooLarge(Exception):
    """The (decompressed) body passed the server's cap."""


def _status_response(
    kind: str, http_status: int, code: int, message: str, headers: dict[str, str] | None = None
) -> Response:
    status = status_pb2.Status(code=code, message=message)
    if kind == JSON:
        body = json.dumps({"code": code, "message": message}).encode()
    else:
        body = status.SerializeToString()
    return Response(body, status_code=http_status, media_type=kind, headers=headers)


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


async def _read_body(request: Request, cap: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > cap:
        raise BodyTooLarge
    encoding = request.headers.get("content-encoding", "identity").strip().lower()
    if encoding not in ("identity", "gzip", ""):
        raise DecodeError(f"unsupported Content-Encoding {encoding!r}; use gzip or none")
    chunks: list[bytes] = []
    size = 0
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS) if encoding == "gzip" else None
    try:
        async for chunk in request.stream():
            if inflater is not None:
                # max_length bounds what one chunk may inflate to: a zip bomb stops at the cap.
                chunk = inflater.decompress(chunk, cap + 1 - size)
                if inflater.unconsumed_tail:
                    raise BodyTooLarge
            size += len(chunk)
            if size > cap:
                raise BodyTooLarge
            chunks.append(chunk)
        if inflater is not None:
            tail = inflater.flush()
            size += len(tail)
            if size > cap:
                raise BodyTooLarge
            chunks.append(tail)
            if not inflater.eof:
                raise DecodeError("gzip body is truncated")
    except zlib.error as exc:
        raise DecodeError(f"body is not valid gzip: {exc}") from None
    return b"".join(chunks)


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
    try:
        body = await _read_body(request, state.settings.max_body_bytes)
        if content_type == PROTOBUF:
            parsed = decode_protobuf(body)
            prepared = prepare(parsed, body)
        else:
            prepared = prepare(decode_json(body))
    except BodyTooLarge:
        return _status_response(
            content_type,
            413,
            code_pb2.INVALID_ARGUMENT,
            f"body larger than {state.settings.max_body_bytes} bytes (decompressed)",
        )
    except DecodeError as exc:
        return _status_response(content_type, 400, code_pb2.INVALID_ARGUMENT, str(exc))
    try:
        future = state.writer.submit(prepared.body, prepared.spans)
    except OverloadedError as exc:
        return _status_response(
            content_type,
            503,
            code_pb2.UNAVAILABLE,
            str(exc),
            headers={"Retry-After": str(int(exc.retry_after + 0.999))},
        )
    try:
        await asyncio.wrap_future(future)
    except Exception as exc:
        return _status_response(
            content_type,
            503,
            code_pb2.UNAVAILABLE,
            f"spans were not stored, retry: {exc}",
            headers={"Retry-After": "2"},
        )
    return _success(content_type, prepared.rejected, prepared.message)
