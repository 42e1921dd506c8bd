"""Hand-off validation: what one agent passes to the next must match a schema and constraints.

A :class:`HandoffCheck` names the sending agent (and, for the record, the receiver) and what its
reply must be: a pydantic model (the reply is read as JSON) and/or Omium constraints
(:func:`omium.sdk.consensus.check_constraints`). Every checked reply is written to the run's
hand-off log (``sender->receiver``) as ``acked`` or ``rejected`` with the reason, beside the
hand-offs :class:`omium.Consensus` records, so the console shows both alike.

The checks are the same for every framework adapter; each stops a rejected hand-off before it
reaches the next agent in its framework's own way: AG2 replaces the turn's reply with a stop
message a termination condition acts on (never raising inside AG2), CrewAI aborts the task from its
post-step hook.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from omium.errors import SerializationError
from omium.sdk import serde
from omium.sdk.consensus import check_constraints
from omium.sdk.context import RunContext
from omium.sdk.store import HandoffRecord


def parse_json(text: str) -> Any:
    """The JSON value in a reply, allowing a Markdown code fence around it."""
    body = text.strip()
    if body.startswith("```"):
        body = body.split("\n", 1)[1] if "\n" in body else ""
        body = body.rsplit("```", 1)[0]
    return json.loads(body)


@dataclass(frozen=True)
class HandoffCheck:
    """What ``sender``'s reply must be before it is handed to the next agent.

    Args:
        sender: the agent whose replies are checked.
        receiver: the agent the reply goes to (``"next"``: whoever speaks next); names the
            hand-off channel ``sender->receiver`` in Omium's log.
        schema: a pydantic model the reply must validate as (the reply is parsed with ``parse``).
        constraints: Omium constraints on the value (``{"min": ...}``, per field
            ``{"steps": {"not_empty": True}}``, ``{"check": fn}``, ...).
        parse: turns the reply text into the value to check. Default: JSON (code fences allowed)
            when a schema or per-field constraints are given, else the text itself.

    Example:
        >>> from pydantic import BaseModel
        >>> class Plan(BaseModel):
        ...     steps: list[str]
        >>> check = HandoffCheck("planner", "coder", schema=Plan, constraints={"steps": {"not_empty": True}})
    """

    sender: str
    receiver: str = "next"
    schema: type | None = None
    constraints: Mapping[str, Any] | None = None
    parse: Callable[[str], Any] | None = None

    @property
    def channel(self) -> str:
        """The hand-off channel in Omium's log: ``sender->receiver``."""
        return f"{self.sender}->{self.receiver}"

    def _parser(self) -> Callable[[str], Any] | None:
        if self.parse is not None:
            return self.parse
        per_field = any(key not in _VALUE_RULES for key in (self.constraints or {}))
        return parse_json if self.schema is not None or per_field else None

    def validate(self, text: Any) -> Verdict:
        """Check one reply; never raises for a bad reply (the verdict says why it is bad).

        ``text`` is usually the reply's text; an already structured value (a framework's parsed
        output) is checked as it is, without parsing.
        """
        value: Any = text
        parser = self._parser()
        if parser is not None and isinstance(text, str):
            try:
                value = parser(text)
            except (ValueError, TypeError) as error:  # json.JSONDecodeError is a ValueError
                return Verdict(False, [f"reply is not parseable: {error}"], text)
        if self.schema is not None and not isinstance(value, self.schema):
            validate: Callable[[Any], Any] | None = getattr(self.schema, "model_validate", None)
            if validate is None:
                return Verdict(False, [f"expected {self.schema.__name__}, got {type(value).__name__}"], value)
            try:
                value = validate(value)
            except ValidationError as error:
                problems = "; ".join(
                    f"{'.'.join(map(str, e['loc'])) or 'value'}: {e['msg']}" for e in error.errors()
                )
                return Verdict(False, [f"does not match {self.schema.__name__}: {problems}"], value)
        try:
            violations = check_constraints(value, self.constraints)
        except Exception as error:  # a failing user check is a rejection, not a crash in the framework
            violations = [f"constraint check failed: {type(error).__name__}: {error}"]
        return Verdict(not violations, violations, value)


_VALUE_RULES = ("min", "max", "allowed", "not_empty", "check")


@dataclass(frozen=True)
class Verdict:
    """The outcome of a hand-off check: accepted, or the violations found."""

    accepted: bool
    violations: list[str] = field(default_factory=list)
    value: Any = None

    @property
    def reason(self) -> str:
        """The violations as one line."""
        return "; ".join(self.violations)


def record(context: RunContext, check: HandoffCheck, text: Any, verdict: Verdict, key: str) -> HandoffRecord:
    """Append the checked reply to the run's hand-off log (``acked`` or ``rejected``).

    ``key`` is the idempotency key of the call that produced the reply. The message carries the
    run's fencing token, so an execution that lost the run cannot log it.
    """
    store = context.store
    payload: Any = text
    if verdict.accepted:
        try:
            serde.dumps(verdict.value)
            payload = verdict.value
        except SerializationError:  # a value the store cannot keep: the text stands for it
            payload = text
    payload_hash = store.put_blob(serde.dumps(payload))
    status = "acked" if verdict.accepted else "rejected"
    while True:
        existing = store.handoffs(context.run_id, check.channel)
        for message in existing:
            # Recorded before a crash by this same call with this same reply: do not log it twice.
            if (message.send_key, message.payload_hash, message.status) == (key, payload_hash, status):
                return message
        message = HandoffRecord(
            run_id=context.run_id,
            channel=check.channel,
            seq=max((m.seq for m in existing), default=-1) + 1,
            sender=check.sender,
            receiver=check.receiver,
            payload_hash=payload_hash,
            schema_name=getattr(check.schema, "__name__", ""),
            status=status,
            reason=verdict.reason,
            send_key=key,
            receive_key=key if verdict.accepted else "",
            fence=context.fence,
        )
        if store.append_handoff(message):
            return message
        # Another task of the run (a concurrent team or crew on the same channel) took this
        # sequence number first: the store decided, so read the channel again and take the next.


__all__ = ["HandoffCheck", "Verdict", "parse_json", "record"]
