"""The control API's request bodies as pydantic models: checked before anything is acknowledged.

A store method's arguments are a model built from the method's signature on
:class:`~omium.sdk.store.CheckpointStore`, and a record argument (a run, a step, ...) a model built
from the record's dataclass fields, so the API takes exactly what the store takes. Types are
strict (``"1"`` is not an int, ``1.0`` not an int, ``true`` not an int) and integers are bounded
by the warehouse columns they end up in: a value ClickHouse would refuse when the fact is
shipped to the warehouse is refused here, at the door, with a 400 naming the field.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import inspect
import types
import typing
from collections.abc import Sequence
from datetime import UTC, datetime
from functools import cache
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    create_model,
    field_validator,
    model_validator,
)

from omium.collector.jsonbody import printable
from omium.errors import DecodeError
from omium.recovery.review import DECISIONS
from omium.recovery.worker import COMMAND_KINDS
from omium.sdk.store import (
    CheckpointRecord,
    CheckpointStore,
    CommandRecord,
    EventRecord,
    HandoffRecord,
    RunRecord,
    StateVersion,
    StepRecord,
)

# DateTime64 holds 1900..2299; a time is microseconds since the epoch, never before it.
MAX_TIMESTAMP_US = int((datetime(2300, 1, 1, tzinfo=UTC).timestamp()) * 1_000_000) - 1
TIMESTAMP_FIELDS = frozenset({"started_at", "updated_at", "ended_at", "created_at", "written_at", "ts"})

Text = Annotated[str, Field(strict=True)]
Flag = Annotated[bool, Field(strict=True)]
# Every integer the store keeps is a count, a version or a time: never negative, and it must fit
# the Int64/UInt64 columns (UInt64 above 2**63 is refused too: Python-side code reads Int64).
Count = Annotated[int, Field(strict=True, ge=0, le=2**63 - 1)]
UInt32 = Annotated[int, Field(strict=True, ge=0, le=2**32 - 1)]
UInt16 = Annotated[int, Field(strict=True, ge=0, le=2**16 - 1)]
Timestamp = Annotated[int, Field(strict=True, ge=0, le=MAX_TIMESTAMP_US)]
Number = Annotated[float, Field(strict=True, allow_inf_nan=False)]
# A lease of more than a year is a mistake; its end must still fit Int64 microseconds.
LeaseSeconds = Annotated[float, Field(strict=True, gt=0, le=366 * 86_400, allow_inf_nan=False)]


def _base64(text: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except binascii.Error:
        raise ValueError("not valid base64") from None


Base64 = Annotated[str, Field(strict=True), AfterValidator(_base64)]

# Columns narrower than the default (Count), by record: what ``omium_*`` tables declare.
NARROW: dict[type, dict[str, Any]] = {
    StepRecord: {"position": UInt32, "attempt": UInt16, "generation": UInt32},
    CheckpointRecord: {"seq": UInt32, "step_index": UInt32, "generation": UInt32},
    CommandRecord: {"attempts": UInt32},
}
# Who executes a run: a lease needs one.
Holder = Annotated[str, Field(strict=True, min_length=1)]

# Method arguments narrower than their annotation says.
NARROW_ARGUMENTS: dict[str, Any] = {"limit": UInt32, "lease_seconds": LeaseSeconds, "holder": Holder}
RECORD_TYPES = (
    RunRecord,
    StepRecord,
    CheckpointRecord,
    HandoffRecord,
    StateVersion,
    EventRecord,
    CommandRecord,
)

_STRICT = ConfigDict(extra="forbid", strict=True)


class RecordModel(BaseModel):
    """A record dataclass's fields, validated; :meth:`record` builds the dataclass."""

    model_config = _STRICT
    __record__: typing.ClassVar[type]

    def record(self) -> Any:
        """The dataclass, with its own defaults for every field the client left out."""
        return self.__record__(**{name: getattr(self, name) for name in self.model_fields_set})


class ArgumentsModel(BaseModel):
    """A store method's arguments, validated; :meth:`arguments` gives the keyword arguments."""

    model_config = _STRICT

    def arguments(self) -> dict[str, Any]:
        """Keyword arguments for the method: records as dataclasses, the method's own defaults
        for everything the client left out."""
        found = {name: getattr(self, name) for name in self.model_fields_set}
        return {k: v.record() if isinstance(v, RecordModel) else v for k, v in found.items()}


def _translate(annotation: Any, narrow: Any = None) -> Any:
    """The strict pydantic type for a store annotation (``int``, ``dict[str, str] | None``...)."""
    if narrow is not None:
        return narrow
    if annotation is str:
        return Text
    if annotation is bool:
        return Flag
    if annotation is int:
        return Count
    if annotation is float:
        return Number
    if annotation is bytes:
        return Base64
    if annotation in RECORD_TYPES:
        return record_model(annotation)
    origin, params = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is dict:
        return dict[_translate(params[0]), _translate(params[1])]  # type: ignore[misc]
    if origin in (list, Sequence):
        return list[_translate(params[0])]  # type: ignore[misc]
    if origin in (types.UnionType, typing.Union):
        inner = [p for p in params if p is not type(None)]
        if len(inner) == 1 and len(params) == 2:
            return _translate(inner[0]) | None
    raise TypeError(f"no payload type for {annotation!r}")  # a new store signature needs a case here


@cache
def record_model(record_type: type) -> type[RecordModel]:
    """The model of a record dataclass: every field with its type, required if it has no default."""
    hints = typing.get_type_hints(record_type)
    narrow = NARROW.get(record_type, {})
    fields: dict[str, Any] = {}
    for f in dataclasses.fields(record_type):
        if f.name in TIMESTAMP_FIELDS:
            kind = _translate(hints[f.name], Timestamp)
        else:
            kind = _translate(hints[f.name], narrow.get(f.name))
        required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        # An absent field is left unset (None is never validated): the dataclass fills its default.
        fields[f.name] = (kind, ... if required else None)
    model = create_model(record_type.__name__ + "Payload", __base__=RecordModel, **fields)
    model.__record__ = record_type
    return model


@cache
def arguments_model(method: str) -> type[ArgumentsModel]:
    """The model of ``CheckpointStore.<method>``'s arguments, from its signature."""
    function = getattr(CheckpointStore, method)
    hints = typing.get_type_hints(function)
    fields: dict[str, Any] = {}
    for name, parameter in inspect.signature(function).parameters.items():
        if name == "self":
            continue
        kind = _translate(hints[name], NARROW_ARGUMENTS.get(name))
        fields[name] = (kind, ... if parameter.default is inspect.Parameter.empty else None)
    return create_model(f"{method}_arguments", __base__=ArgumentsModel, **fields)


class StoreBody(BaseModel):
    """``POST /v1/store/{method}``: ``{"args": {...}}`` (no args: ``{}``)."""

    model_config = _STRICT
    args: dict[str, Any] = Field(default_factory=dict)


class ReviewBody(BaseModel):
    """``POST /v1/runs/{run_id}/review``."""

    model_config = _STRICT
    decision: Text
    edits: dict[Text, Any] | None = None
    reviewer: Text = "api"
    reason: Text = ""

    @field_validator("decision")
    @classmethod
    def _known_decision(cls, decision: str) -> str:
        if decision not in DECISIONS:
            raise ValueError(f"a review decision is one of {', '.join(DECISIONS)}, not {decision!r}")
        return decision


class ActionBody(BaseModel):
    """``POST /v1/runs/{run_id}/pause`` (``resume``, ``cancel``): who acts and why (audited)."""

    model_config = _STRICT
    actor: Annotated[str, Field(strict=True, min_length=1, max_length=200)] = "api"
    reason: Annotated[str, Field(strict=True, max_length=2000)] = ""


class CommandPayload(BaseModel):
    """What a worker reads from a command's payload (see :class:`omium.recovery.worker.Worker`)."""

    model_config = _STRICT
    checkpoint: Text | None = None  # retry: roll back to it first; fork: branch from it
    edits: dict[Text, Any] | None = None  # retry, test_fix
    reviewer: Text | None = None  # retry, test_fix
    overrides: dict[Text, Any] | None = None  # fork
    new_run_id: Text | None = None  # fork


class CommandBody(BaseModel):
    """``POST /v1/runs/{run_id}/commands``."""

    model_config = _STRICT
    kind: Text
    payload: CommandPayload | None = None

    @field_validator("kind")
    @classmethod
    def _known_kind(cls, kind: str) -> str:
        if kind not in COMMAND_KINDS:
            raise ValueError(f"a command is one of {', '.join(COMMAND_KINDS)}, not {kind!r}")
        return kind

    @model_validator(mode="after")
    def _fork_needs_a_checkpoint(self) -> CommandBody:
        if self.kind == "fork" and not (self.payload and self.payload.checkpoint):
            raise ValueError("a fork needs payload.checkpoint (the checkpoint to branch from)")
        return self

    def payload_arguments(self) -> dict[str, Any]:
        """The payload as the worker's keyword arguments (only what was given)."""
        return self.payload.model_dump(exclude_none=True) if self.payload else {}


M = typing.TypeVar("M", bound=BaseModel)
MAX_LISTED = 10


def parse(model: type[M], value: Any, what: str) -> M:
    """``value`` validated as ``model``; :class:`DecodeError` naming every bad field otherwise."""
    try:
        return model.model_validate(value)
    except ValidationError as exc:
        raise DecodeError(f"invalid {what}: {describe(exc)}") from None


def describe(error: ValidationError) -> str:
    """``path: problem; path: problem`` for the first few problems, safe to send back."""
    problems = error.errors(include_url=False, include_input=False)
    parts = []
    for problem in problems[:MAX_LISTED]:
        path = ".".join(_clip(str(p)) for p in problem["loc"]) or "(body)"
        parts.append(f"{path}: {_clip(problem['msg'], 300)}")
    if len(problems) > MAX_LISTED:
        parts.append(f"and {len(problems) - MAX_LISTED} more")
    return printable("; ".join(parts))


def _clip(text: str, limit: int = 80) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


__all__ = [
    "ActionBody",
    "ArgumentsModel",
    "CommandBody",
    "CommandPayload",
    "RecordModel",
    "ReviewBody",
    "StoreBody",
    "arguments_model",
    "describe",
    "parse",
    "record_model",
]
