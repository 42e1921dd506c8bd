"""Root-cause attribution by an LLM judge: the methods published with Who&When.

Zhang et al. 2025, "Which Agent Causes Task Failures and When?", attribute a failed multi-agent
run by asking a model about its log, three ways:

- ``all_at_once``: the whole log in one prompt; the judge names the agent and the step.
- ``step_by_step``: the log is replayed step by step; at each step the judge is asked whether that
  step is the decisive error; the first "yes" is the answer (one call per step, at most).
- ``binary_search``: the judge is asked which half of a segment holds the decisive error, and the
  search descends into that half (about log2(steps) calls); the last step standing is the answer
  and its speaker the agent.

:class:`Judge` talks to any OpenAI-compatible chat-completions endpoint (``POST {url}/chat/completions``)
over httpx. Every result carries its method, the judge's reason as evidence, a confidence and the
:data:`PROMPT_VERSION` of the prompts it was asked with. A judge answer that cannot be used (not
JSON, an agent not in the run, a step outside it, no step found within the budget) gives an
explicit :data:`~omium.models.attribution.UNKNOWN` result with confidence 0 and the reason in its
evidence; a provider that fails (HTTP error, timeout, not a chat completion) raises
:class:`JudgeError`.

The confidence of a named result is the method's published agent-level accuracy on Who&When
(GPT-4o, algorithm-generated subset, :data:`PRIORS`): a judge says no calibrated probability of
its own, and a deployment that measured its judge can pass its own figures (``Judge.priors``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import httpx
from pydantic import BaseModel, ConfigDict, ValidationError

from omium.errors import OmiumError
from omium.models.attribution import UNKNOWN, Step

# Bump whenever a prompt below changes: results are only comparable within one version.
PROMPT_VERSION = "who-and-when-judge-1"
METHODS = ("all_at_once", "step_by_step", "binary_search")
# Published agent-level accuracy (%/100) of each method on Who&When's algorithm-generated subset
# with GPT-4o (the figures benchmarks/attribution.py prints beside its own).
PRIORS: Mapping[str, float] = {"all_at_once": 0.543, "step_by_step": 0.352, "binary_search": 0.441}
# The header that carries the prompt version to the provider (and to any proxy's request log).
PROMPT_HEADER = "X-Omium-Judge-Prompt"

SYSTEM_PROMPT = (
    "You analyse the logs of multi-agent systems that failed their task, to find the agent and "
    "the step responsible for the failure. Answer with one JSON object and nothing else."
)
NO_TASK = "(the task was not recorded; infer it from the log)"

ALL_AT_ONCE_PROMPT = """A team of agents failed this task:
{task}

Here is their log. Steps are numbered from 0; each names the agent that acted.

{log}

Which agent made the mistake most directly responsible for the failure, and at which step did \
that agent first make it? If no agent made an obvious mistake, choose the one you judge most \
responsible. Answer with a JSON object:
{{"agent": "<the agent's name as written in the log>", "step": <the step number>, \
"reason": "<why, in one or two sentences>"}}"""

STEP_BY_STEP_PROMPT = """A team of agents failed this task:
{task}

Here is their log up to step {step}. Steps are numbered from 0; each names the agent that acted.

{log}

Is step {step}, by {agent}, the decisive error: a mistake that derails the task and leads to the \
failure? Do not be over-critical: an imperfection the team recovers from is not the decisive \
error. Answer with a JSON object:
{{"decisive": true or false, "reason": "<why, in one or two sentences>"}}"""

BINARY_SEARCH_PROMPT = """A team of agents failed this task:
{task}

Here is a segment of their log, steps {start} to {end}. Each step names the agent that acted.

{log}

The decisive error is the single step most responsible for the failure. Is it more likely in the \
first half of this segment (steps {start} to {mid}) or in the second half (steps {after} to \
{end})? If no step is clearly wrong, choose the half holding the step you judge most \
responsible. Answer with a JSON object:
{{"half": "first" or "second", "reason": "<why, in one or two sentences>"}}"""

# A trailing parenthetical is what a speaker did, not who spoke ("Orchestrator (thought)" is the
# Orchestrator): the rule of omium.importers.agent_of, repeated because models import nothing
# outside omium.models but the error tree.
_SPEAKER_NOTE = re.compile(r"\s*\([^()]*\)\s*$")
_OBJECT = re.compile(r"\{.*\}", re.S)


class JudgeError(OmiumError):
    """The judge's provider failed: an HTTP error, a timeout, or an answer that is not a chat completion."""


@dataclass(frozen=True)
class JudgeResult:
    """What a judge concluded about one failed run.

    ``position`` is the decisive step's position in the steps given (-1 when unknown); ``agent``
    is :data:`UNKNOWN` when the judge named nothing usable (``confidence`` is then 0 and the
    evidence says why).
    """

    agent: str
    position: int
    method: str
    evidence: tuple[str, ...]
    confidence: float
    prompt_version: str = PROMPT_VERSION
    model: str = ""
    calls: int = 0  # chat completions asked for this result
    tokens: int = 0  # tokens they used, as the provider reported them

    @property
    def known(self) -> bool:
        """Whether the judge named an agent and a step of the run."""
        return self.agent != UNKNOWN and self.position >= 0


class _Message(BaseModel):
    content: str | None = None


class _Choice(BaseModel):
    message: _Message


class _Completion(BaseModel):
    """The part of an OpenAI chat completion the judge reads."""

    choices: list[_Choice]
    usage: dict[str, Any] | None = None


class _Culprit(BaseModel):
    model_config = ConfigDict(extra="ignore")
    agent: str
    step: int
    reason: str = ""


class _Verdict(BaseModel):
    model_config = ConfigDict(extra="ignore")
    decisive: bool
    reason: str = ""


class _Half(BaseModel):
    model_config = ConfigDict(extra="ignore")
    half: Literal["first", "second"]
    reason: str = ""


def agent_of(speaker: str) -> str:
    """The agent behind a speaker label: the label without trailing notes in parentheses."""
    name = speaker.strip()
    while (shorter := _SPEAKER_NOTE.sub("", name)) != name and shorter:
        name = shorter
    return name


def _speaker(name: str) -> str:
    return agent_of(name).lower()


def _answer(text: str, schema: type[BaseModel]) -> BaseModel | str:
    """The judge's answer as ``schema``, or why it cannot be read (a string). Models often wrap
    JSON in a code fence or a sentence: the outermost ``{...}`` of the text is read."""
    found = _OBJECT.search(text or "")
    if found is None:
        return f"the judge's answer is not JSON: {_clip(text, 200)!r}"
    try:
        return schema.model_validate(json.loads(found.group(0)))
    except ValueError as error:  # json.JSONDecodeError and pydantic's ValidationError
        if isinstance(error, ValidationError):
            detail = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in error.errors())
        else:
            detail = str(error)
        return f"the judge's answer is not the JSON asked for ({detail}): {_clip(text, 200)!r}"


def _clip(text: str, limit: int) -> str:
    text = text.strip()
    return text if len(text) <= limit else f"{text[:limit]}… [{len(text) - limit} more characters]"


@dataclass
class Judge:
    """An LLM judge behind an OpenAI-compatible chat-completions endpoint.

    Attributes:
        url: the provider's base URL (``https://api.openai.com/v1``, a vLLM or Ollama server's
            ``/v1``); requests go to ``{url}/chat/completions``.
        model: the model to ask.
        key: the API key, sent as a bearer token (none for a local server that needs none).
        method: the default method of :meth:`attribute` (one of :data:`METHODS`).
        timeout: seconds to wait for one answer before :class:`JudgeError`.
        max_calls: chat completions one attribution may ask for (step-by-step stops there).
        max_total_tokens: tokens one attribution may use (as the provider reports them).
        max_tokens: the answer's token limit sent with each request.
        max_step_chars: a step's content is cut to this many characters in a prompt.
        max_prompt_chars: a prompt longer than this is not sent (the result is unknown).
        temperature: sent with each request (``None``: the provider's default, for models that
            accept no other).
        priors: the confidence of a named result per method (default :data:`PRIORS`).
    """

    url: str
    model: str
    key: str | None = field(default=None, repr=False)
    method: str = "all_at_once"
    timeout: float = 60.0
    max_calls: int = 64
    max_total_tokens: int = 400_000
    max_tokens: int = 512
    max_step_chars: int = 4_000
    max_prompt_chars: int = 200_000
    temperature: float | None = 0.0
    priors: Mapping[str, float] = field(default_factory=lambda: dict(PRIORS))

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"unknown judge method {self.method!r}; one of {', '.join(METHODS)}")
        self.url = self.url.rstrip("/")

    @property
    def version(self) -> str:
        """``<model>@<prompt version>``: what a result's model version says."""
        return f"{self.model}@{PROMPT_VERSION}"

    # The methods ---------------------------------------------------------------------------------

    def attribute(self, steps: Sequence[Step], task: str = "", method: str | None = None) -> JudgeResult:
        """The decisive step of a failed run and its agent, by ``method`` (default: :attr:`method`)."""
        chosen = method or self.method
        if chosen not in METHODS:
            raise ValueError(f"unknown judge method {chosen!r}; one of {', '.join(METHODS)}")
        if not steps:
            return _Run(self, chosen, [], "", None).unknown("the run recorded no steps")
        # One connection pool per attribution: its calls share connections, and nothing stays
        # open between runs (a judge needs no closing).
        with httpx.Client(timeout=self.timeout) as client:
            run = _Run(self, chosen, list(steps), task.strip() or NO_TASK, client)
            walk = {"all_at_once": self._all_at_once, "step_by_step": self._step_by_step}
            return walk.get(chosen, self._binary_search)(run)

    def all_at_once(self, steps: Sequence[Step], task: str = "") -> JudgeResult:
        """The whole log in one prompt; the judge names the agent and the step."""
        return self.attribute(steps, task, "all_at_once")

    def step_by_step(self, steps: Sequence[Step], task: str = "") -> JudgeResult:
        """One question per step, in order, until the judge calls a step the decisive error."""
        return self.attribute(steps, task, "step_by_step")

    def binary_search(self, steps: Sequence[Step], task: str = "") -> JudgeResult:
        """Halve the log, ask which half holds the decisive error, descend into it."""
        return self.attribute(steps, task, "binary_search")

    def _all_at_once(self, run: _Run) -> JudgeResult:
        prompt = ALL_AT_ONCE_PROMPT.format(task=run.task, log=run.log(0, len(run.steps)))
        answer = run.ask(prompt, _Culprit)
        if isinstance(answer, str):
            return run.unknown(answer)
        assert isinstance(answer, _Culprit)
        if not 0 <= answer.step < len(run.steps):
            return run.unknown(
                f"the judge named step {answer.step}, outside the run (0-{len(run.steps) - 1})"
            )
        agent = run.agent_named(answer.agent)
        if agent is None:
            known = ", ".join(sorted({s.agent for s in run.steps}))
            return run.unknown(f"the judge named agent {answer.agent!r}, not one of the run's ({known})")
        lines = [f"#{answer.step} by {agent}: {answer.reason.strip() or '(no reason given)'}"]
        if _speaker(run.steps[answer.step].agent) != _speaker(agent):
            lines.append(f"#{answer.step} was spoken by {agent_of(run.steps[answer.step].agent)}")
        return run.found(agent, answer.step, lines)

    def _step_by_step(self, run: _Run) -> JudgeResult:
        for i, step in enumerate(run.steps):
            if run.spent() is not None:
                return run.unknown(f"no decisive step among the first {i} steps, and {run.spent()}")
            prompt = STEP_BY_STEP_PROMPT.format(
                task=run.task, log=run.log(0, i + 1), step=i, agent=step.agent
            )
            answer = run.ask(prompt, _Verdict)
            if isinstance(answer, str):
                return run.unknown(f"at step {i}, {answer}")
            assert isinstance(answer, _Verdict)
            if answer.decisive:
                reason = answer.reason.strip() or "(no reason given)"
                agent = agent_of(step.agent)
                return run.found(agent, i, [f"#{i} by {agent} is the decisive error: {reason}"])
        return run.unknown(f"the judge called none of the {len(run.steps)} steps the decisive error")

    def _binary_search(self, run: _Run) -> JudgeResult:
        start, end = 0, len(run.steps) - 1
        reasons: list[str] = []
        while start < end:
            if run.spent() is not None:
                return run.unknown(f"stopped at steps {start}-{end}: {run.spent()}")
            mid = start + (end - start) // 2
            prompt = BINARY_SEARCH_PROMPT.format(
                task=run.task, log=run.log(start, end + 1), start=start, end=end, mid=mid, after=mid + 1
            )
            answer = run.ask(prompt, _Half)
            if isinstance(answer, str):
                return run.unknown(f"at steps {start}-{end}, {answer}")
            assert isinstance(answer, _Half)
            chosen = (start, mid) if answer.half == "first" else (mid + 1, end)
            reasons.append(
                f"steps {start}-{end}: the {answer.half} half ({chosen[0]}-{chosen[1]}): "
                f"{answer.reason.strip() or '(no reason given)'}"
            )
            start, end = chosen
        agent = agent_of(run.steps[start].agent)
        return run.found(agent, start, [f"#{start} by {agent} is where the search ended", *reasons])

    # HTTP ----------------------------------------------------------------------------------------

    def complete(self, messages: list[dict[str, str]], client: httpx.Client | None = None) -> tuple[str, int]:
        """One chat completion: (the answer's text, tokens used), over ``client`` if given.
        Raises :class:`JudgeError`."""
        body: dict[str, Any] = {"model": self.model, "messages": messages, "max_tokens": self.max_tokens}
        if self.temperature is not None:
            body["temperature"] = self.temperature
        headers = {PROMPT_HEADER: PROMPT_VERSION}
        if self.key:
            headers["Authorization"] = f"Bearer {self.key}"
        where = f"{self.url}/chat/completions"
        try:
            if client is None:
                response = httpx.post(where, json=body, headers=headers, timeout=self.timeout)
            else:
                response = client.post(where, json=body, headers=headers)
        except httpx.TimeoutException:
            raise JudgeError(f"the judge at {where} did not answer within {self.timeout:g}s") from None
        except httpx.HTTPError as error:
            raise JudgeError(f"the judge at {where} could not be reached: {error}") from None
        if response.status_code >= 400:
            raise JudgeError(
                f"the judge at {where} answered HTTP {response.status_code}: {_clip(response.text, 300)}"
            )
        try:
            completion = _Completion.model_validate_json(response.content)
        except ValidationError:
            raise JudgeError(
                f"the judge at {where} answered something that is not a chat completion: "
                f"{_clip(response.text, 300)}"
            ) from None
        if not completion.choices:
            raise JudgeError(f"the judge at {where} answered a chat completion without choices")
        text = completion.choices[0].message.content or ""
        tokens = (completion.usage or {}).get("total_tokens")
        if not isinstance(tokens, int):  # a provider that reports no usage: estimate (4 chars a token)
            tokens = (sum(len(m["content"]) for m in messages) + len(text)) // 4
        return text, tokens


@dataclass
class _Run:
    """One attribution in progress: the run, the budget spent, the result's common fields."""

    judge: Judge
    method: str
    steps: list[Step]
    task: str
    client: httpx.Client | None
    calls: int = 0
    tokens: int = 0

    def log(self, start: int, end: int) -> str:
        """Steps ``start`` to ``end - 1`` as numbered lines (a step that ended in error says so)."""
        lines = []
        for i in range(start, end):
            step = self.steps[i]
            status = " (ended in error)" if step.error else ""
            content = (
                _clip(step.content, self.judge.max_step_chars) if step.content.strip() else "(no content)"
            )
            lines.append(f"Step {i} - {step.agent}{status}: {content}")
        return "\n".join(lines)

    def spent(self) -> str | None:
        """Why no further call may be made, or None."""
        if self.calls >= self.judge.max_calls:
            return f"the budget of {self.judge.max_calls} calls is spent"
        if self.tokens >= self.judge.max_total_tokens:
            return f"the budget of {self.judge.max_total_tokens} tokens is spent ({self.tokens} used)"
        return None

    def ask(self, prompt: str, schema: type[BaseModel]) -> BaseModel | str:
        """The judge's answer to ``prompt`` as ``schema``, or why there is none (a string)."""
        if len(prompt) > self.judge.max_prompt_chars:
            return (
                f"the prompt ({len(prompt)} characters) is over the budget of "
                f"{self.judge.max_prompt_chars} characters; it was not sent"
            )
        if (why := self.spent()) is not None:
            return why
        text, tokens = self.judge.complete(
            [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": prompt}], self.client
        )
        self.calls += 1
        self.tokens += tokens
        return _answer(text, schema)

    def agent_named(self, name: str) -> str | None:
        """The run's agent the judge named (as the run spells it, without speaker notes), or None."""
        wanted = _speaker(name)
        spelt = (agent_of(s.agent) for s in self.steps if _speaker(s.agent) == wanted)
        return next(spelt, None) if wanted else None

    def _result(self, agent: str, position: int, evidence: list[str], confidence: float) -> JudgeResult:
        return JudgeResult(
            agent,
            position,
            self.method,
            tuple(evidence),
            confidence,
            PROMPT_VERSION,
            self.judge.model,
            self.calls,
            self.tokens,
        )

    def unknown(self, why: str) -> JudgeResult:
        return self._result(UNKNOWN, -1, [f"{UNKNOWN}: {why}"], 0.0)

    def found(self, agent: str, position: int, evidence: list[str]) -> JudgeResult:
        confidence = float(self.judge.priors.get(self.method, 0.0))
        note = f"confidence {confidence:.2f}: the method's published agent accuracy, not measured here"
        return self._result(agent, position, [*evidence, note], confidence)


__all__ = [
    "ALL_AT_ONCE_PROMPT",
    "BINARY_SEARCH_PROMPT",
    "METHODS",
    "PRIORS",
    "PROMPT_HEADER",
    "PROMPT_VERSION",
    "STEP_BY_STEP_PROMPT",
    "SYSTEM_PROMPT",
    "Judge",
    "JudgeError",
    "JudgeResult",
    "agent_of",
]
