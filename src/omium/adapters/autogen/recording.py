"""What Omium keeps of an AG2 turn, and how it is read back.

A completed turn is recorded as one call of the run (kind ``agent_turn``, named after the agent)
whose output is a :class:`TurnRecord`: the model's final reply, the events the turn added to the
agent's stream (model requests and responses, tool calls and results), and the content addresses
of the conversation messages it produced. The checkpoint after the turn lists the whole transcript
so far by content address, so a message that did not change is stored once however many
checkpoints name it.

AG2 events are stored in AG2's own dictionary form. Reading them back imports classes named in
the stored data, so only classes of the expected kind are accepted (events, dataclasses, pydantic
models, enums), as :mod:`omium.sdk.serde` does for its own values: stored data cannot make the
loader construct anything else.
"""

from __future__ import annotations

import dataclasses
import enum
import importlib
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from ag2.events import BaseEvent, ModelRequest, ModelResponse, TextInput
from pydantic import BaseModel

from omium.errors import NotFoundError, SerializationError
from omium.sdk import serde
from omium.sdk.store import CheckpointRecord, CheckpointStore

logger = logging.getLogger(__name__)

TURN_KIND = "agent_turn"


@dataclass(frozen=True)
class TurnRecord:
    """The recorded output of one agent turn."""

    agent: str
    turn: int
    response: dict[str, Any]
    events: list[dict[str, Any]] = field(default_factory=list)
    messages: list[str] = field(default_factory=list)  # content addresses of transcript messages

    def reply(self) -> ModelResponse:
        """The model's final reply of the turn, as AG2 returned it."""
        event = decode_event(self.response)
        if not isinstance(event, ModelResponse):
            raise SerializationError(f"turn {self.turn} of {self.agent!r} recorded a {type(event).__name__}")
        return event

    def stream_events(self) -> list[BaseEvent]:
        """The events the turn added to the agent's stream."""
        return [decode_event(doc) for doc in self.events]

    def to_data(self) -> dict[str, Any]:
        """JSON-compatible form (what is stored)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_data(cls, data: dict[str, Any]) -> TurnRecord:
        """Invert :meth:`to_data`."""
        return cls(**data)


def encode_event(event: BaseEvent) -> dict[str, Any]:
    """An AG2 event as ``{"type": class path, "data": AG2's dict form}``."""
    cls = type(event)
    return {"type": f"{cls.__module__}.{cls.__qualname__}", "data": event.to_dict()}


def encode_events(events: Iterable[BaseEvent]) -> list[dict[str, Any]]:
    """The events that can be stored (one that cannot is left out of the record, and logged)."""
    encoded = []
    for event in events:
        document = encode_event(event)
        try:
            serde.dumps(document)
        except SerializationError as error:
            logger.warning("a %s of this turn is not recorded: %s", type(event).__name__, error)
            continue
        encoded.append(document)
    return encoded


def decode_event(document: dict[str, Any]) -> BaseEvent:
    """Rebuild an event from :func:`encode_event`'s form, refusing classes of the wrong kind."""
    cls = _resolve(document["type"])
    if not issubclass(cls, BaseEvent):
        raise SerializationError(f"{document['type']!r} is not an AG2 event")
    _check_tags(document["data"])
    return cls.from_dict(document["data"])


# AG2's tags for nested values, and what the class each names must be.
_TAG_KINDS: dict[str, tuple[str, Any]] = {
    "__event__": ("an AG2 event", lambda c: issubclass(c, BaseEvent)),
    "__dataclass__": ("a dataclass", dataclasses.is_dataclass),
    "__pydantic__": ("a pydantic model", lambda c: issubclass(c, BaseModel)),
    "__enum__": ("an Enum", lambda c: issubclass(c, enum.Enum)),
}


def _check_tags(value: Any) -> None:
    if isinstance(value, list):
        for item in value:
            _check_tags(item)
    elif isinstance(value, dict):
        for tag, (kind, accepts) in _TAG_KINDS.items():
            if tag in value and not accepts(_resolve(value[tag])):
                raise SerializationError(f"{value[tag]!r} is not {kind}")
        for item in value.values():
            _check_tags(item)


def _resolve(path: str) -> type:
    """The class at a dotted path (the longest importable module prefix, as AG2 resolves it)."""
    parts = path.split(".")
    for split in range(len(parts) - 1, 0, -1):
        try:
            target: Any = importlib.import_module(".".join(parts[:split]))
            for attribute in parts[split:]:
                target = getattr(target, attribute)
        except (ImportError, AttributeError):
            continue
        if isinstance(target, type):
            return target
    raise SerializationError(f"cannot import class {path!r} to read a recorded AG2 event")


def request_text(event: BaseEvent) -> str:
    """The text a turn was started with (empty for a non-text trigger)."""
    if isinstance(event, ModelRequest):
        return "\n".join(part.content for part in event.parts if isinstance(part, TextInput))
    return ""


def put_message(store: CheckpointStore, *, turn: int, agent: str, role: str, content: str) -> str:
    """Store one transcript message by content address; returns the address."""
    return store.put_blob(serde.dumps({"turn": turn, "agent": agent, "role": role, "content": content}))


def checkpoint_state(record: CheckpointRecord, store: CheckpointStore) -> dict[str, Any]:
    """The state a turn checkpoint recorded (``values`` holds the turn, agent and transcript)."""
    state: dict[str, Any] = serde.loads(store.get_blob(record.state_hash))
    return state


def transcript(
    store: CheckpointStore, run_id: str, checkpoint: str | None = None, *, team: str | None = None
) -> list[dict[str, Any]]:
    """The conversation's messages as of ``checkpoint`` (default: the latest turn checkpoint).

    Each message is ``{"turn", "agent", "role", "content"}``; ``role`` is ``user`` for what a turn
    was given and ``assistant`` for what the agent answered. In a run where several teams talk
    (each numbers its own ``turn-N`` checkpoints), ``team`` picks one by its name.

    Raises:
        NotFoundError: unknown run, no turn checkpoint yet, or no checkpoint called ``checkpoint``.
    """
    turns = [c for c in store.checkpoints(run_id) if c.name.startswith("turn-")]
    if checkpoint is not None:
        turns = [c for c in turns if c.name == checkpoint]
    states = [checkpoint_state(c, store) for c in turns]
    if team is not None:
        states = [s for s in states if s["values"].get("team") == team]
    if not states:
        store.get_run(run_id)  # an unknown run says so first
        wanted = " ".join(part for part in (checkpoint, team and f"of team {team!r}") if part)
        raise NotFoundError(f"run {run_id!r} has no turn checkpoint {wanted}".rstrip())
    return [serde.loads(store.get_blob(address)) for address in states[-1]["values"]["transcript"]]


__all__ = [
    "TURN_KIND",
    "TurnRecord",
    "checkpoint_state",
    "decode_event",
    "encode_event",
    "encode_events",
    "put_message",
    "request_text",
    "transcript",
]
