"""The values a recovery policy holds, each checked with a message that says what is allowed.

The policy's vocabulary (:data:`TRIGGERS`, :data:`ACTIONS`, :data:`EDITABLE`, :data:`CONDITIONS`),
durations and backoffs, and annotated types for :mod:`omium.recovery.policy`'s models. A failed
check raises :func:`problem`: pydantic reports its message as is, and ``where`` carries the
location below the value (an unknown key, the item of a list) so the error can name its line.
"""

from __future__ import annotations

import math
import re
from typing import Annotated, Any, Literal, get_args

from pydantic import BaseModel, BeforeValidator, Field, GetCoreSchemaHandler, GetJsonSchemaHandler
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import PydanticCustomError, core_schema

from omium.recovery._safe_yaml import shown

TRIGGERS = {
    "hallucination_detected": "a detector (e.g. a hallucination check) returned a failing verdict",
    "policy_violation": "a guard or post-condition failed (omium.guard, a failing assertion)",
    "high_value_operation": "an operation above a threshold (true: $10,000, or an amount) waits for approval",
    "handoff_rejected": "a hand-off broke its schema or constraints",
    "stale_handoff": "a hand-off was built on shared state that has changed since",
    "exception": "the run raised one of these exception types (a list of names)",
}
ACTIONS = {
    "rollback_to_last_checkpoint": "bring the run back to its last checkpoint before the failure",
    "pause_and_notify": "pause the run and send the webhook notification",
    "await_human_review": "keep the run paused until a person approves, edits or rejects it",
    "allowed_edits": "agent fields a reviewer may edit",
    "forbidden_edits": "fields no reviewer may edit",
}
Editable = Literal["prompt", "constraints", "tool_selection"]
EDITABLE: tuple[Editable, ...] = get_args(Editable)
Condition = Literal["same_failure_not_detected_twice", "always", "never"]
CONDITIONS = dict(
    zip(
        get_args(Condition),
        (
            "retry until the same failure is detected twice",
            "retry every failure until max_retries",
            "do not retry; go straight to the recovery actions",
        ),
        strict=True,
    )
)
DEFAULT_HIGH_VALUE = 10_000.0
MAX_RETRIES = 100
_DURATION_TEXT = r"\d+(?:\.\d+)?\s*(?:ms|s|m|h)?"
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$")
_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
# Loose, to name the part that is wrong; the schema's pattern is the strict form of the same.
_BACKOFF = re.compile(r"^\s*(exponential|fixed)\s*\(\s*([^,()]+?)\s*(?:,\s*([^,()]+?)\s*)?\)\s*$")
BACKOFF_PATTERN = rf"^\s*(exponential|fixed)\s*\(\s*{_DURATION_TEXT}\s*(,\s*{_DURATION_TEXT}\s*)?\)\s*$"


def problem(message: str, *where: str | int, kind: str = "policy") -> PydanticCustomError:
    """A validation error; ``where`` continues its location below the value being validated."""
    return PydanticCustomError(kind, message, {"where": where})


def _flag(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    raise problem(f"expected true or false, got {shown(value)}")


def _name(value: Any) -> str:
    if isinstance(value, str) and value.strip():
        return value
    raise problem(f"expected a name, got {shown(value)}")


def _list(what: str) -> BeforeValidator:
    def check(value: Any) -> Any:
        if isinstance(value, list | tuple):
            return value
        raise problem(f"expected a list of {what}, got {shown(value)}")

    return BeforeValidator(check)


def _editable(value: Any) -> str:
    if isinstance(value, str) and value in EDITABLE:
        return value
    raise problem(f"{shown(value)} is not editable; allowed: {', '.join(EDITABLE)}")


def _url(value: Any) -> str:
    if isinstance(value, str) and value.startswith(("http://", "https://")):
        return value
    raise problem(f"{shown(value)} is not an http(s) URL")


def _number(value: Any) -> float | None:
    """``value`` as a finite float, or None if it is not a number (booleans are not)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        number = float(value)
    except OverflowError:
        return None
    return number if math.isfinite(number) else None


def _threshold(value: Any) -> bool | float:
    if isinstance(value, bool):
        return value
    amount = _number(value)
    if amount is not None and amount > 0:
        return amount
    raise problem(f"expected true, false or an amount > 0, got {shown(value)}")


def _retries(value: Any) -> int:
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_RETRIES:
        return value
    raise problem(f"expected a whole number from 0 to {MAX_RETRIES}, got {shown(value)}")


def _fraction(value: Any) -> float:
    number = _number(value)
    if number is not None and 0 <= number <= 1:
        return number
    raise problem(f"expected a fraction from 0 to 1, got {shown(value)}")


def _condition(value: Any) -> str:
    if isinstance(value, str) and value in CONDITIONS:
        return value
    raise problem(f"unknown condition {shown(value)}; allowed: {', '.join(CONDITIONS)}")


def _backoff(value: Any) -> str:
    parse_backoff(value)
    return str(value)


def parse_backoff(value: Any) -> tuple[bool, float, float]:
    """``(exponential, initial, maximum)`` of a backoff such as ``exponential(1s, 10s)``."""
    match = _BACKOFF.match(value) if isinstance(value, str) else None
    if match is None:
        raise problem(
            f"{shown(value)}: expected exponential(INITIAL, MAX) or fixed(DELAY), e.g. exponential(1s, 10s)"
        )
    kind, first, second = match.groups()
    initial = _seconds(first)
    maximum = _seconds(second or first)
    if maximum < initial:
        raise problem("the maximum wait is shorter than the first")
    return kind == "exponential", initial, maximum


def _seconds(text: str) -> float:
    match = _DURATION.match(text)
    if match is None:
        raise problem(f"{text!r} is not a duration such as 500ms, 1s, 2m")
    return float(match.group(1)) * _SECONDS[match.group(2) or "s"]


def merge_pairs(value: Any) -> Any:
    """A list of one-key mappings (``- policy_violation: true``) as one mapping."""
    if isinstance(value, dict | BaseModel):
        return value
    if not isinstance(value, list | tuple):
        raise problem(f"expected a list of 'key: value' items or a mapping, got {shown(value)}")
    merged: dict[str, Any] = {}
    for index, item in enumerate(value):
        if not isinstance(item, dict) or len(item) != 1:
            raise problem("each item is one 'key: value' pair", index)
        ((key, entry),) = item.items()
        if key in merged:
            raise problem(f"{shown(key)} is given twice", index)
        merged[key] = entry
    return merged


class Pairs:
    """Marks a section that may also be written as a list of one-key mappings, the shape of the
    README's example (``- policy_violation: true``): it accepts both, and its schema says so."""

    def __get_pydantic_core_schema__(
        self, source: Any, handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        return core_schema.no_info_before_validator_function(merge_pairs, handler(source))

    def __get_pydantic_json_schema__(
        self, schema: core_schema.CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        mapping = handler(schema)
        item = {**mapping, "minProperties": 1, "maxProperties": 1}
        return {"oneOf": [{"type": "array", "items": item}, mapping]}


Flag = Annotated[bool, BeforeValidator(_flag)]
Name = Annotated[str, Field(min_length=1), BeforeValidator(_name)]
Url = Annotated[str, Field(pattern=r"^https?://"), BeforeValidator(_url)]
Amount = Annotated[float, Field(gt=0, allow_inf_nan=False)]
Names = Annotated[tuple[Name, ...], _list("names")]
EditableFields = Annotated[tuple[Annotated[Editable, BeforeValidator(_editable)], ...], _list("fields")]
Urls = Annotated[tuple[Url, ...], _list("URLs")]
Threshold = Annotated[bool | Amount, BeforeValidator(_threshold)]
Retries = Annotated[int, Field(ge=0, le=MAX_RETRIES), BeforeValidator(_retries)]
Backoff = Annotated[str, Field(pattern=BACKOFF_PATTERN), BeforeValidator(_backoff)]
ConditionName = Annotated[Condition, BeforeValidator(_condition)]
Fraction = Annotated[float, Field(ge=0, le=1), BeforeValidator(_fraction)]


__all__ = [
    "ACTIONS",
    "BACKOFF_PATTERN",
    "CONDITIONS",
    "DEFAULT_HIGH_VALUE",
    "EDITABLE",
    "MAX_RETRIES",
    "TRIGGERS",
    "Backoff",
    "Condition",
    "ConditionName",
    "Editable",
    "EditableFields",
    "Flag",
    "Fraction",
    "Names",
    "Pairs",
    "Retries",
    "Threshold",
    "Urls",
    "merge_pairs",
    "parse_backoff",
    "problem",
]
