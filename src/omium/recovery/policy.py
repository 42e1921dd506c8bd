"""Recovery policies: what counts as a failure of a workflow and what Omium does about it.

A policy is a YAML file per workflow (``rollback_triggers``, ``recovery_actions``,
``retry_policy``, optional ``notify``). It is validated when loaded, and every problem is
reported with the file, the line, the offending key and what is allowed there. The JSON Schema
for editors is :data:`SCHEMA` (``omium policy schema`` prints it).

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

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from omium.errors import ConfigError

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
EDITABLE = ("prompt", "constraints", "tool_selection")
CONDITIONS = {
    "same_failure_not_detected_twice": "retry until the same failure is detected twice",
    "always": "retry every failure until max_retries",
    "never": "do not retry; go straight to the recovery actions",
}
DEFAULT_HIGH_VALUE = 10_000.0
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$")
_BACKOFF = re.compile(r"^\s*(exponential|fixed)\s*\(\s*([^,()]+?)\s*(?:,\s*([^,()]+?)\s*)?\)\s*$")


@dataclass(frozen=True)
class RetryRule:
    """How a failed run is retried: ``max_retries`` after the first attempt, waits growing from
    ``initial`` to ``maximum`` seconds (doubling when exponential), plus up to ``jitter`` of each."""

    max_retries: int = 0
    initial: float = 1.0
    maximum: float = 10.0
    exponential: bool = True
    jitter: float = 0.2
    condition: str = "same_failure_not_detected_twice"

    def delay(self, retry: int, random_fraction: float) -> float:
        """Seconds before retry number ``retry`` (1-based); ``random_fraction`` in [0, 1)."""
        base = min(self.maximum, self.initial * (2 ** (retry - 1) if self.exponential else 1))
        return base * (1 + self.jitter * random_fraction)


@dataclass(frozen=True)
class Policy:
    """A validated recovery policy."""

    triggers: dict[str, Any] = field(default_factory=dict)
    rollback_to_last_checkpoint: bool = False
    pause_and_notify: bool = False
    await_human_review: bool = False
    allowed_edits: tuple[str, ...] = EDITABLE
    forbidden_edits: tuple[str, ...] = ()
    retry: RetryRule = field(default_factory=RetryRule)
    webhooks: tuple[str, ...] = ()
    source: str = "<policy>"

    @property
    def high_value_threshold(self) -> float | None:
        """The amount above which an operation needs approval (None: no gate)."""
        rule = self.triggers.get("high_value_operation")
        if rule is None or rule is False:
            return None
        return DEFAULT_HIGH_VALUE if rule is True else float(rule)

    def triggered_by(self, trigger: str, error_type: str = "") -> bool:
        """Whether a failure of kind ``trigger`` (or raising ``error_type``) is one this policy acts on."""
        if trigger == "exception":
            return error_type in self.triggers.get("exception", ())
        return bool(self.triggers.get(trigger))

    def to_json(self) -> str:
        """The policy as JSON (kept with an incident, so a review is checked against it)."""
        data = {
            "triggers": self.triggers,
            "rollback_to_last_checkpoint": self.rollback_to_last_checkpoint,
            "pause_and_notify": self.pause_and_notify,
            "await_human_review": self.await_human_review,
            "allowed_edits": list(self.allowed_edits),
            "forbidden_edits": list(self.forbidden_edits),
            "retry": self.retry.__dict__,
            "webhooks": list(self.webhooks),
            "source": self.source,
        }
        return json.dumps(data, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Policy:
        """Inverse of :meth:`to_json`."""
        data = json.loads(text)
        data["retry"] = RetryRule(**data["retry"])
        for name in ("allowed_edits", "forbidden_edits", "webhooks"):
            data[name] = tuple(data[name])
        if isinstance(data["triggers"].get("exception"), list):
            data["triggers"]["exception"] = tuple(data["triggers"]["exception"])
        return cls(**data)

    @classmethod
    def load(cls, path: str | Path) -> Policy:
        """Load and validate a policy file.

        Raises:
            ConfigError: the file is missing, is not YAML, or breaks the policy's rules; the
                message names the file, line and key, and what is allowed.
        """
        path = Path(path)
        try:
            text = path.read_text()
        except OSError as error:
            raise ConfigError(f"{path}: cannot read the policy: {error.strerror or error}") from None
        return cls.from_yaml(text, source=str(path))

    @classmethod
    def from_yaml(cls, text: str, *, source: str = "<policy>") -> Policy:
        """Validate a policy given as YAML text (see :meth:`load`)."""
        try:
            root = yaml.compose(text, Loader=yaml.SafeLoader)
        except yaml.YAMLError as error:
            mark = getattr(error, "problem_mark", None)
            where = f"{source}:{mark.line + 1}" if mark else source
            raise ConfigError(f"{where}: not valid YAML: {getattr(error, 'problem', error)}") from None
        return _Parser(source).policy(root)


class _Parser:
    """Walks the YAML node tree so every error can point at a line."""

    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, node: yaml.Node | None, where: str, problem: str) -> ConfigError:
        line = f":{node.start_mark.line + 1}" if node is not None else ""
        return ConfigError(f"{self.source}{line}: {where}: {problem}")

    def value(self, node: yaml.Node) -> Any:
        return yaml.SafeLoader(yaml.serialize(node)).get_single_data() if node is not None else None

    def entries(self, node: yaml.Node, where: str) -> list[tuple[yaml.ScalarNode, yaml.Node]]:
        """Pairs of a mapping, or of a list of one-key mappings (the shape of the user's example)."""
        if isinstance(node, yaml.MappingNode):
            return list(node.value)
        if isinstance(node, yaml.SequenceNode):
            pairs = []
            for item in node.value:
                if not isinstance(item, yaml.MappingNode) or len(item.value) != 1:
                    raise self.fail(item, where, "each item is one 'key: value' pair")
                pairs.append(item.value[0])
            return pairs
        raise self.fail(node, where, "expected a list of 'key: value' items or a mapping")

    def boolean(self, node: yaml.Node, where: str) -> bool:
        value = self.value(node)
        if not isinstance(value, bool):
            raise self.fail(node, where, f"expected true or false, got {value!r}")
        return value

    def names(self, node: yaml.Node, where: str) -> tuple[str, ...]:
        value = self.value(node)
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
            raise self.fail(node, where, f"expected a list of names, got {value!r}")
        return tuple(value)

    def policy(self, root: yaml.Node | None) -> Policy:
        if root is None:
            raise self.fail(None, "policy", "the file is empty")
        if not isinstance(root, yaml.MappingNode):
            raise self.fail(
                root, "policy", "expected a mapping with rollback_triggers, recovery_actions, ..."
            )
        sections = {
            "rollback_triggers": "when to act",
            "recovery_actions": "what to do",
            "retry_policy": "how to retry",
            "notify": "where to send notifications",
        }
        found: dict[str, Any] = {}
        for key, node in root.value:
            if key.value not in sections:
                raise self.fail(key, key.value, f"unknown section; allowed: {', '.join(sections)}")
            found[key.value] = node
        options: dict[str, Any] = {"source": self.source}
        if "rollback_triggers" in found:
            options["triggers"] = self.triggers(found["rollback_triggers"])
        if "recovery_actions" in found:
            options.update(self.actions(found["recovery_actions"]))
        if "retry_policy" in found:
            options["retry"] = self.retry(found["retry_policy"])
        if "notify" in found:
            options["webhooks"] = self.notify(found["notify"])
        return Policy(**options)

    def triggers(self, node: yaml.Node) -> dict[str, Any]:
        triggers: dict[str, Any] = {}
        for key, value in self.entries(node, "rollback_triggers"):
            name = key.value
            where = f"rollback_triggers.{name}"
            if name not in TRIGGERS:
                raise self.fail(key, where, f"unknown trigger; allowed: {', '.join(TRIGGERS)}")
            if name == "exception":
                triggers[name] = self.names(value, where)
            elif name == "high_value_operation":
                raw = self.value(value)
                if isinstance(raw, bool) or (isinstance(raw, int | float) and raw > 0):
                    triggers[name] = raw
                else:
                    raise self.fail(value, where, f"expected true, false or an amount > 0, got {raw!r}")
            else:
                triggers[name] = self.boolean(value, where)
        return triggers

    def actions(self, node: yaml.Node) -> dict[str, Any]:
        actions: dict[str, Any] = {}
        nodes: dict[str, yaml.Node] = {}
        for key, value in self.entries(node, "recovery_actions"):
            name = key.value
            where = f"recovery_actions.{name}"
            if name not in ACTIONS:
                raise self.fail(key, where, f"unknown action; allowed: {', '.join(ACTIONS)}")
            nodes[name] = value
            if name == "allowed_edits":
                edits = self.names(value, where)
                unknown = [e for e in edits if e not in EDITABLE]
                if unknown:
                    raise self.fail(
                        value, where, f"{unknown[0]!r} is not editable; allowed: {', '.join(EDITABLE)}"
                    )
                actions[name] = edits
            elif name == "forbidden_edits":
                actions[name] = self.names(value, where)
            else:
                actions[name] = self.boolean(value, where)
        both = set(actions.get("allowed_edits", ())) & set(actions.get("forbidden_edits", ()))
        if both:
            raise self.fail(
                nodes["forbidden_edits"],
                "recovery_actions.forbidden_edits",
                f"{sorted(both)[0]!r} is both allowed and forbidden",
            )
        if actions.get("await_human_review") and not actions.get("pause_and_notify", True):
            raise self.fail(
                nodes["await_human_review"],
                "recovery_actions.await_human_review",
                "awaiting review needs the run paused: pause_and_notify cannot be false",
            )
        return actions

    def duration(self, text: str, node: yaml.Node, where: str) -> float:
        match = _DURATION.match(str(text))
        if not match:
            raise self.fail(node, where, f"{text!r} is not a duration such as 500ms, 1s, 2m")
        scale = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}[match.group(2) or "s"]
        return float(match.group(1)) * scale

    def retry(self, node: yaml.Node) -> RetryRule:
        if not isinstance(node, yaml.MappingNode):
            raise self.fail(node, "retry_policy", "expected a mapping (max_retries, backoff, condition)")
        allowed = ("max_retries", "backoff", "condition", "jitter")
        options: dict[str, Any] = {}
        for key, value in node.value:
            name, where = key.value, f"retry_policy.{key.value}"
            raw = self.value(value)
            if name == "max_retries":
                if not isinstance(raw, int) or isinstance(raw, bool) or not 0 <= raw <= 100:
                    raise self.fail(value, where, f"expected a whole number from 0 to 100, got {raw!r}")
                options[name] = raw
            elif name == "backoff":
                match = _BACKOFF.match(str(raw))
                if not match:
                    raise self.fail(
                        value,
                        where,
                        f"{raw!r}: expected exponential(INITIAL, MAX) or fixed(DELAY), "
                        "e.g. exponential(1s, 10s)",
                    )
                kind, first, second = match.groups()
                options["exponential"] = kind == "exponential"
                options["initial"] = self.duration(first, value, where)
                options["maximum"] = self.duration(second or first, value, where)
                if options["maximum"] < options["initial"]:
                    raise self.fail(value, where, "the maximum wait is shorter than the first")
            elif name == "condition":
                if raw not in CONDITIONS:
                    raise self.fail(
                        value, where, f"unknown condition {raw!r}; allowed: {', '.join(CONDITIONS)}"
                    )
                options[name] = raw
            elif name == "jitter":
                if not isinstance(raw, int | float) or not 0 <= raw <= 1:
                    raise self.fail(value, where, f"expected a fraction from 0 to 1, got {raw!r}")
                options[name] = float(raw)
            else:
                raise self.fail(key, where, f"unknown setting; allowed: {', '.join(allowed)}")
        return RetryRule(**options)

    def notify(self, node: yaml.Node) -> tuple[str, ...]:
        if not isinstance(node, yaml.MappingNode):
            raise self.fail(node, "notify", "expected a mapping with webhooks: [URL, ...]")
        hooks: tuple[str, ...] = ()
        for key, value in node.value:
            if key.value != "webhooks":
                raise self.fail(key, f"notify.{key.value}", "unknown setting; allowed: webhooks")
            hooks = self.names(value, "notify.webhooks")
            for url in hooks:
                if not url.startswith(("http://", "https://")):
                    raise self.fail(value, "notify.webhooks", f"{url!r} is not an http(s) URL")
        return hooks


def _one_of_pairs(properties: dict[str, Any]) -> dict[str, Any]:
    """A list of one-key mappings or a mapping, with these keys (the two shapes the loader takes)."""
    item = {"type": "object", "properties": properties, "additionalProperties": False}
    return {"oneOf": [{"type": "array", "items": {**item, "minProperties": 1, "maxProperties": 1}}, item]}


SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "$id": "https://omium.dev/schemas/policy.json",
    "title": "Omium recovery policy",
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "rollback_triggers": _one_of_pairs(
            {
                **{name: {"type": "boolean", "description": text} for name, text in TRIGGERS.items()},
                "high_value_operation": {
                    "description": TRIGGERS["high_value_operation"],
                    "oneOf": [{"type": "boolean"}, {"type": "number", "exclusiveMinimum": 0}],
                },
                "exception": {
                    "description": TRIGGERS["exception"],
                    "type": "array",
                    "items": {"type": "string", "minLength": 1},
                },
            }
        ),
        "recovery_actions": _one_of_pairs(
            {
                **{name: {"type": "boolean", "description": text} for name, text in ACTIONS.items()},
                "allowed_edits": {
                    "description": ACTIONS["allowed_edits"],
                    "type": "array",
                    "items": {"enum": list(EDITABLE)},
                },
                "forbidden_edits": {
                    "description": ACTIONS["forbidden_edits"],
                    "type": "array",
                    "items": {"type": "string", "minLength": 1},
                },
            }
        ),
        "retry_policy": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "max_retries": {"type": "integer", "minimum": 0, "maximum": 100},
                "backoff": {
                    "type": "string",
                    "pattern": r"^\s*(exponential|fixed)\s*\(.*\)\s*$",
                    "description": "exponential(INITIAL, MAX) or fixed(DELAY), e.g. exponential(1s, 10s)",
                },
                "condition": {"enum": list(CONDITIONS)},
                "jitter": {"type": "number", "minimum": 0, "maximum": 1},
            },
        },
        "notify": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "webhooks": {"type": "array", "items": {"type": "string", "pattern": "^https?://"}}
            },
        },
    },
}

__all__ = ["CONDITIONS", "EDITABLE", "SCHEMA", "TRIGGERS", "Policy", "RetryRule"]
