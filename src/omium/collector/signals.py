"""The three OTLP signals as the receivers see them: how each is decoded, checked and answered.

One :class:`Signal` per signal (:data:`TRACES`, :data:`LOGS`, :data:`METRICS`) lets OTLP/HTTP
and OTLP/gRPC serve all three with one code path each, and :func:`writer_for` finds the writer
that stores a signal.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from google.protobuf.message import Message
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2

from omium.collector import otlp, otlp_logs, otlp_metrics

if TYPE_CHECKING:
    from omium.collector.state import ServerState
    from omium.collector.writer import SpanWriter


@dataclass(frozen=True)
class Signal:
    """One OTLP signal.

    Attributes:
        name: ``traces``, ``logs`` or ``metrics`` (the OTLP/HTTP path is ``/v1/{name}``).
        unit: What requests are counted in, for messages ("spans", "log records", ...).
        grpc_method: The full gRPC method of its ``Export``.
        request_type: Its ``Export*ServiceRequest``.
        response_type: Its ``Export*ServiceResponse``.
        rejected_field: The ``partial_success`` field counting what was dropped.
        decode_protobuf: Bytes -> request (raises ``DecodeError``).
        decode_json: OTLP/JSON bytes -> request (raises ``DecodeError``).
        prepare: (request, its bytes or None) -> the checked :class:`~omium.collector.otlp.Prepared`.
    """

    name: str
    unit: str
    grpc_method: str
    request_type: type[Message]
    response_type: type[Message]
    rejected_field: str
    decode_protobuf: Callable[[bytes], Any]
    decode_json: Callable[[bytes], Any]
    prepare: Callable[[Any, bytes | None], otlp.Prepared]

    def response(self, prepared: otlp.Prepared) -> Message:
        """The export response: ``partial_success`` set only when something was dropped."""
        response = self.response_type()
        if prepared.rejected:
            partial = response.partial_success
            setattr(partial, self.rejected_field, prepared.rejected)
            partial.error_message = prepared.message
        return response


TRACES = Signal(
    name="traces",
    unit="spans",
    grpc_method="/opentelemetry.proto.collector.trace.v1.TraceService/Export",
    request_type=trace_service_pb2.ExportTraceServiceRequest,
    response_type=trace_service_pb2.ExportTraceServiceResponse,
    rejected_field="rejected_spans",
    decode_protobuf=otlp.decode_protobuf,
    decode_json=otlp.decode_json,
    prepare=otlp.prepare,
)

LOGS = Signal(
    name="logs",
    unit="log records",
    grpc_method="/opentelemetry.proto.collector.logs.v1.LogsService/Export",
    request_type=logs_service_pb2.ExportLogsServiceRequest,
    response_type=logs_service_pb2.ExportLogsServiceResponse,
    rejected_field="rejected_log_records",
    decode_protobuf=otlp_logs.decode_logs_protobuf,
    decode_json=otlp_logs.decode_logs_json,
    prepare=otlp_logs.prepare_logs,
)

METRICS = Signal(
    name="metrics",
    unit="data points",
    grpc_method="/opentelemetry.proto.collector.metrics.v1.MetricsService/Export",
    request_type=metrics_service_pb2.ExportMetricsServiceRequest,
    response_type=metrics_service_pb2.ExportMetricsServiceResponse,
    rejected_field="rejected_data_points",
    decode_protobuf=otlp_metrics.decode_metrics_protobuf,
    decode_json=otlp_metrics.decode_metrics_json,
    prepare=otlp_metrics.prepare_metrics,
)

SIGNALS: tuple[Signal, ...] = (TRACES, LOGS, METRICS)


def writer_for(state: ServerState, signal: Signal) -> SpanWriter:
    """The writer that stores ``signal`` on this server."""
    if signal is LOGS:
        return state.log_writer
    if signal is METRICS:
        return state.metric_writer
    return state.writer


__all__ = ["LOGS", "METRICS", "SIGNALS", "TRACES", "Signal", "writer_for"]
