"""The LLM judge's three Who&When methods against a scripted OpenAI-compatible server on loopback:
the real httpx path, what each request carries, the culprit each method finds, unknown for
answers it cannot use, JudgeError for a failing provider, and its budgets."""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from omium.config import JUDGE_METHODS
from omium.models import judge as J
from omium.models.attribution import UNKNOWN, Step
from omium.models.judge import Judge, JudgeError
from tests.models.fake_judge import TOKENS_PER_CALL, Reply, serving

TASK = "How many moons does the planet in the report have?"
STEPS = [
    Step("Planner", "Plan: the searcher finds the report, the analyst reads the count."),
    Step("Searcher", "Found the report: it lists 14 moons."),
    Step("Analyst (thought)", "I will double-check the report."),
    Step("Analyst", "The report says 41 moons."),  # the decisive error: 14 misread
    Step("Verifier", "41 moons, confirmed."),
    Step("Planner", "Final answer: 41. TERMINATE"),
]


def _judge(url: str, **options: object) -> Judge:
    return Judge(url, "judge-model", "sk-test", **options)  # type: ignore[arg-type]


def _half(culprit: int):  # type: ignore[no-untyped-def]
    """A binary-search judge that knows the culprit: it points at the half that holds it."""

    def answer(prompt: str) -> str:
        found = re.search(r"first half of this segment \(steps (\d+) to (\d+)\)", prompt)
        assert found, prompt
        start, mid = int(found.group(1)), int(found.group(2))
        half = "first" if start <= culprit <= mid else "second"
        return json.dumps({"half": half, "reason": f"step {culprit} misreads the report"})

    return answer


def test_all_at_once_finds_the_scripted_culprit_and_the_request_carries_model_key_and_version() -> None:
    answer = 'Here is my answer:\n```json\n{"agent": "Analyst (thought)", "step": 3, "reason": "read 41 for 14"}\n```'
    with serving(answer) as fake:
        judge = _judge(fake.url)
        found = judge.attribute(STEPS, task=TASK)
    # A speaker label names its agent ("Analyst (thought)" is the Analyst).
    assert found.known and found.agent == "Analyst"
    assert (found.position, found.method, found.prompt_version) == (3, "all_at_once", J.PROMPT_VERSION)
    assert found.evidence[0] == "#3 by Analyst: read 41 for 14"
    assert found.confidence == J.PRIORS["all_at_once"] and found.model == "judge-model"
    assert (found.calls, found.tokens) == (1, TOKENS_PER_CALL)
    assert "sk-test" not in repr(judge)  # the key stays out of logs
    (request,) = fake.requests
    assert request.path == "/v1/chat/completions"
    assert request.headers["authorization"] == "Bearer sk-test"
    assert request.headers[J.PROMPT_HEADER.lower()] == J.PROMPT_VERSION
    assert request.body["model"] == "judge-model" and request.body["max_tokens"] == judge.max_tokens
    assert request.body["messages"][0] == {"role": "system", "content": J.SYSTEM_PROMPT}
    assert TASK in request.prompt
    for i, step in enumerate(STEPS):
        assert f"Step {i} - {step.agent}: {step.content}" in request.prompt


def test_a_speaker_label_names_the_agent_it_belongs_to() -> None:
    # The judge says "Verifier (-> Planner)": the run's agent is Verifier, its step 4.
    with serving('{"agent": "verifier (-> Planner)", "step": 4, "reason": "confirmed a wrong count"}') as fake:
        found = _judge(fake.url).attribute(STEPS, task=TASK)
    assert found.known and (found.agent, found.position) == ("Verifier", 4)


def test_all_at_once_notes_a_step_spoken_by_another_agent() -> None:
    with serving('{"agent": "Searcher", "step": 3, "reason": "its report was ambiguous"}') as fake:
        found = _judge(fake.url).attribute(STEPS)
    assert (found.agent, found.position) == ("Searcher", 3)
    assert "#3 was spoken by Analyst" in found.evidence
    assert J.NO_TASK in fake.requests[0].prompt  # no task given: the prompt says so


def test_step_by_step_walks_in_order_and_stops_at_the_first_yes() -> None:
    def verdict(prompt: str) -> str:
        return json.dumps({"decisive": "Is step 3," in prompt, "reason": "misreads 14 as 41"})

    with serving(verdict) as fake:
        found = _judge(fake.url, method="step_by_step").attribute(STEPS, task=TASK)
    assert found.known and (found.agent, found.position, found.method) == ("Analyst", 3, "step_by_step")
    assert found.calls == 4 and len(fake.requests) == 4
    assert found.evidence[0] == "#3 by Analyst is the decisive error: misreads 14 as 41"
    assert found.confidence == J.PRIORS["step_by_step"]
    # Each request shows the log up to its step, never beyond.
    for i, request in enumerate(fake.requests):
        assert f"Is step {i}, by {STEPS[i].agent}," in request.prompt
        assert STEPS[i].content in request.prompt
        assert all(s.content not in request.prompt for s in STEPS[i + 1 :])


def test_step_by_step_names_the_agent_behind_a_speaker_label() -> None:
    def verdict(prompt: str) -> str:
        return json.dumps({"decisive": "Is step 2," in prompt, "reason": "plans to skip the check"})

    with serving(verdict) as fake:
        found = _judge(fake.url).step_by_step(STEPS, task=TASK)
    assert (found.agent, found.position) == ("Analyst", 2)
    assert "Is step 2, by Analyst (thought)," in fake.requests[-1].prompt  # the log keeps the label


def test_step_by_step_with_no_yes_is_unknown() -> None:
    with serving('{"decisive": false, "reason": "fine"}') as fake:
        found = _judge(fake.url, method="step_by_step").attribute(STEPS)
    assert not found.known and found.agent == UNKNOWN and found.position == -1 and found.confidence == 0.0
    assert found.evidence[0].startswith("unknown:") and "none of the 6 steps" in found.evidence[0]
    assert len(fake.requests) == len(STEPS)


@pytest.mark.parametrize("count", [1, 2, 3, 7, 16, 33])
def test_binary_search_finds_the_culprit_in_about_log2_n_calls(count: int) -> None:
    steps = [Step(f"agent{i % 3}", f"step {i} says {i * 7}") for i in range(count)]
    for culprit in sorted({0, count // 2, count - 1}):
        with serving(_half(culprit)) as fake:
            found = _judge(fake.url).binary_search(steps, task=TASK)
        assert found.known and found.position == culprit and found.agent == steps[culprit].agent
        assert found.method == "binary_search" and found.confidence == J.PRIORS["binary_search"]
        assert found.calls == len(fake.requests) <= math.ceil(math.log2(count))
        assert len(fake.requests) >= math.floor(math.log2(count))
        # Each question shows only its segment of the log.
        for request in fake.requests:
            start, end = map(int, re.search(r"steps (\d+) to (\d+)\.", request.prompt).groups())  # type: ignore[union-attr]
            shown = [i for i in range(count) if f"Step {i} - " in request.prompt]
            assert shown == list(range(start, end + 1))


@pytest.mark.parametrize(
    ("method", "answer", "why"),
    [
        ("all_at_once", "The Analyst did it, at step 3.", "not JSON"),
        ("all_at_once", '{"agent": "Analyst", "step": 3', "not JSON"),
        ("all_at_once", '{"agent": "Analyst"}', "step: Field required"),
        ("all_at_once", '{"agent": "Analyst", "step": "three"}', "not the JSON asked for"),
        ("all_at_once", '{"agent": "Librarian", "step": 3, "reason": "x"}', "not one of the run's"),
        ("all_at_once", '{"agent": "Analyst", "step": 6, "reason": "x"}', "outside the run (0-5)"),
        ("all_at_once", '{"agent": "Analyst", "step": -1, "reason": "x"}', "outside the run"),
        ("all_at_once", "", "not JSON"),
        ("step_by_step", '{"decisive": "perhaps"}', "at step 0"),
        ("binary_search", '{"half": "middle"}', "at steps 0-5"),
        ("binary_search", "upper half", "not JSON"),
    ],
)
def test_an_answer_the_judge_cannot_use_is_unknown_and_says_why(method: str, answer: str, why: str) -> None:
    with serving(answer) as fake:
        found = _judge(fake.url, method=method).attribute(STEPS, task=TASK)
    assert not found.known and found.agent == UNKNOWN and found.position == -1
    assert found.confidence == 0.0 and found.method == method and found.prompt_version == J.PROMPT_VERSION
    assert found.evidence[0].startswith("unknown: ") and why in found.evidence[0]
    assert found.calls == 1


def test_a_failing_provider_raises_judge_error() -> None:
    with serving(Reply(500, b'{"error": {"message": "overloaded"}}')) as fake:
        with pytest.raises(JudgeError, match=r"HTTP 500.*overloaded"):
            _judge(fake.url).attribute(STEPS)
    with serving(Reply(401, b'{"error": "bad key"}')) as fake:
        with pytest.raises(JudgeError, match="HTTP 401"):
            _judge(fake.url).attribute(STEPS)
    with serving(Reply(200, b'{"error": "this is no completion"}')) as fake:
        with pytest.raises(JudgeError, match="not a chat completion"):
            _judge(fake.url).attribute(STEPS)
    with serving(Reply(200, b'{"choices": []}')) as fake:
        with pytest.raises(JudgeError, match="without choices"):
            _judge(fake.url).attribute(STEPS)


def test_a_provider_that_does_not_answer_in_time_raises_judge_error() -> None:
    held = threading.Event()
    with serving(Reply(hold=held)) as fake:
        with pytest.raises(JudgeError, match=r"did not answer within 0.2s"):
            _judge(fake.url, timeout=0.2).attribute(STEPS)
        held.set()
    url = fake.url  # the server is gone: nothing listens on its port
    with pytest.raises(JudgeError, match="could not be reached"):
        _judge(url, timeout=2).attribute(STEPS)


def test_budgets_are_respected() -> None:
    no = '{"decisive": false, "reason": "fine"}'
    # Calls: step by step stops when its calls are spent.
    with serving(no) as fake:
        found = _judge(fake.url, method="step_by_step", max_calls=2).attribute(STEPS)
    assert len(fake.requests) == 2 and not found.known
    assert "budget of 2 calls" in found.evidence[0]
    # Tokens: 100 a call, a budget of 250 allows three calls.
    with serving(no) as fake:
        found = _judge(fake.url, method="step_by_step", max_total_tokens=250).attribute(STEPS)
    assert len(fake.requests) == 3 and found.tokens == 300 and "budget of 250 tokens" in found.evidence[0]
    # Prompt size: a prompt over the budget is not sent.
    with serving('{"agent": "Analyst", "step": 3}') as fake:
        found = _judge(fake.url, max_prompt_chars=200).attribute(STEPS, task=TASK)
    assert not fake.requests and not found.known and "was not sent" in found.evidence[0]
    # A step's content is cut in the prompt; the answer's token limit is sent.
    long = [Step("Writer", "x" * 5000), Step("Editor", "fine")]
    with serving('{"agent": "Writer", "step": 0, "reason": "too long"}') as fake:
        found = _judge(fake.url, max_step_chars=100, max_tokens=64).attribute(long)
    assert found.known and fake.requests[0].body["max_tokens"] == 64
    assert "x" * 100 + "… [4900 more characters]" in fake.requests[0].prompt
    assert "x" * 101 not in fake.requests[0].prompt


def test_an_empty_run_is_unknown_without_a_call_and_a_bad_method_is_refused() -> None:
    with serving("{}") as fake:
        found = _judge(fake.url).attribute([])
    assert not fake.requests and not found.known and "no steps" in found.evidence[0]
    with pytest.raises(ValueError, match="unknown judge method"):
        Judge("http://127.0.0.1:9/v1", "m", method="vote")
    with pytest.raises(ValueError, match="unknown judge method"):
        Judge("http://127.0.0.1:9/v1", "m").attribute(STEPS, method="vote")


def test_no_key_sends_no_authorization_and_the_temperature_can_be_left_to_the_provider() -> None:
    with serving('{"agent": "Analyst", "step": 3}') as fake:
        Judge(fake.url + "/", "local-model", temperature=None).attribute(STEPS)
    (request,) = fake.requests
    assert request.path == "/v1/chat/completions"  # a trailing slash on the URL is dropped
    assert "authorization" not in request.headers and "temperature" not in request.body


def test_the_settings_know_the_same_methods() -> None:
    assert JUDGE_METHODS == J.METHODS


def test_the_readme_example_runs_against_a_provider(tmp_path: Path) -> None:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    code = re.search(r"### LLM-judge attribution.*?```python\n(.*?)```", readme, re.S)
    assert code is not None
    script = tmp_path / "judge_example.py"
    script.write_text(code.group(1))

    def judge(prompt: str) -> str:  # a provider that blames the Analyst's step 2 every way it is asked
        if '"half"' in prompt:
            return _half(2)(prompt)
        if '"decisive"' in prompt:
            return json.dumps({"decisive": "Is step 2," in prompt, "reason": "41 is not 14"})
        return json.dumps({"agent": "Analyst", "step": 2, "reason": "41 is not 14"})

    with serving(judge) as fake:
        env = os.environ | {"OMIUM_JUDGE_URL": fake.url, "OMIUM_JUDGE_MODEL": "judge-model", "OMIUM_JUDGE_KEY": "k"}
        result = subprocess.run(
            [sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=120
        )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "all_at_once Analyst 2 0.54 1",
        "step_by_step Analyst 2 0.35 3",
        "binary_search Analyst 2 0.44 2",
    ]
    assert {r.headers["authorization"] for r in fake.requests} == {"Bearer k"}
