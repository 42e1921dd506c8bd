"""OTLP/gRPC: ``opentelemetry.proto.collector.trace.v1.TraceService/Export`` on port 4317.

Overload answers ``UNAVAILABLE`` with a ``google.rpc.RetryInfo`` detail (the OTLP throttling
signal); invalid data answers ``INVALID_ARGUMENT``; dropped spans answer a partial success.
"""

from __future__ import annotations

import logging
from concurrent import futures

import grpc
from google.protobuf import any_pb2, duration_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc

from omium.collector.otlp import prepare
from omium.collector.writer import SpanWriter
from omium.errors import OverloadedError

logger = logging.getLogger(__name__)

MAX_MESSAGE_BYTES = 64 * 1024 * 1024
ACK_TIMEOUT_SECONDS = 60.0


def _abort_with_retry(context: grpc.ServicerContext, message: str, retry_after: float) -> None:
    seconds = int(retry_after)
    retry = error_details_pb2.RetryInfo(
        retry_delay=duration_pb2.Duration(seconds=seconds, nanos=int((retry_after - seconds) * 1e9))
    )
    detail = any_pb2.Any()
    detail.Pack(retry)
    status = status_pb2.Status(code=code_pb2.UNAVAILABLE, message=message, details=[detail])
    context.set_trailing_metadata((("grpc-status-details-bin", status.SerializeToString()),))
    context.abort(grpc.StatusCode.UNAVAILABLE, message)


class TraceService(trace_service_pb2_grpc.TraceServiceServicer):
    """The OTLP trace service, writing through the shared :class:`SpanWriter`."""

    def __init__(self, writer: SpanWriter) -> None:
        self._writer = writer

    def Export(
        self, request: trace_service_pb2.ExportTraceServiceRequest, context: grpc.ServicerContext
    ) -> trace_service_pb2.ExportTraceServiceResponse:
        """Store one export request; answer once its spans are durable."""
        prepared = prepare(request)
        try:
            future = self._writer.submit(prepared.body, prepared.spans)
        except OverloadedError as exc:
            _abort_with_retry(context, str(exc), exc.retry_after)
            raise  # abort raises; this line only satisfies type checkers
        try:
            future.result(timeout=ACK_TIMEOUT_SECONDS)
        except Exception as exc:
            _abort_with_retry(context, f"spans were not stored, retry: {exc}", 2.0)
            raise
        response = trace_service_pb2.ExportTraceServiceResponse()
        if prepared.rejected:
            response.partial_success.rejected_spans = prepared.rejected
            response.partial_success.error_message = prepared.message
        return response


def start_grpc_server(writer: SpanWriter, host: str, port: int, workers: int = 8) -> tuple[grpc.Server, int]:
    """Start the gRPC server; returns it and the bound port (``port=0`` picks a free one)."""
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="omium-grpc"),
        options=[
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
            ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
        ],
        # More concurrent RPCs than workers would only queue in memory; refuse them instead.
        maximum_concurrent_rpcs=workers * 4,
    )
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(TraceService(writer), server)
    address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    try:
        bound = server.add_insecure_port(address)
    except RuntimeError:  # newer grpcio raises instead of returning 0
        bound = 0
    if bound == 0:
        raise OSError(f"cannot bind OTLP/gRPC to {address}")
    server.start()
    return server, bound
