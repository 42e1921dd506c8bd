"""Recovery policies: what counts as a failure of a workflow and what Omium does about it.

A policy is a YAML file per workflow (``rollback_triggers``, ``recovery_actions``,
``retry_policy``, optional ``notify``). The pydantic models below are its one definition: they
validate it and generate its JSON Schema for editors (:data:`SCHEMA`, printed by
``omium policy schema``). The file is read within fixed bounds (size, nesting, aliases; see
:mod:`omium.recovery._safe_yaml`), and every problem is reported as ``file:line: key: problem``,
saying what is allowed.

Example:
    >>> policy = Policy.from_yaml('''
    ... rollback_triggers:
    ...   - policy_violation: true
    ... retry_policy:
    ...   max_retries: 2
    ...   backoff: exponential(1s, 10s)
    ... ''')
    >>> policy.retry.max_retries, policy.retry.initial, policy.retry.maximum
    (2, 1.0, 10.0)
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Annotated, Any, ClassVar, Self

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, model_validator

from omium.errors import ConfigError
from omium.recovery import _safe_yaml
from omium.recovery._policy_values import (
    ACTIONS,
    BACKOFF_PATTERN,
    CONDITIONS,
    DEFAULT_HIGH_VALUE,
    EDITABLE,
    TRIGGERS,
    Backoff,
    ConditionName,
    EditableFields,
    Flag,
    Fraction,
    Names,
    Pairs,
    Retries,
    Threshold,
    Urls,
    parse_backoff,
    problem,
)

_SCHEMA_ID = "https://omium.dev/schemas/policy.json"
_SHOWN_ERRORS = 10


class _Section(BaseModel):
    """A mapping with a fixed set of keys; an unknown key is named, with the keys allowed."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    noun: ClassVar[str] = "setting"

    @model_validator(mode="before")
    @classmethod
    def _known_keys(cls, data: Any) -> Any:
        if isinstance(data, BaseModel):
            return data
        allowed = ", ".join(cls.model_fields)
        if not isinstance(data, dict):
            raise problem(f"expected a mapping with {allowed}, got {_safe_yaml.shown(data)}")
        for key in data:
            if key not in cls.model_fields:
                raise problem(f"unknown {cls.noun}; allowed: {allowed}", key, kind="unknown_key")
        return data


class Triggers(_Section):
    """When to act: the failures this policy handles."""

    noun = "trigger"
    hallucination_detected: Flag = Field(default=False, description=TRIGGERS["hallucination_detected"])
    policy_violation: Flag = Field(default=False, description=TRIGGERS["policy_violation"])
    high_value_operation: Threshold = Field(default=False, description=TRIGGERS["high_value_operation"])
    handoff_rejected: Flag = Field(default=False, description=TRIGGERS["handoff_rejected"])
    stale_handoff: Flag = Field(default=False, description=TRIGGERS["stale_handoff"])
    exception: Names = Field(default=(), description=TRIGGERS["exception"])


class Actions(_Section):
    """What to do about a failure this policy handles."""

    noun = "action"
    rollback_to_last_checkpoint: Flag = Field(
        default=False, description=ACTIONS["rollback_to_last_checkpoint"]
    )
    pause_and_notify: Flag = Field(default=False, description=ACTIONS["pause_and_notify"])
    await_human_review: Flag = Field(default=False, description=ACTIONS["await_human_review"])
    allowed_edits: EditableFields = Field(default=EDITABLE, description=ACTIONS["allowed_edits"])
    forbidden_edits: Names = Field(default=(), description=ACTIONS["forbidden_edits"])

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        both = set(self.allowed_edits) & set(self.forbidden_edits)
        if both:
            raise problem(f"{sorted(both)[0]!r} is both allowed and forbidden", "forbidden_edits")
        # Left out, pause_and_notify follows await_human_review; only an explicit false conflicts.
        explicit = "pause_and_notify" in self.model_fields_set
        if self.await_human_review and explicit and not self.pause_and_notify:
            raise problem(
                "awaiting review needs the run paused: pause_and_notify cannot be false",
                "await_human_review",
            )
        return self


class RetryRule(_Section):
    """How a failed run is retried: ``max_retries`` after the first attempt, waits growing from
    ``initial`` to ``maximum`` seconds (doubling when exponential), plus up to ``jitter`` of each."""

    max_retries: Retries = 0
    backoff: Backoff = Field(
        default="exponential(1s, 10s)",
        description="exponential(INITIAL, MAX) or fixed(DELAY), e.g. exponential(1s, 10s)",
    )
    condition: ConditionName = "same_failure_not_detected_twice"
    jitter: Fraction = Field(default=0.2, description="each wait grows by up to this fraction, at random")

    @property
    def exponential(self) -> bool:
        """Whether each wait doubles the one before (``exponential(...)``), not ``fixed(...)``."""
        return _backoff_parts(self.backoff)[0]

    @property
    def initial(self) -> float:
        """Seconds of the first wait."""
        return _backoff_parts(self.backoff)[1]

    @property
    def maximum(self) -> float:
        """Seconds of the longest wait."""
        return _backoff_parts(self.backoff)[2]

    def delay(self, retry: int, random_fraction: float) -> float:
        """Seconds before retry number ``retry`` (1-based); ``random_fraction`` in [0, 1)."""
        exponential, initial, maximum = _backoff_parts(self.backoff)
        base = min(maximum, initial * (2 ** (retry - 1) if exponential else 1))
        return base * (1 + self.jitter * random_fraction)


@functools.lru_cache(maxsize=64)
def _backoff_parts(backoff: str) -> tuple[bool, float, float]:
    return parse_backoff(backoff)


class Notify(_Section):
    """Where notifications go (besides ``OMIUM_WEBHOOK_URL``)."""

    webhooks: Urls = Field(default=(), description="Slack-compatible incoming webhook URLs")


class Policy(_Section):
    """A validated recovery policy, in the shape of its YAML file.

    The attributes the runtime reads (:attr:`triggers`, :attr:`retry`, :attr:`allowed_edits`, ...)
    are views of the four sections.
    """

    model_config = ConfigDict(
        title="Omium recovery policy",
        json_schema_extra={"$schema": "https://json-schema.org/draft/2020-12/schema", "$id": _SCHEMA_ID},
    )
    noun = "section"
    rollback_triggers: Annotated[Triggers, Pairs()] = Field(
        default_factory=Triggers, description="when to act"
    )
    recovery_actions: Annotated[Actions, Pairs()] = Field(default_factory=Actions, description="what to do")
    retry_policy: RetryRule = Field(default_factory=RetryRule, description="how to retry")
    notify: Notify = Field(default_factory=Notify, description="where to send notifications")
    _source: str = PrivateAttr("<policy>")

    @property
    def source(self) -> str:
        """Where the policy came from (its file, or ``<policy>``)."""
        return self._source

    @property
    def triggers(self) -> dict[str, Any]:
        """The triggers that are on, with their values (a threshold, a list of exception names)."""
        return {name: value for name, value in self.rollback_triggers if value}

    @property
    def rollback_to_last_checkpoint(self) -> bool:
        """Whether a failure rolls the run back to its last checkpoint."""
        return self.recovery_actions.rollback_to_last_checkpoint

    @property
    def pause_and_notify(self) -> bool:
        """Whether a failure pauses the run and sends the webhook notification."""
        return self.recovery_actions.pause_and_notify

    @property
    def await_human_review(self) -> bool:
        """Whether a paused run waits for a person's review."""
        return self.recovery_actions.await_human_review

    @property
    def allowed_edits(self) -> tuple[str, ...]:
        """Agent fields a reviewer may edit."""
        return self.recovery_actions.allowed_edits

    @property
    def forbidden_edits(self) -> tuple[str, ...]:
        """Fields no reviewer may edit."""
        return self.recovery_actions.forbidden_edits

    @property
    def retry(self) -> RetryRule:
        """How a failed run is retried."""
        return self.retry_policy

    @property
    def webhooks(self) -> tuple[str, ...]:
        """The policy's webhook URLs."""
        return self.notify.webhooks

    @property
    def high_value_threshold(self) -> float | None:
        """The amount above which an operation needs approval (None: no gate)."""
        rule = self.rollback_triggers.high_value_operation
        if rule is False:
            return None
        return DEFAULT_HIGH_VALUE if rule is True else float(rule)

    def triggered_by(self, trigger: str, error_type: str = "") -> bool:
        """Whether a failure of kind ``trigger`` (or raising ``error_type``) is one this policy acts on."""
        if trigger == "exception":
            return error_type in self.rollback_triggers.exception
        return bool(self.triggers.get(trigger))

    def to_json(self) -> str:
        """The policy as JSON (kept with an incident, so a review is checked against it)."""
        data = self.model_dump(mode="json", exclude_defaults=True)
        return json.dumps({**data, "source": self.source}, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Policy:
        """Inverse of :meth:`to_json` (also reads what versions before the models wrote).

        Raises:
            ConfigError: ``text`` is not a policy's JSON.
        """
        try:
            data = json.loads(text)
            source = str(data.pop("source", "<policy>"))
            policy = cls.model_validate(_from_flat(data) if "triggers" in data else data)
        except (ValueError, TypeError, AttributeError) as error:
            raise ConfigError(f"not a stored policy: {error}") from None
        policy._source = source
        return policy

    @classmethod
    def load(cls, path: str | Path) -> Policy:
        """Load and validate a policy file.

        Raises:
            ConfigError: the file is missing, is too large, is not UTF-8 YAML, or breaks the
                policy's rules; each line of the message reads ``file:line: key: problem``.
        """
        path = Path(path)
        try:
            with path.open("rb") as file:
                raw = file.read(_safe_yaml.MAX_BYTES + 1)  # a larger file is refused unread
        except OSError as error:
            raise ConfigError(f"{path}: cannot read the policy: {error.strerror or error}") from None
        return cls.from_yaml(raw, source=str(path))

    @classmethod
    def from_yaml(cls, text: str | bytes, *, source: str = "<policy>") -> Policy:
        """Validate a policy given as YAML text, or bytes in UTF-8 (see :meth:`load`)."""
        document = _safe_yaml.load(text, source=source)
        if document.data is None:
            raise ConfigError(f"{source}:1: policy: the file is empty")
        try:
            policy = cls.model_validate(document.data)
        except ValidationError as error:
            raise ConfigError(_describe(error, document)) from None
        policy._source = source
        return policy


def _describe(error: ValidationError, document: _safe_yaml.Document) -> str:
    """One ``file:line: key: problem`` line per error, in the order of the file."""
    found = []
    for item in error.errors(include_url=False):
        path = (*item["loc"], *(item.get("ctx") or {}).get("where", ()))
        line = document.line(path, key=item["type"] == "unknown_key")
        found.append((line, f"{document.source}:{line}: {_dotted(path)}: {item['msg']}"))
    found.sort(key=lambda pair: pair[0])
    lines = [text for _, text in found[:_SHOWN_ERRORS]]
    if len(found) > _SHOWN_ERRORS:
        lines.append(f"{document.source}: ... and {len(found) - _SHOWN_ERRORS} more problems")
    return "\n".join(lines)


def _dotted(path: tuple[str | int, ...]) -> str:
    text = ""
    for step in path:
        name = _safe_yaml.clip(str(step), 60)
        text += f"[{name}]" if isinstance(step, int) else f".{name}" if text else name
    return text or "policy"


def _from_flat(data: dict[str, Any]) -> dict[str, Any]:
    """A policy as :meth:`Policy.to_json` wrote it before the models (one flat mapping)."""
    retry = data.get("retry", {})
    initial, maximum = _duration_text(retry.get("initial", 1.0)), _duration_text(retry.get("maximum", 10.0))
    backoff = f"exponential({initial}, {maximum})" if retry.get("exponential", True) else f"fixed({initial})"
    return {
        "rollback_triggers": data.get("triggers", {}),
        "recovery_actions": {name: data[name] for name in ACTIONS if name in data},
        "retry_policy": {
            **{name: retry[name] for name in ("max_retries", "condition", "jitter") if name in retry},
            "backoff": backoff,
        },
        "notify": {"webhooks": data.get("webhooks", [])},
    }


def _duration_text(seconds: float) -> str:
    return f"{float(seconds):.6f}".rstrip("0").rstrip(".") + "s"


SCHEMA: dict[str, Any] = Policy.model_json_schema()

__all__ = [
    "ACTIONS",
    "BACKOFF_PATTERN",
    "CONDITIONS",
    "EDITABLE",
    "SCHEMA",
    "TRIGGERS",
    "Actions",
    "Notify",
    "Policy",
    "RetryRule",
    "Triggers",
]
