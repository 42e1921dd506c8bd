"""Policies: the user's example loads; invalid ones fail with file, line, key and what is allowed;
hostile files (alias bombs, deep nesting, odd keys, bad bytes) fail fast, the same way."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path
from typing import Any

import pytest
import yaml

from omium.adapters.inspection import Handoff, WorkflowReport
from omium.errors import ConfigError
from omium.recovery.policy import SCHEMA, Policy

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "src/omium/examples/company_x/policy.yaml"

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

# "Billion laughs": 324 bytes that expand to 9**9 strings (the 9**8 lists alone take gigabytes).
ALIAS_BOMB = 'a: &a ["x","x","x","x","x","x","x","x","x"]\n' + "".join(
    f"{name}: &{name} [{','.join(['*' + inner] * 9)}]\n"
    for inner, name in zip("abcdefgh", "bcdefghi", strict=True)
)


def _starter_policy() -> str:
    report = WorkflowReport(
        "langgraph", "onboarding", ("drafter", "checker"), ("drafter",), (Handoff("drafter", "checker"),)
    )
    return report.policy_yaml()


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


def test_a_mapping_is_the_same_policy_as_a_list_of_pairs() -> None:
    as_mapping = Policy.from_yaml(
        "rollback_triggers: {hallucination_detected: true, policy_violation: true, high_value_operation: true}\n"
        "recovery_actions:\n  rollback_to_last_checkpoint: true\n  pause_and_notify: true\n"
        "  await_human_review: true\n  forbidden_edits: [core_logic, agent_count]\n"
        "retry_policy: {max_retries: 3}\n"
    )
    assert as_mapping == Policy.from_yaml(USERS_EXAMPLE)
    assert as_mapping == Policy(
        rollback_triggers=[{"hallucination_detected": True}, {"policy_violation": True}, {"high_value_operation": True}],
        recovery_actions={"rollback_to_last_checkpoint": True, "pause_and_notify": True,
                          "await_human_review": True, "forbidden_edits": ["core_logic", "agent_count"]},
        retry_policy={"max_retries": 3},
    )  # fmt: skip


def test_thresholds_exceptions_fixed_backoff_and_webhooks() -> None:
    policy = Policy.from_yaml(
        "rollback_triggers:\n  - high_value_operation: 2500\n  - exception: [KeyError, TimeoutError]\n"
        "retry_policy:\n  max_retries: 2\n  backoff: fixed(500ms)\n  jitter: 0\n"
        "notify:\n  webhooks: [https://hooks.example/a]\n",
        source="billing.yaml",
    )
    assert policy.high_value_threshold == 2500 and policy.source == "billing.yaml"
    assert policy.triggered_by("exception", "KeyError") and not policy.triggered_by("exception", "ValueError")
    assert not policy.triggered_by("exception") and not policy.triggered_by("no_such_trigger")
    assert [policy.retry.delay(n, 0.9) for n in (1, 2, 3)] == [0.5, 0.5, 0.5]
    assert policy.webhooks == ("https://hooks.example/a",)
    assert Policy().high_value_threshold is None and Policy().retry.max_retries == 0
    assert Policy.from_json(policy.to_json()) == policy


def test_a_policy_stored_before_the_models_still_reads() -> None:
    # What Policy.to_json wrote before (kept in paused runs, which must stay reviewable).
    stored = (
        '{"allowed_edits": ["prompt", "constraints", "tool_selection"], "await_human_review": true, '
        '"forbidden_edits": ["core_logic", "agent_count"], "pause_and_notify": true, "retry": '
        '{"condition": "same_failure_not_detected_twice", "exponential": false, "initial": 0.5, '
        '"jitter": 0.5, "max_retries": 3, "maximum": 0.5}, "rollback_to_last_checkpoint": true, '
        '"source": "onboarding.yaml", "triggers": {"exception": ["KeyError"], "hallucination_detected": '
        'true, "high_value_operation": 5000, "policy_violation": true, "stale_handoff": false}, '
        '"webhooks": ["https://hooks.example/x"]}'
    )
    policy = Policy.from_json(stored)
    assert policy.source == "onboarding.yaml" and policy.high_value_threshold == 5000
    assert policy.triggers == {
        "hallucination_detected": True, "policy_violation": True, "high_value_operation": 5000, "exception": ("KeyError",)
    }  # fmt: skip
    retry = policy.retry
    assert (retry.exponential, retry.initial, retry.maximum, retry.jitter) == (False, 0.5, 0.5, 0.5)
    assert policy.forbidden_edits == ("core_logic", "agent_count") and policy.webhooks == (
        "https://hooks.example/x",
    )
    with pytest.raises(ConfigError, match="not a stored policy"):
        Policy.from_json('{"retry_policy": {"max_retries": -1}}')


def test_the_schema_is_the_models_and_agrees_with_them() -> None:
    jsonschema = pytest.importorskip("jsonschema")
    validator = jsonschema.Draft202012Validator(SCHEMA)
    jsonschema.Draft202012Validator.check_schema(SCHEMA)
    assert SCHEMA == Policy.model_json_schema() and SCHEMA["$schema"].endswith("2020-12/schema")
    for text in (USERS_EXAMPLE, EXAMPLE.read_text(), _starter_policy()):
        validator.validate(yaml.safe_load(text))
        Policy.from_yaml(text)
    # Documents both accept or both refuse (the schema cannot see cross-field rules or durations).
    documents: list[tuple[Any, bool]] = [
        ({"rollback_triggers": [{"policy_vilation": True}]}, False),
        ({"rollback_triggers": [{"policy_violation": True, "stale_handoff": True}]}, False),
        ({"rollback_triggers": {"high_value_operation": 0}}, False),
        ({"rollback_triggers": {"high_value_operation": 99.5, "exception": ["KeyError"]}}, True),
        ({"rollback_triggers": {"exception": [""]}}, False),
        ({"recovery_actions": [{"allowed_edits": ["core_logic"]}]}, False),
        ({"recovery_actions": {"await_human_review": "yes"}}, False),
        ({"retry_policy": {"max_retries": 101}}, False),
        ({"retry_policy": {"backoff": "linear(1s)"}}, False),
        ({"retry_policy": {"backoff": "fixed(2m)", "condition": "never", "jitter": 1}}, True),
        ({"retry_policy": {"condition": "sometimes"}}, False),
        ({"notify": {"webhooks": ["ftp://x"]}}, False),
        ({"notify": {"webhooks": ["https://hooks.example/x"]}}, True),
        ({"retry": {}}, False),
        ([], False),
    ]
    for document, valid in documents:
        assert validator.is_valid(document) is valid, document
        try:
            Policy.model_validate(document)
        except ValueError:
            assert not valid, document
        else:
            assert valid, document


@pytest.mark.parametrize(
    ("change", "line", "message"),
    [
        (("policy_violation: true", "policy_vilation: true"), 3,
         "rollback_triggers.policy_vilation: unknown trigger; allowed: hallucination_detected, policy_violation"),
        (("max_retries: 3", "max_retries: -1"), 12, "retry_policy.max_retries: expected a whole number from 0 to 100"),
        (("max_retries: 3", "max_retries: three"), 12, "got 'three'"),
        (("max_retries: 3", "max_retries: 2.5"), 12, "expected a whole number from 0 to 100, got 2.5"),
        (("exponential(1s, 10s)", "linear(1s, 10s)"), 13, "expected exponential(INITIAL, MAX) or fixed(DELAY)"),
        (("exponential(1s, 10s)", "exponential(10s, 1s)"), 13, "the maximum wait is shorter than the first"),
        (("exponential(1s, 10s)", "exponential(1 sec, 10s)"), 13, "'1 sec' is not a duration"),
        (('"same_failure_not_detected_twice"', "sometimes"), 14,
         "unknown condition 'sometimes'; allowed: same_failure_not_detected_twice, always, never"),
        (('"same_failure_not_detected_twice"', "always\n  jitter: 1.5"), 15,
         "retry_policy.jitter: expected a fraction from 0 to 1, got 1.5"),
        (('"tool_selection"]', '"core_logic"]'), 9,
         "recovery_actions.allowed_edits[2]: 'core_logic' is not editable; allowed: prompt, constraints"),
        (('["core_logic", "agent_count"]', '["core_logic", ""]'), 10,
         "recovery_actions.forbidden_edits[1]: expected a name, got ''"),
        (('["core_logic", "agent_count"]', "core_logic"), 10, "expected a list of names, got 'core_logic'"),
        (("pause_and_notify: true", "pause_and_notify: yes please"), 7, "expected true or false"),
        (("pause_and_notify: true", "pause_and_notify: false"), 8,
         "recovery_actions.await_human_review: awaiting review needs the run paused"),
        (("high_value_operation: true", "high_value_operation: -5"), 4, "expected true, false or an amount > 0"),
        (("high_value_operation: true", "high_value_operation: .nan"), 4, "expected true, false or an amount > 0"),
        (("  - policy_violation: true", "  - policy_violation: true\n  - policy_violation: false"), 4,
         "rollback_triggers[2]: 'policy_violation' is given twice"),
        (("recovery_actions:", "recovery_action:"), 5, "recovery_action: unknown section; allowed: rollback_triggers"),
        (("  max_retries: 3", "  max_retries: 3\n  give_up: never"), 13, "retry_policy.give_up: unknown setting"),
        (("  - await_human_review: true", "  - await_human_review: true\n    extra: 1"), 8,
         "each item is one 'key: value' pair"),
        (("retry_policy:\n", "retry_policy: 3\nnotify:\n"), 11, "retry_policy: expected a mapping with max_retries"),
        (("retry_policy:\n", "notify:\n  webhooks: [http://ok, ftp://x]\nretry_policy:\n"), 12,
         "notify.webhooks[1]: 'ftp://x' is not an http(s) URL"),
        (("rollback_triggers:\n", "rollback_triggers: 7\nnotify:\n"), 1,
         "rollback_triggers: expected a list of 'key: value' items or a mapping, got 7"),
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


def test_every_problem_is_reported_in_file_order(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(
        "retry_policy:\n  jitter: 2\nrollback_triggers:\n  exception: [" + ", ".join(["1"] * 12) + "]\n"
    )
    with pytest.raises(ConfigError) as error:
        Policy.load(path)
    lines = str(error.value).splitlines()
    assert lines[0] == f"{path}:2: retry_policy.jitter: expected a fraction from 0 to 1, got 2"
    assert lines[1] == f"{path}:4: rollback_triggers.exception[0]: expected a name, got 1"
    assert len(lines) == 11 and lines[-1] == f"{path}: ... and 3 more problems"


def test_broken_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read the policy"):
        Policy.load(tmp_path / "missing.yaml")
    with pytest.raises(ConfigError, match="cannot read the policy"):
        Policy.load(tmp_path)
    (tmp_path / "bad.yaml").write_text("rollback_triggers: [\n")
    with pytest.raises(ConfigError, match=r"bad.yaml:2: not valid YAML"):
        Policy.load(tmp_path / "bad.yaml")
    for empty in ("", "# only a comment\n"):
        (tmp_path / "empty.yaml").write_text(empty)
        with pytest.raises(ConfigError, match=r"empty.yaml:1: policy: the file is empty"):
            Policy.load(tmp_path / "empty.yaml")
    (tmp_path / "both.yaml").write_text(
        "recovery_actions:\n  allowed_edits: [prompt]\n  forbidden_edits: [prompt]\n"
    )
    with pytest.raises(ConfigError, match=r"both.yaml:3: .*'prompt' is both allowed and forbidden"):
        Policy.load(tmp_path / "both.yaml")
    (tmp_path / "hook.yaml").write_text("notify:\n  webhooks: [ftp://x]\n")
    with pytest.raises(ConfigError, match=r"hook.yaml:2: notify.webhooks\[0\]: 'ftp://x' is not an http"):
        Policy.load(tmp_path / "hook.yaml")
    (tmp_path / "bom.yaml").write_bytes(b"\xef\xbb\xbf" + EXAMPLE.read_bytes())
    assert Policy.load(tmp_path / "bom.yaml").retry.max_retries == 3


def test_an_alias_bomb_is_refused_fast_in_little_memory(tmp_path: Path) -> None:
    path = tmp_path / "bomb.yaml"
    path.write_text(ALIAS_BOMB)
    tracemalloc.start()
    started = time.perf_counter()
    try:
        with pytest.raises(ConfigError) as error:
            Policy.load(path)
        elapsed = time.perf_counter() - started
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert re.match(
        rf"{re.escape(str(path))}:\d+: more than 10,000 values once aliases are expanded", str(error.value)
    )
    assert elapsed < 2 and peak < 50 * 2**20, (elapsed, peak)
    with pytest.raises(ConfigError, match=r"^policy.yaml:\d+: more than 10,000 values"):
        Policy.from_yaml(ALIAS_BOMB, source="policy.yaml")  # pasted into the console's Setup page
    # Aliases within the bound are fine: an anchor used twice.
    policy = Policy.from_yaml(
        "recovery_actions:\n  forbidden_edits: &f [core_logic]\nrollback_triggers:\n  exception: *f\n"
    )
    assert policy.triggered_by("exception", "core_logic")


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        ("rollback_triggers:\n  ? [a, b]\n  : true\n", 2, "a key must be a plain name, not a list or a mapping"),
        ("rollback_triggers: {? {a: 1}: true}\n", 1, "a key must be a plain name"),
        ("rollback_triggers:\n  1: true\n", 2, "a key must be a name, got 1"),
        ("notify: " + "[" * 5000 + "]" * 5000 + "\n", 1, "nested deeper than 32 levels"),
        ("notify: " + "{a: " * 5000 + "1" + "}" * 5000 + "\n", 1, "nested deeper than 32 levels"),
        ("notify:\n" + "".join("  " * depth + "- \n" for depth in range(1, 40)), 33, "nested deeper than 32 levels"),
        ("notify: &n [1, *n]\n", 1, "alias *n refers to a node that contains it"),
        ("a: &a " + "[" * 20 + "]" * 20 + "\nb: " + "[" * 20 + "*a" + "]" * 20 + "\n", 2, "nested deeper than 32"),
        ("retry_policy: {max_retries: 1}\nretry_policy: {max_retries: 2}\n", 2, "'retry_policy' is given twice"),
        ("base: &b {max_retries: 1}\nretry_policy:\n  <<: *b\n", 3, "merge keys (<<) are not supported"),
        ("retry_policy: !!set {a, b}\n", 1, "the tag tag:yaml.org,2002:set is not allowed here"),
        ("retry_policy: !!python/object:os.system x\n", 1, "not valid YAML: could not determine a constructor"),
        ("retry_policy:\n  max_retries: " + "9" * 5000 + "\n", 2, "cannot read '9999"),
        ("retry_policy: {}\n---\nnotify: {}\n", 2, "expected a single document in the stream"),
        ("retry_policy:\n  condition: \x07\n", 2, "not valid YAML: character 0x7 is not allowed"),
    ],
)  # fmt: skip
def test_hostile_yaml_is_refused_with_its_line(text: str, line: int, message: str) -> None:
    with pytest.raises(ConfigError) as error:
        Policy.from_yaml(text, source="hostile.yaml")
    assert str(error.value).startswith(f"hostile.yaml:{line}: "), str(error.value)
    assert message in str(error.value)


def test_bytes_that_are_not_utf8_or_too_many(tmp_path: Path) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes("retry_policy:\n  condition: déjà vu\n".encode("latin-1"))
    with pytest.raises(ConfigError, match=rf"^{re.escape(str(path))}:2: not UTF-8 text \(byte 0xe9\)"):
        Policy.load(path)
    path = tmp_path / "huge.yaml"
    path.write_text("# padding\n" * 30_000 + EXAMPLE.read_text())
    with pytest.raises(ConfigError, match=rf"^{re.escape(str(path))}:1: larger than 262,144 bytes"):
        Policy.load(path)
    with pytest.raises(ConfigError, match=r"^pasted:1: larger than"):
        Policy.from_yaml("é" * 200_000, source="pasted")  # counted in bytes, not characters


@pytest.mark.parametrize("content", [ALIAS_BOMB.encode(), b"notify: \xff\n", b"? [a, b]\n: c\n"])
def test_policy_check_refuses_a_hostile_file_without_a_traceback(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "policy.yaml"
    path.write_bytes(content)
    done = subprocess.run(
        [sys.executable, "-m", "omium.cli.main", "policy", "check", str(path)],
        env=dict(os.environ, COLUMNS="400"),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2, done.stderr
    assert re.match(rf"error: {re.escape(str(path))}:\d+: \S", done.stderr), done.stderr
    assert "Traceback" not in done.stderr and not done.stdout


def test_the_starter_policy_an_import_writes_passes() -> None:
    policy = Policy.from_yaml(_starter_policy(), source="omium-policy.yaml")
    assert policy.triggered_by("stale_handoff") and policy.await_human_review
    assert json.loads(policy.to_json())["source"] == "omium-policy.yaml"


def test_the_public_names() -> None:
    import omium.recovery.policy as module

    assert sorted(module.__all__) == sorted(
        ["ACTIONS", "BACKOFF_PATTERN", "CONDITIONS", "EDITABLE", "SCHEMA", "TRIGGERS",
         "Actions", "Notify", "Policy", "RetryRule", "Triggers"]
    )  # fmt: skip
    assert all(hasattr(module, name) for name in module.__all__)
