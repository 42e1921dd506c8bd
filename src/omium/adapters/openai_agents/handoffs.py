"""Validated hand-offs: an SDK ``input_filter`` that passes a hand-off through Omium's consensus.

:func:`handoff_validator` makes an input filter that validates the data handed off — by default
the arguments the model gave the hand-off tool — against a pydantic schema and Omium constraints
(:func:`omium.sdk.consensus.check_constraints`). Inside an Omium run the hand-off is a message of
Omium's hand-off log: sent by the source agent, acknowledged by the target, each a recorded call,
so a resumed run neither repeats nor re-judges it. A hand-off that breaks its schema or
constraints is rejected: the message is kept with the reason, an ``handoff_rejected`` event is
recorded, and :class:`~omium.errors.HandoffRejected` stops the run (the run's error says why).

:func:`validated_handoff` wraps ``agents.handoff(...)``: the schema also becomes the hand-off
tool's parameters, so the model is asked for exactly the data that is checked.

Example:
    >>> escalate = validated_handoff(billing, schema=Escalation,
    ...                              constraints={"amount": {"min": 0, "max": 10_000}})  # doctest: +SKIP
    >>> triage = Agent(name="triage", handoffs=[escalate])                               # doctest: +SKIP
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Callable, Mapping
from typing import Any

from agents import Agent, handoff
from agents.handoffs import Handoff, HandoffInputData, HandoffInputFilter
from agents.items import HandoffCallItem, HandoffOutputItem
from agents.strict_schema import ensure_strict_json_schema

from omium.adapters.openai_agents import tracing
from omium.adapters.openai_agents.durable import as_agent
from omium.errors import HandoffRejected
from omium.sdk.consensus import Consensus, check_constraints
from omium.sdk.context import maybe_current
from omium.sdk.store import EventRecord

Extract = Callable[[HandoffInputData], Any]


def handed_off(data: HandoffInputData) -> tuple[str, str, Any]:
    """The source agent, target agent and the hand-off tool's arguments (parsed JSON) of ``data``."""
    outputs = [item for item in data.new_items if isinstance(item, HandoffOutputItem)]
    if not outputs:
        return "", "", {}
    output = outputs[-1]
    raw = output.raw_item
    call_id = raw.get("call_id") if isinstance(raw, Mapping) else getattr(raw, "call_id", None)
    arguments: Any = {}
    for item in data.new_items:
        if isinstance(item, HandoffCallItem) and item.raw_item.call_id == call_id:
            text = item.raw_item.arguments or ""
            try:
                arguments = json.loads(text) if text.strip() else {}
            except ValueError:
                arguments = text  # not JSON: validation says so
    return output.source_agent.name, output.target_agent.name, arguments


def validate(value: Any, schema: type | None, constraints: Mapping[str, Any] | None) -> tuple[Any, list[str]]:
    """``value`` (parsed into ``schema`` when it is a pydantic model) and its violations."""
    if schema is not None and not isinstance(value, schema):
        model_validate = getattr(schema, "model_validate", None)
        if model_validate is None:
            return value, [f"expected {schema.__name__}, got {type(value).__name__}"]
        try:
            value = model_validate(value)
        except ValueError as error:  # pydantic's ValidationError is a ValueError
            return value, [f"does not match {schema.__name__}: {error}"]
    return value, check_constraints(value, constraints)


def handoff_validator(
    *,
    schema: type | None = None,
    constraints: Mapping[str, Any] | None = None,
    extract: Extract | None = None,
    then: HandoffInputFilter | None = None,
    timeout: float = 30.0,
) -> Callable[[HandoffInputData], Any]:
    """An SDK hand-off ``input_filter`` that validates (and, in a run, records) the hand-off.

    Args:
        schema: a pydantic model (or class) the handed-off data must be.
        constraints: Omium constraints, e.g. ``{"amount": {"min": 0}}`` (see ``check_constraints``).
        extract: what is handed off (default: the hand-off tool call's arguments).
        then: a filter applied after validation (the conversation the target sees).
        timeout: how long the target waits for the message (it is already stored: immediate).

    Raises (from the filter):
        HandoffRejected: the data broke ``schema`` or ``constraints``; the run stops.
    """

    async def validate_handoff(data: HandoffInputData) -> HandoffInputData:
        source, target, arguments = handed_off(data)
        value = extract(data) if extract is not None else arguments
        run = maybe_current()
        if run is None or run.call_key:
            # Outside a run (or inside a recorded call): validate, nothing to persist.
            _, violations = validate(value, schema, constraints)
            if violations:
                reason = "; ".join(violations)
                raise HandoffRejected(f"hand-off {source}->{target} rejected: {reason}", reason)
        else:
            with tracing.sdk_span_as_parent():
                try:
                    with as_agent(source):  # the sender's call
                        await Consensus(source, timeout=timeout).broadcast(
                            target, value, schema=schema, constraints=constraints
                        )
                except HandoffRejected as rejected:
                    _record_rejection(source, target, rejected)
                    raise
                with as_agent(target):  # the receiver acknowledges
                    await Consensus(target, timeout=timeout).receive(
                        source, schema=schema, constraints=constraints, timeout=timeout
                    )
        if then is None:
            return data
        filtered = then(data)
        return await filtered if inspect.isawaitable(filtered) else filtered

    return validate_handoff


def _record_rejection(source: str, target: str, rejected: HandoffRejected) -> None:
    """An audit event for the rejection (idempotent: a resumed run finds the same one)."""
    run = maybe_current()
    if run is None:
        return
    channel = f"{source}->{target}"
    messages = [m for m in run.store.handoffs(run.run_id, channel) if m.status == "rejected"]
    seq = messages[-1].seq if messages else 0
    run.store.record_event(
        EventRecord(
            event_id=f"{run.run_id}:handoff_rejected:{channel}:{seq}",
            run_id=run.run_id,
            kind="handoff_rejected",
            actor="openai_agents",
            reason=rejected.reason,
            attributes={"channel": channel, "seq": str(seq), "from": source, "to": target},
        )
    )
    tracing.mark_current({"omium.handoff.verdict": "rejected", "omium.handoff.reason": rejected.reason})


def validated_handoff(
    agent: Agent[Any],
    *,
    schema: type | None = None,
    constraints: Mapping[str, Any] | None = None,
    extract: Extract | None = None,
    input_filter: HandoffInputFilter | None = None,
    **options: Any,
) -> Handoff[Any, Agent[Any]]:
    """``agents.handoff(agent, ...)`` whose data is validated by Omium (see :func:`handoff_validator`).

    When ``schema`` is a pydantic model and no ``extract`` is given, it becomes the hand-off
    tool's parameters. ``input_filter`` runs after validation; other keyword arguments
    (``tool_name_override``, ``on_handoff`` without input, ``is_enabled``, ...) go to ``handoff``.
    """
    if "input_type" in options:
        raise TypeError("validated_handoff takes schema= (Omium validates it), not input_type=")
    made: Handoff[Any, Agent[Any]] = handoff(
        agent,
        input_filter=handoff_validator(
            schema=schema, constraints=constraints, extract=extract, then=input_filter
        ),
        **options,
    )
    json_schema = getattr(schema, "model_json_schema", None)
    if json_schema is not None and extract is None:
        made.input_json_schema = ensure_strict_json_schema(json_schema())
    return made


__all__ = ["handed_off", "handoff_validator", "validate", "validated_handoff"]
