"""Policies: the user's example loads; invalid ones fail with file, line, key and what is allowed."""

from __future__ import annotations

from pathlib import Path

import pytest

from omium.errors import ConfigError
from omium.recovery.policy import SCHEMA, Policy

EXAMPLE = Path(__file__).resolve().parents[2] / "src/omium/examples/company_x/policy.yaml"

USERS_EXAMPLE = """\
rollback_triggers:
  - hallucination_detected: true
  - policy_violation: true
  - high_value_operation: true  # > $10K
recovery_actions:
  - rollback_to_last_checkpoint: true
  - pause_and_notify: true
  - await_human_review: true
  - allowed_edits: ["prompt", "constraints", "tool_selection"]
  - forbidden_edits: ["core_logic", "agent_count"]
retry_policy:
  max_retries: 3
  backoff: exponential(1s, 10s)
  condition: "same_failure_not_detected_twice"
"""


def test_the_users_example_loads() -> None:
    policy = Policy.from_yaml(USERS_EXAMPLE)
    assert policy.triggered_by("hallucination_detected") and policy.triggered_by("policy_violation")
    assert not policy.triggered_by("stale_handoff")
    assert policy.high_value_threshold == 10_000
    assert policy.rollback_to_last_checkpoint and policy.pause_and_notify and policy.await_human_review
    assert policy.allowed_edits == ("prompt", "constraints", "tool_selection")
    assert policy.forbidden_edits == ("core_logic", "agent_count")
    retry = policy.retry
    assert (retry.max_retries, retry.initial, retry.maximum, retry.exponential) == (3, 1.0, 10.0, True)
    assert [retry.delay(n, 0.0) for n in (1, 2, 3, 4, 5)] == [1.0, 2.0, 4.0, 8.0, 10.0]
    assert retry.delay(1, 0.999) < 1.0 * (1 + retry.jitter)
    assert Policy.from_json(policy.to_json()) == policy


def test_the_example_file_and_the_schema_agree() -> None:
    jsonschema = pytest.importorskip("jsonschema")
    import yaml

    jsonschema.Draft202012Validator.check_schema(SCHEMA)
    for text in (USERS_EXAMPLE, EXAMPLE.read_text()):
        jsonschema.validate(yaml.safe_load(text), SCHEMA)
    Policy.load(EXAMPLE)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(
            yaml.safe_load(USERS_EXAMPLE.replace("policy_violation", "policy_vilation")), SCHEMA
        )


@pytest.mark.parametrize(
    ("change", "line", "message"),
    [
        (("policy_violation: true", "policy_vilation: true"), 3,
         "rollback_triggers.policy_vilation: unknown trigger; allowed: hallucination_detected, policy_violation"),
        (("max_retries: 3", "max_retries: -1"), 12, "retry_policy.max_retries: expected a whole number from 0 to 100"),
        (("max_retries: 3", "max_retries: three"), 12, "got 'three'"),
        (("exponential(1s, 10s)", "linear(1s, 10s)"), 13, "expected exponential(INITIAL, MAX) or fixed(DELAY)"),
        (("exponential(1s, 10s)", "exponential(10s, 1s)"), 13, "the maximum wait is shorter than the first"),
        (("exponential(1s, 10s)", "exponential(1 sec, 10s)"), 13, "'1 sec' is not a duration"),
        (('"same_failure_not_detected_twice"', "sometimes"), 14,
         "unknown condition 'sometimes'; allowed: same_failure_not_detected_twice, always, never"),
        (('"tool_selection"]', '"core_logic"]'), 9, "'core_logic' is not editable; allowed: prompt, constraints"),
        (("pause_and_notify: true", "pause_and_notify: yes please"), 7, "expected true or false"),
        (("high_value_operation: true", "high_value_operation: -5"), 4, "expected true, false or an amount > 0"),
        (("recovery_actions:", "recovery_action:"), 5, "recovery_action: unknown section; allowed: rollback_triggers"),
        (("  max_retries: 3", "  max_retries: 3\n  give_up: never"), 13, "retry_policy.give_up: unknown setting"),
        (("  - await_human_review: true", "  - await_human_review: true\n    extra: 1"), 8,
         "each item is one 'key: value' pair"),
    ],
)  # fmt: skip
def test_invalid_policies_say_where_and_what_is_allowed(
    tmp_path: Path, change: tuple[str, str], line: int, message: str
) -> None:
    path = tmp_path / "onboarding.yaml"
    assert change[0] in USERS_EXAMPLE
    path.write_text(USERS_EXAMPLE.replace(change[0], change[1], 1))
    with pytest.raises(ConfigError) as error:
        Policy.load(path)
    assert str(error.value).startswith(f"{path}:{line}: "), str(error.value)
    assert message in str(error.value)


def test_broken_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read the policy"):
        Policy.load(tmp_path / "missing.yaml")
    (tmp_path / "bad.yaml").write_text("rollback_triggers: [\n")
    with pytest.raises(ConfigError, match=r"bad.yaml:2: not valid YAML"):
        Policy.load(tmp_path / "bad.yaml")
    (tmp_path / "empty.yaml").write_text("")
    with pytest.raises(ConfigError, match="the file is empty"):
        Policy.load(tmp_path / "empty.yaml")
    (tmp_path / "both.yaml").write_text(
        "recovery_actions:\n  allowed_edits: [prompt]\n  forbidden_edits: [prompt]\n"
    )
    with pytest.raises(ConfigError, match=r"both.yaml:3: .*'prompt' is both allowed and forbidden"):
        Policy.load(tmp_path / "both.yaml")
    (tmp_path / "hook.yaml").write_text("notify:\n  webhooks: [ftp://x]\n")
    with pytest.raises(ConfigError, match="is not an http"):
        Policy.load(tmp_path / "hook.yaml")
