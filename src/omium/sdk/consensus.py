"""Typed, validated hand-offs between agents: ``Consensus.broadcast`` and ``Consensus.receive``.

A message is validated against its schema (a pydantic model) and constraints before delivery,
persisted in the run's hand-off log, and acknowledged or rejected (with the reason) by the
receiver. Both sides are recorded calls, so a resumed run neither sends nor processes a message
twice; each side also stamps the message with its call's idempotency key, so a send or receive
re-executed after a crash finds its own message. The receiver takes messages strictly in
sequence order, waiting for a gap (a delayed message) to fill: delivery underneath may drop,
repeat, delay or reorder, processing is exactly once and in order.

A message carries the shared-state versions its sender had read: if one has moved on by the time
it is received, the message is rejected as stale (:class:`HandoffStale`) unless the receiver
accepts stale messages. It also carries the producer's span, which the consumer's span links to.
After a rollback, messages sent in the rolled-back stretch are retracted and messages received in
it are received again.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable, Mapping
from typing import Any

from opentelemetry import trace

from omium import semconv
from omium.errors import HandoffRejected, HandoffStale, HandoffTimeout, OmiumError
from omium.sdk import serde, tracing
from omium.sdk.calls import CallDefinition, ainvoke, invoke
from omium.sdk.context import RunContext, current, key_call_id
from omium.sdk.retry import RetryPolicy
from omium.sdk.store import HandoffRecord

PROCESSED = ("acked", "rejected")
# The store write of a message is retried: transports drop; the seq keeps retries single.
SEND_RETRY = RetryPolicy(
    max_attempts=5, initial_interval=0.01, maximum_interval=0.5, jitter=0.2, non_retryable=(HandoffRejected,)
)


def check_constraints(value: Any, constraints: Mapping[str, Any] | None) -> list[str]:
    """Violations of ``constraints`` by ``value`` (empty when it passes).

    Supported: ``min``/``max`` (numbers), ``allowed`` (a collection), ``not_empty``, ``check``
    (a callable returning True or a message), and per field ``{"apr": {"min": 2.5, "max": 8.5}}``
    for models and dicts.
    """
    violations: list[str] = []
    for key, rule in (constraints or {}).items():
        if key == "min" and not _number(value) >= rule:
            violations.append(f"value {value!r} is below the minimum {rule}")
        elif key == "max" and not _number(value) <= rule:
            violations.append(f"value {value!r} is above the maximum {rule}")
        elif key == "allowed" and value not in rule:
            violations.append(f"value {value!r} is not one of {sorted(map(str, rule))}")
        elif key == "not_empty" and rule and not value:
            violations.append("value is empty")
        elif key == "check":
            verdict = rule(value)
            if verdict is not True:
                violations.append(
                    str(verdict) if verdict else f"check {getattr(rule, '__name__', rule)} failed"
                )
        elif key not in ("min", "max", "allowed", "not_empty", "check"):
            field_value = value.get(key) if isinstance(value, Mapping) else getattr(value, key, None)
            if not isinstance(rule, Mapping):
                raise ValueError(f"constraint {key!r} must be a mapping of rules for that field")
            violations.extend(f"{key}: {v}" for v in check_constraints(field_value, rule))
    return violations


def _number(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def _validate(
    value: Any, schema: type | None, constraints: Mapping[str, Any] | None
) -> tuple[Any, list[str]]:
    if schema is not None and not isinstance(value, schema):
        validate: Callable[[Any], Any] | None = getattr(schema, "model_validate", None)
        if validate is None:
            return value, [f"expected {schema.__name__}, got {type(value).__name__}"]
        try:
            value = validate(value)
        except ValueError as error:  # pydantic's ValidationError is a ValueError
            return value, [f"does not match {schema.__name__}: {error}"]
    return value, check_constraints(value, constraints)


class Consensus:
    """Hand-offs of one agent (default: the agent running when a method is called).

    Example:
        >>> kyc = await consensus.receive("kyc_verification_agent", schema=KYCData)     # doctest: +SKIP
        >>> await consensus.broadcast("terms_agent", output=score, schema=CreditScore,
        ...                           constraints={"min": 300, "max": 850})           # doctest: +SKIP
    """

    def __init__(
        self, agent: str | None = None, *, timeout: float = 30.0, poll_interval: float = 0.01
    ) -> None:
        self._agent = agent
        self.timeout = timeout
        self.poll_interval = poll_interval

    def _me(self) -> str:
        context = current()
        if context.call_key:
            # Inside a step both sides would share the step's idempotency key and could not tell
            # their messages apart after a crash.
            raise OmiumError("hand-offs are made from agent code, not from inside a @step or @tool")
        return self._agent or context.agent

    # --- sending
    def _send_now(
        self,
        sender: str,
        receiver: str,
        output: Any,
        schema: type | None,
        constraints: Mapping[str, Any] | None,
    ) -> int:
        context = current()
        channel = f"{sender}->{receiver}"
        key = context.call_key
        for message in context.store.handoffs(context.run_id, channel):
            if message.send_key == key:  # sent before a crash: do not send again
                with context.lock:
                    context.channel_seq[channel] = max(context.channel_seq.get(channel, 0), message.seq + 1)
                if message.status == "rejected":
                    raise HandoffRejected(
                        f"hand-off {channel} #{message.seq} rejected: {message.reason}", message.reason
                    )
                return message.seq
        # The sender numbers its own messages: what the store holds may lag (delayed deliveries).
        with context.lock:  # concurrent senders of one run share the numbering
            seq = context.seq_by_key.get(key)
            if seq is None:
                seq = context.channel_seq.get(channel, 0)
                if context.generation:
                    # After a rollback the log already holds the rolled-back attempt's messages.
                    seq = max([seq] + [m.seq + 1 for m in context.store.handoffs(context.run_id, channel)])
                context.seq_by_key[key] = seq
                context.channel_seq[channel] = seq + 1
        value, violations = _validate(output, schema, constraints)
        producer = trace.get_current_span().get_span_context()
        message = HandoffRecord(
            run_id=context.run_id,
            channel=channel,
            seq=seq,
            sender=sender,
            receiver=receiver,
            payload_hash=context.store.put_blob(serde.dumps(value)),
            schema_name=schema.__name__ if schema else "",
            send_key=key,
            status="rejected" if violations else "sent",
            reason="; ".join(violations),
            depends_on=dict(context.state_reads),
            trace_id=f"{producer.trace_id:032x}" if producer.is_valid else "",
            span_id=f"{producer.span_id:016x}" if producer.is_valid else "",
            fence=context.fence,
        )
        context.store.append_handoff(message)
        tracing.annotate(
            {
                semconv.OMIUM_HANDOFF_VERDICT: message.status,
                "omium.handoff.channel": channel,
                "omium.handoff.seq": seq,
                "omium.handoff.schema": message.schema_name,
            }
        )
        if violations:
            raise HandoffRejected(f"hand-off {channel} #{seq} rejected: {message.reason}", message.reason)
        return seq

    def send(
        self,
        receiver: str,
        output: Any,
        *,
        schema: type | None = None,
        constraints: Mapping[str, Any] | None = None,
    ) -> int:
        """Validate and send ``output`` to ``receiver``; returns the message's sequence number."""
        sender = self._me()
        definition = CallDefinition(
            f"{sender}->{receiver}",
            "handoff_send",
            lambda: self._send_now(sender, receiver, output, schema, constraints),
            SEND_RETRY,
        )
        return self._sent(f"{sender}->{receiver}", int(invoke(definition, (), {})))

    async def broadcast(
        self,
        receiver: str,
        output: Any,
        *,
        schema: type | None = None,
        constraints: Mapping[str, Any] | None = None,
    ) -> int:
        """The async form of :meth:`send`."""
        sender = self._me()

        async def send_now() -> int:
            return self._send_now(sender, receiver, output, schema, constraints)

        definition = CallDefinition(
            f"{sender}->{receiver}", "handoff_send", send_now, SEND_RETRY, is_async=True
        )
        return self._sent(f"{sender}->{receiver}", int(await ainvoke(definition, (), {})))

    @staticmethod
    def _sent(channel: str, seq: int) -> int:
        context = current()
        with context.lock:
            context.channel_seq[channel] = max(context.channel_seq.get(channel, 0), seq + 1)
        return seq

    # --- receiving
    def _next(self, channel: str) -> HandoffRecord | None:
        """Our own message if a crash interrupted us, else the next one in order; None: not yet."""
        context = current()
        messages = context.store.handoffs(context.run_id, channel)
        for message in messages:
            if message.receive_key and message.receive_key == context.call_key:
                return message
        expected = 0
        for message in messages:
            if message.seq != expected:
                return None  # a gap: an earlier message is delayed
            if _status(context, message) not in (*PROCESSED, "retracted"):
                return message
            expected += 1
        return None

    def _process(
        self,
        message: HandoffRecord,
        schema: type | None,
        constraints: Mapping[str, Any] | None,
        accept_stale: bool,
    ) -> Any:
        context = current()
        _link_producer(message)
        value = serde.loads(context.store.get_blob(message.payload_hash))
        if message.receive_key == context.call_key and message.status == "acked":
            return value
        value, violations = _validate(value, schema, constraints)
        changed = _changed_since(context, message)
        if violations or (changed and not accept_stale):
            reason = "; ".join(violations) or "stale: " + "; ".join(changed)
            context.store.set_handoff_status(
                context.run_id,
                message.channel,
                message.seq,
                "rejected",
                reason,
                receive_key=context.call_key,
                fence=context.fence,
            )
            tracing.annotate({semconv.OMIUM_HANDOFF_VERDICT: "rejected", "omium.handoff.reason": reason})
            error = HandoffRejected if violations else HandoffStale
            raise error(
                f"hand-off {message.channel} #{message.seq} rejected by {message.receiver}: {reason}",
                reason,
                send_position=_position_of(
                    context, message.send_key
                ),  # a stale message is fixed by sending it again
            )
        if changed:
            tracing.annotate({"omium.handoff.stale": "; ".join(changed)})
        context.store.set_handoff_status(
            context.run_id,
            message.channel,
            message.seq,
            "acked",
            receive_key=context.call_key,
            fence=context.fence,
        )
        tracing.annotate(
            {
                semconv.OMIUM_HANDOFF_VERDICT: "acked",
                "omium.handoff.channel": message.channel,
                "omium.handoff.seq": message.seq,
            }
        )
        return value

    def get(
        self,
        sender: str,
        *,
        schema: type | None = None,
        constraints: Mapping[str, Any] | None = None,
        timeout: float | None = None,
        accept_stale: bool = False,
    ) -> Any:
        """Receive the next message from ``sender``, validated; acknowledges or rejects it.

        Raises:
            HandoffRejected: the message broke ``schema`` or ``constraints``.
            HandoffStale: shared state the sender had read has changed since (unless
                ``accept_stale``, which processes it and notes the change on the span).
            HandoffTimeout: nothing arrived within ``timeout`` seconds.
        """
        channel = f"{sender}->{self._me()}"

        def receive_now() -> Any:
            deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
            while (message := self._next(channel)) is None:
                if time.monotonic() > deadline:
                    raise HandoffTimeout(f"no hand-off arrived on {channel} in time")
                time.sleep(self.poll_interval)
            return self._process(message, schema, constraints, accept_stale)

        return invoke(CallDefinition(channel, "handoff_receive", receive_now), (), {})

    async def receive(
        self,
        sender: str,
        *,
        schema: type | None = None,
        constraints: Mapping[str, Any] | None = None,
        timeout: float | None = None,
        accept_stale: bool = False,
    ) -> Any:
        """The async form of :meth:`get`."""
        channel = f"{sender}->{self._me()}"

        async def receive_now() -> Any:
            deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
            while (message := self._next(channel)) is None:
                if time.monotonic() > deadline:
                    raise HandoffTimeout(f"no hand-off arrived on {channel} in time")
                await asyncio.sleep(self.poll_interval)
            return self._process(message, schema, constraints, accept_stale)

        return await ainvoke(CallDefinition(channel, "handoff_receive", receive_now, is_async=True), (), {})


def _status(context: RunContext, message: HandoffRecord) -> str:
    """The message's status as the run sees it after its rollbacks."""
    if message.send_key and context.rolled_back(message.send_key):
        return "retracted"  # sent in a stretch a rollback undid: the re-run sends it anew
    if message.status in PROCESSED and message.receive_key and context.rolled_back(message.receive_key):
        return "sent"  # received in a rolled-back stretch: the re-run receives it again
    return message.status


def _position_of(context: RunContext, key: str) -> int:
    """The position of the call with idempotency key ``key`` in this run (-1 if unknown)."""
    return context.positions.get(key_call_id(key, context.run_id), -1)


def _changed_since(context: RunContext, message: HandoffRecord) -> list[str]:
    """Shared-state keys the sender read that have changed since, as 'key vA -> vB'."""
    changed = []
    for name, version in message.depends_on.items():
        namespace, _, key = name.partition("/")
        latest = context.store.read_state(namespace, key)
        now = latest.version if latest is not None else 0
        if now != version:
            changed.append(f"{name} changed v{version} -> v{now} since it was sent")
    return changed


def _link_producer(message: HandoffRecord) -> None:
    """Link the consumer's span to the producer's."""
    if not message.trace_id:
        return
    producer = trace.SpanContext(
        int(message.trace_id, 16), int(message.span_id, 16), is_remote=True, trace_flags=trace.TraceFlags(1)
    )
    consumer = trace.get_current_span()
    consumer.add_link(producer, {"omium.handoff.channel": message.channel, "omium.handoff.seq": message.seq})
    consumer.set_attribute("omium.handoff.producer_span_id", message.span_id)


__all__ = ["Consensus", "check_constraints"]
