"""Failure prediction: the calibrated risk that a run fails, from its first k turns only.

A run is a sequence of steps, each with an ``agent`` (who spoke), a ``role`` (``system``, ``user``,
``assistant``, ``tool``, ...), its ``content`` and, for a step that calls tools, ``tool_calls`` (the
calls as a JSON list, OpenAI style). The model sees a *prefix* of the run and returns the
probability that the run ends in failure; nothing after the prefix is ever read.

What a turn is — two definitions, chosen with ``unit``:

- ``unit="message"``: a turn is one message after the system prompt — one customer (``user``)
  message, one agent (``assistant``) message or one tool result. The leading ``system`` steps (the
  system prompt, the same for every run of a deployment) are not turns and are not in the prefix.
- ``unit="exchange"``: a turn is one exchange — a customer message plus the agent's messages and
  tool results that follow it, up to (not including) the next customer message. Messages before
  the first customer message (an agent's greeting) belong to the first exchange. A run with no
  customer message at all (agents talking to each other and to tools, as in most multi-agent
  systems) has no exchanges: it falls back to messages.

If a run has fewer than k turns the prefix is the whole run (its turns so far).

Features are generic: nothing in this module knows any one business (issue 18: a predictor that
ships one benchmark's vocabulary does not transfer). All are computed from the prefix alone:

- counted signals (:data:`NUMERIC_NAMES`, log-scaled): steps, messages and characters per speaker,
  distinct agents and hand-offs between them; tool calls — reads, writes (create/update/delete
  verbs), hand-offs to a human — tool errors, empty results, repeated identical calls, and whether
  a write was already made; whether the run has already ended (``TERMINATE``, a hand-off); the
  customer's emotion, pressure, uncertainty, questions and several requests; the agents'
  refusals, apologies, policy talk, confirmation requests, questions, lists, error and retry talk,
  repeated messages, and numbers they state that no earlier step gave (a figure from nowhere);
  identifiers, dates, amounts and numbers mentioned; how much the JSON tool results held;
- a *domain plug-in* (:class:`DomainFeatures`, passed as ``make_predictor(domain=...)``) adds a
  deployment's own counted signals and masks: its intents, codes and end markers. None is
  shipped here; ``benchmarks/prediction_airline.py`` is the tau-bench airline one;
- (``text=True`` only) the agent's words, with ids, dates, amounts and numbers masked, as TF-IDF
  of word 1-2-grams, and the actions and facts of the prefix as tokens: the tools called and,
  from JSON tool results, short values as ``key=value`` and the sizes of lists and objects, with
  personal and place fields left out, since identities do not carry over from one case to another.

The model (:func:`make_predictor`) is a logistic regression with very strong L2 regularisation
(C = 0.003) and balanced class weights on the standardised counted signals; ``text=True`` makes a
soft vote of it (weight 2) with logistic regressions (C = 0.1) on the two TF-IDF channels. Its
scores are then calibrated (:class:`CalibratedRisk`: Platt scaling fitted on out-of-fold scores
of the training runs), so a risk of 0.3 means about three runs in ten fail, not a balanced-class
score. Every scaler, vocabulary and calibrator is fitted in ``fit``, so cross-validation never
learns from a scored fold. :func:`evaluate` is grouped cross-validation; :func:`evaluate_held_out`
scores each source (or domain) left out with bootstrap intervals: the figure that says whether
the model transfers. ``benchmarks/prediction.py`` reports both.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from itertools import pairwise
from typing import Any, Literal, Protocol

import numpy as np

MODEL_NAME = "failure_predictor"

Unit = Literal["exchange", "message"]


class StepLike(Protocol):
    """Anything with the four fields of a step (``omium.importers.Step`` is one)."""

    @property
    def agent(self) -> str: ...

    @property
    def role(self) -> str: ...

    @property
    def content(self) -> str: ...

    @property
    def tool_calls(self) -> str: ...


@dataclass(frozen=True)
class Turn:
    """One step of a run, as the predictor reads it."""

    agent: str
    role: str
    content: str
    tool_calls: str = ""


class DomainFeatures(Protocol):
    """A per-domain plug-in: counted signals and masks one deployment's business adds.

    ``counts`` returns one raw count per name in ``feature_names`` for a prefix (the predictor
    log-scales and standardises them); ``mask`` replaces the domain's particulars (codes, places)
    by placeholders before text features are learnt. An implementation must be picklable (a
    module-level class), since the fitted model, which holds it, is saved in the model registry.
    """

    @property
    def name(self) -> str: ...

    @property
    def feature_names(self) -> tuple[str, ...]: ...

    def counts(self, prefix: Sequence[StepLike]) -> Sequence[float]: ...

    def mask(self, text: str) -> str: ...


# --- prefixes ---------------------------------------------------------------------------------


def is_customer(step: StepLike) -> bool:
    """A message from the customer (the human, or the simulated user) the agent serves."""
    return step.role.lower() == "user"


def is_tool(step: StepLike) -> bool:
    """A tool result (role ``tool``, or an agent named ``tool...``)."""
    return step.role.lower() in ("tool", "function") or step.agent.lower().startswith("tool")


def _body(steps: Sequence[StepLike]) -> list[StepLike]:
    """The run without its leading system prompt."""
    start = 0
    while start < len(steps) and steps[start].role.lower() == "system":
        start += 1
    return list(steps[start:])


def first_turns(steps: Sequence[StepLike], k: int, unit: Unit = "exchange") -> list[StepLike]:
    """The steps of the first ``k`` turns of a run (see the module docstring for what a turn is)."""
    if k < 0:
        raise ValueError(f"k must be >= 0, got {k}")
    if unit not in ("exchange", "message"):
        raise ValueError(f"unit must be 'exchange' or 'message', got {unit!r}")
    body = _body(steps)
    if unit == "message" or not any(is_customer(s) for s in body):
        return body[:k]
    out: list[StepLike] = []
    customers = 0
    for step in body:
        customers += is_customer(step)
        if max(customers, 1) - 1 >= k:  # the step belongs to exchange k+1 or later
            break
        out.append(step)
    return out


# --- reading steps ----------------------------------------------------------------------------

HANDOFF = re.compile(r"transfer|human|escalat|hand_?off", re.I)
# Verbs of tools that change the world, in any business (not the reads: get, search, list, ...).
WRITE_VERBS = frozenset(
    "create update delete remove cancel modify edit write insert send submit book refund issue set "
    "post put patch add approve execute run pay purchase order assign close reset".split()
)
STOP = re.compile(r"\bTERMINATE\b", re.I)  # AG2's convention; a domain plug-in adds its own markers
TOOL_ERROR = re.compile(
    r"^\s*error\b|\berror:|exception|traceback|not found|failed|timed? ?out|invalid|denied", re.I
)
EMPTY_RESULT = re.compile(r"^\s*(\[\s*\]|\{\s*\}|null|none|\"\"|)\s*$", re.I)

CUSTOMER_SIGNALS = {
    "several": re.compile(
        r"\ba (few|couple)\b|several|multiple|\ball (of )?(my|the|them)\b|\bthem\b|some changes|"
        r"\balso\b|another|\bboth\b|as well|\bfirst\b",
        re.I,
    ),
    "emotion": re.compile(r"emergenc|urgent|sick|upset|frustrat|angry|disappoint|unacceptable|!!", re.I),
    "pressure": re.compile(r"lenient|manager|supervisor|insist|must|policy|exception", re.I),
    "information": re.compile(
        r"how (many|much)|what (is|are)|tell me|check (if|whether)|total|\bsum\b", re.I
    ),
    "unknown": re.compile(r"don'?t (remember|know|have)|not sure|forgot|can'?t (remember|find)", re.I),
    "refund": re.compile(r"refund|money back|reimburs|compensat", re.I),
}
AGENT_SIGNALS = {
    "refuse": re.compile(
        r"unable|cannot|can't|not able|unfortunately|not possible|not eligible|not allowed", re.I
    ),
    "confirm": re.compile(r"\bconfirm|would you like (me )?to proceed|shall i proceed|\(yes\)", re.I),
    "apology": re.compile(r"sorry|apolog", re.I),
    "policy": re.compile(r"policy|only (be )?(allowed|possible|eligible)|according to", re.I),
    "list": re.compile(r"^\s*(\d+\.|-|\*)\s", re.M),
    "handoff": re.compile(r"transfer|human agent|representative|over to\b|handing", re.I),
    "offer": re.compile(r"\$\s?\d|\b\d{1,2}:\d{2}\b|\b(am|pm)\b", re.I),
    "error": re.compile(r"\berror|exception|failed|timed? ?out|did not work|doesn'?t work", re.I),
    "retry": re.compile(r"retry|retrying|try again|once more|\bagain\b", re.I),
    "uncertain": re.compile(r"assum|not sure|unknown|unclear|from memory|estimate|guess", re.I),
}
CODE = re.compile(r"\b(?=[A-Za-z0-9_]*\d)(?=[A-Za-z0-9_]*[A-Za-z])[A-Za-z0-9_]{5,}\b")  # ids, codes
DATE = re.compile(
    r"\b(?:jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec)[a-z]*\.? \d{1,2}(?:st|nd|rd|th)?\b"
    r"|\b\d{4}-\d{2}-\d{2}\b",
    re.I,
)
AMOUNT = re.compile(r"\$\s?\d[\d,]*(?:\.\d+)?")
NUMBER = re.compile(r"\d+")
FIGURE = re.compile(r"(?<![\w.])\d[\d,]*(?:\.\d+)?(?![\w])")  # a stated figure, not a digit in a code
NAME = re.compile(r"(?<![.!?]\s)(?<!^)\b[A-Z][a-z]{2,}\b", re.M)  # capitalised words not opening a sentence


def _calls(step: StepLike) -> list[dict[str, Any]]:
    """The tool calls a step makes, as ``{"name", "arguments"}`` (tolerant of odd JSON)."""
    if not step.tool_calls:
        return []
    try:
        raw = json.loads(step.tool_calls)
    except ValueError:
        return []
    out = []
    for call in raw if isinstance(raw, list) else [raw]:
        if not isinstance(call, dict):
            continue
        nested = call.get("function")
        function: dict[str, Any] = nested if isinstance(nested, dict) else call
        name = function.get("name")
        if isinstance(name, str) and name:
            out.append({"name": name, "arguments": str(function.get("arguments") or "")})
    return out


def is_write(tool: str) -> bool:
    """Whether a tool's name says it changes something (a verb of :data:`WRITE_VERBS` among its words)."""
    words = re.sub(r"([a-z])([A-Z])", r"\1_\2", tool).lower()
    return any(w in WRITE_VERBS for w in re.split(r"[^a-z0-9]+", words))


def _tool_name(step: StepLike) -> str:
    """The tool a tool-result step comes from."""
    agent = step.agent
    return agent.split(":", 1)[1] if ":" in agent else agent


def _token(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_") or "unknown"


def _bucket(size: int) -> str:
    return str(size) if size < 4 else ("4-5" if size < 6 else "6+")


PERSONAL = re.compile(
    r"name|mail|address|city|country|province|state|zip|postal|dob|birth|phone|origin|destination|user|_id$|^id$"
)


def _facts(value: Any, key: str, out: list[str], depth: int = 0) -> None:
    """Tokens describing a JSON value's shape: short strings as key=value, sizes of lists/objects."""
    if depth > 6:
        return
    key = _token(re.sub(r"[_\d]+$", "", key)) if key else "root"
    if isinstance(value, dict):
        out.append(f"n_{key}={_bucket(len(value))}")
        for child, item in value.items():
            _facts(item, str(child), out, depth + 1)
    elif isinstance(value, list):
        out.append(f"n_{key}={_bucket(len(value))}")
        for item in value[:50]:
            _facts(item, key, out, depth + 1)
    elif PERSONAL.search(key):
        return  # who and where: identities, which do not carry over to other cases
    elif isinstance(value, bool):
        out.append(f"{key}={str(value).lower()}")
    elif isinstance(value, str) and len(value) <= 24 and not any(c.isdigit() for c in value):
        out.append(f"{key}={_token(value)}")


def _result_shape(tools: Sequence[StepLike]) -> tuple[int, int]:
    """(items in all JSON lists and objects, distinct keys) over the JSON tool results: how much came back."""
    items = 0
    keys: set[str] = set()
    stack: list[Any] = []
    for step in tools:
        try:
            stack.append(json.loads(step.content))
        except ValueError:
            continue
    while stack:
        value = stack.pop()
        if isinstance(value, dict):
            items += len(value)
            keys.update(_token(re.sub(r"[_\d]+$", "", str(k))) for k in value)
            stack.extend(value.values())
        elif isinstance(value, list):
            items += len(value)
            stack.extend(value)
    return items, len(keys)


def _figures(text: str) -> set[str]:
    return {f.replace(",", "") for f in FIGURE.findall(text)}


def unsupported_figures(prefix: Sequence[StepLike]) -> int:
    """Figures the agents state that no earlier step (customer, tool, agent or call) gave.

    A number from nowhere is how hallucinated facts and stale or dropped hand-offs show, in any
    business. Figures under 10 are left out: counts and list positions are said freely.
    """
    seen: set[str] = set()
    unsupported = 0
    for step in prefix:
        said = _figures(step.content)
        if not is_customer(step) and not is_tool(step):
            unsupported += sum(1 for f in said - seen if _big(f))
        seen |= said
        for call in _calls(step):
            seen |= _figures(call["arguments"])
    return unsupported


def _big(figure: str) -> bool:
    try:
        return float(figure) >= 10
    except ValueError:
        return False


# --- features ---------------------------------------------------------------------------------


TIME = re.compile(r"\b\d{1,2}(?::\d{2})+\b|\b\d{1,2} ?(?:am|pm)\b", re.I)
EMAIL = re.compile(r"\b[\w.+-]+@[\w-]+\.[\w.]+\b")
MASKS = (
    (EMAIL, " email "),
    (DATE, " date "),
    (TIME, " time "),
    (AMOUNT, " amount "),
    (CODE, " code "),
    (NUMBER, " num "),
)


def mask(text: str, domain: DomainFeatures | None = None) -> str:
    """Text with the particulars of one case (ids, codes, dates, times, amounts, numbers) as placeholders.

    Vocabularies then learn what kind of thing was said, not which customer or order it was about,
    which would not carry over to other cases. A domain plug-in masks its own particulars first.
    """
    if domain is not None:
        text = domain.mask(text)
    for pattern, placeholder in MASKS:
        text = pattern.sub(placeholder, text)
    return text


def _memo(function: Callable[[Sequence[StepLike]], Any]) -> Callable[[Sequence[StepLike]], Any]:
    """``function`` of one prefix, remembered by the prefix's value (steps are frozen dataclasses).

    Cross-validation and calibration read the same prefixes many times; a step type that cannot
    be hashed is read afresh each time. The last 4,096 prefixes are kept (with their steps).
    """
    cached = lru_cache(maxsize=4096)(lambda prefix: function(prefix))

    def read(prefix: Sequence[StepLike]) -> Any:
        try:
            return cached(tuple(prefix))
        except TypeError:
            return function(prefix)

    return read


def _agent_words(prefix: Sequence[StepLike]) -> str:
    return mask(" \n".join(s.content for s in prefix if not is_customer(s) and not is_tool(s)))


_cached_agent_words = _memo(_agent_words)


def agent_text(prefixes: Sequence[Sequence[StepLike]], domain: DomainFeatures | None = None) -> list[str]:
    """What the agent(s) said in each prefix (not tool results, not the customer), masked."""
    if domain is not None:
        return [
            mask(" \n".join(s.content for s in p if not is_customer(s) and not is_tool(s)), domain)
            for p in prefixes
        ]
    return [_cached_agent_words(p) for p in prefixes]


def action_text(prefixes: Sequence[Sequence[StepLike]]) -> list[str]:
    """The prefix as tokens of actions and facts: tools called, then the shape of JSON tool results."""
    return [_cached_actions(p) for p in prefixes]


def _actions(prefix: Sequence[StepLike]) -> str:
    tokens: list[str] = []
    for step in prefix:
        for call in _calls(step):
            tokens.append(f"call_{_token(call['name'])}")
        if is_tool(step):
            tokens.append(f"result_{_token(_tool_name(step))}")
            if TOOL_ERROR.search(step.content[:200]):
                tokens.append("tool_error")
            try:
                parsed = json.loads(step.content)
            except ValueError:
                continue
            _facts(parsed, "", tokens)
    return " ".join(tokens) or "no_actions"


_cached_actions = _memo(_actions)


NUMERIC_NAMES: tuple[str, ...] = (
    "steps",
    "customer_messages",
    "agent_messages",
    "tool_results",
    "tool_calls",
    "write_calls",
    "read_calls",
    "handoffs",
    "tool_errors",
    "empty_results",
    "repeated_calls",
    "distinct_tools",
    "wrote_already",
    "ended",
    "distinct_agents",
    "agent_switches",
    "customer_chars",
    "first_customer_chars",
    "agent_chars",
    "tool_chars",
    "customer_questions",
    "agent_questions",
    *(f"customer_{name}" for name in CUSTOMER_SIGNALS),
    *(f"agent_{name}" for name in AGENT_SIGNALS),
    "repeated_messages",
    "unsupported_figures",
    "codes",
    "dates",
    "amounts",
    "customer_numbers",
    "customer_names",
    "result_items",
    "result_keys",
)


def _generic_counts(prefix: Sequence[StepLike]) -> list[float]:
    customer = [s.content for s in prefix if is_customer(s)]
    agent = [s for s in prefix if not is_customer(s) and not is_tool(s)]
    tools = [s for s in prefix if is_tool(s)]
    calls = [c for s in prefix for c in _calls(s)]
    names = [c["name"] for c in calls] or [_tool_name(s) for s in tools]
    handoffs = sum(bool(HANDOFF.search(n)) for n in names)
    writes = sum(is_write(n) and not HANDOFF.search(n) for n in names)
    said = " \n".join(customer)
    spoken = " \n".join(s.content for s in agent)
    everything = " \n".join([said, spoken, *(c["arguments"] for c in calls)])
    speakers = [s.agent for s in agent]
    messages = [" ".join(s.content.lower().split()) for s in agent if s.content.strip()]
    call_keys = [(c["name"], c["arguments"]) for c in calls]
    return [
        len(prefix),
        len(customer),
        len(agent),
        len(tools),
        len(names),
        writes,
        len(names) - writes - handoffs,
        handoffs,
        sum(bool(TOOL_ERROR.search(s.content[:200])) for s in tools),
        sum(bool(EMPTY_RESULT.match(s.content)) for s in tools),
        len(call_keys) - len(set(call_keys)),
        len(set(names)),
        int(writes > 0),
        int(bool(STOP.search(spoken)) or handoffs > 0),
        len(set(speakers)),
        sum(a != b for a, b in pairwise(speakers)),
        len(said),
        len(customer[0]) if customer else 0,
        len(spoken),
        sum(len(s.content) for s in tools),
        said.count("?"),
        spoken.count("?"),
        *(len(p.findall(said)) for p in CUSTOMER_SIGNALS.values()),
        *(len(p.findall(spoken)) for p in AGENT_SIGNALS.values()),
        len(messages) - len(set(messages)),
        unsupported_figures(prefix),
        len(set(CODE.findall(everything))),
        len(set(DATE.findall(everything))),
        len(AMOUNT.findall(everything)),
        len(NUMBER.findall(said)),
        len(NAME.findall(said)),
        *_result_shape(tools),
    ]


_cached_counts = _memo(_generic_counts)


@lru_cache(maxsize=4096)
def _cached_domain_counts(domain: DomainFeatures, prefix: tuple[StepLike, ...]) -> tuple[float, ...]:
    return tuple(domain.counts(prefix))


def _domain_counts(domain: DomainFeatures, prefix: Sequence[StepLike]) -> list[float]:
    """A plug-in's counts of a prefix, remembered as the generic ones are (when both hash)."""
    key: Any = domain  # a plug-in that does not hash is read afresh (the TypeError below)
    try:
        return list(_cached_domain_counts(key, tuple(prefix)))
    except TypeError:
        return list(domain.counts(prefix))


def feature_names(domain: DomainFeatures | None = None) -> tuple[str, ...]:
    """The columns of :func:`numeric_features`: the generic ones, then the domain's (prefixed)."""
    extra = tuple(f"{domain.name}_{n}" for n in domain.feature_names) if domain is not None else ()
    return NUMERIC_NAMES + extra


def numeric_features(
    prefixes: Sequence[Sequence[StepLike]], domain: DomainFeatures | None = None
) -> np.ndarray:
    """Counted signals of each prefix, log-scaled (one row per prefix, columns :func:`feature_names`)."""
    names = feature_names(domain)
    rows = []
    for prefix in prefixes:
        row = list(_cached_counts(prefix))
        if domain is not None:
            extra = _domain_counts(domain, prefix)
            if len(extra) != len(domain.feature_names):
                raise ValueError(
                    f"domain {domain.name!r} gave {len(extra)} counts for {len(domain.feature_names)} names"
                )
            row += extra
        rows.append([math.log1p(max(float(v), 0.0)) for v in row])
    return np.asarray(rows, dtype=float).reshape(len(rows), len(names))


def length_features(prefixes: Sequence[Sequence[StepLike]]) -> np.ndarray:
    """The length-only baseline's features: turns' steps in the prefix and characters in them (log)."""
    return np.asarray(
        [[math.log1p(len(p)), math.log1p(sum(len(s.content) for s in p))] for p in prefixes], dtype=float
    ).reshape(len(prefixes), 2)


# --- models -----------------------------------------------------------------------------------

SIGNALS_C = 0.003  # strong L2: 200 runs are only 50 distinct tasks, so little is learnt per feature
TEXT_C = 0.1
CALIBRATION_FOLDS = 3


def _logistic(c: float, seed: int) -> Any:
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(C=c, class_weight="balanced", max_iter=5000, random_state=seed)


def _signals(seed: int, domain: DomainFeatures | None) -> Any:
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import FunctionTransformer, StandardScaler

    return Pipeline(
        [
            ("features", FunctionTransformer(numeric_features, kw_args={"domain": domain})),
            ("scale", StandardScaler()),
            ("model", _logistic(SIGNALS_C, seed)),
        ]
    )


class CalibratedRisk:
    """A classifier whose ``predict_proba`` is calibrated by Platt scaling on out-of-fold scores.

    The base models weigh the classes equally (``class_weight="balanced"``), which ranks well but
    says 0.5 where the base rate is 0.2; the sigmoid fitted on scores of runs the base model did
    not see maps them back to frequencies. The calibration folds are stratified and shuffled by
    ``seed``. With fewer than two runs of a class to calibrate on, the base model's own
    probabilities are kept (``calibrated_`` says which happened). A scikit-learn style estimator:
    ``fit(prefixes, labels)``, ``predict_proba(prefixes)``, ``classes_``; picklable.
    """

    def __init__(self, estimator: Any, folds: int = CALIBRATION_FOLDS, seed: int = 0) -> None:
        self.estimator = estimator
        self.folds = folds
        self.seed = seed

    def fit(self, prefixes: Sequence[Sequence[StepLike]], labels: Any) -> CalibratedRisk:
        """Fit the base model on every run, and the calibration on its out-of-fold scores."""
        from sklearn.base import clone
        from sklearn.calibration import CalibratedClassifierCV
        from sklearn.model_selection import StratifiedKFold

        y = np.asarray(labels, dtype=int)
        if len(set(y.tolist())) < 2:
            raise ValueError("failure prediction needs runs of both outcomes to learn from")
        folds = min(self.folds, int(np.bincount(y).min()))
        x = list(prefixes)
        if folds >= 2:
            cv = StratifiedKFold(n_splits=folds, shuffle=True, random_state=self.seed)
            self.model_ = CalibratedClassifierCV(
                clone(self.estimator), method="sigmoid", cv=cv, ensemble=False
            ).fit(x, y)
        else:
            self.model_ = clone(self.estimator).fit(x, y)
        self.calibrated_ = folds >= 2
        self.classes_ = self.model_.classes_
        return self

    def predict_proba(self, prefixes: Sequence[Sequence[StepLike]]) -> np.ndarray:
        """Calibrated probabilities, columns in ``classes_`` order (class 1 is failure)."""
        return np.asarray(self.model_.predict_proba(list(prefixes)))

    def predict(self, prefixes: Sequence[Sequence[StepLike]]) -> np.ndarray:
        """Failure (1) where the calibrated risk is at least one half."""
        return (self.predict_proba(prefixes)[:, 1] >= 0.5).astype(int)


def make_predictor(
    seed: int = 0, text: bool = False, domain: DomainFeatures | None = None, calibrate: bool = True
) -> Any:
    """An unfitted model of failure risk; ``fit``/``predict_proba`` take lists of prefixes.

    Each prefix is a run's steps already cut to its first k turns (see :func:`first_turns`);
    class 1 is failure. The default is a logistic regression on the generic counted signals, plus
    ``domain``'s when a plug-in is given. With ``text=True`` it is a soft vote of three logistic
    regressions — the counted signals (weight 2), the agent's masked words as TF-IDF and the
    action and fact tokens as TF-IDF — whose vocabularies are learnt in ``fit``, from the training
    runs only. With ``calibrate`` (the default) the scores are calibrated (:class:`CalibratedRisk`).
    Either is one picklable object.
    """
    base = _signals(seed, domain) if not text else _ensemble(seed, domain)
    return CalibratedRisk(base, seed=seed) if calibrate else base


def _ensemble(seed: int, domain: DomainFeatures | None) -> Any:
    from sklearn.ensemble import VotingClassifier
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import FunctionTransformer

    words = Pipeline(
        [
            ("text", FunctionTransformer(agent_text, kw_args={"domain": domain})),
            ("tfidf", TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True)),
            ("model", _logistic(TEXT_C, seed)),
        ]
    )
    actions = Pipeline(
        [
            ("text", FunctionTransformer(action_text)),
            ("tfidf", TfidfVectorizer(token_pattern=r"\S+", min_df=2, sublinear_tf=True)),
            ("model", _logistic(TEXT_C, seed)),
        ]
    )
    return VotingClassifier(
        [("signals", _signals(seed, domain)), ("agent_words", words), ("actions", actions)],
        voting="soft",
        weights=[2, 1, 1],
    )


def make_length_baseline(seed: int = 0) -> Any:
    """The length-only baseline: a logistic regression on the prefix's step count and characters,
    calibrated as the predictor is (so Brier scores compare)."""
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import FunctionTransformer, StandardScaler

    base = Pipeline(
        [
            ("features", FunctionTransformer(length_features)),
            ("scale", StandardScaler()),
            ("model", _logistic(1.0, seed)),
        ]
    )
    return CalibratedRisk(base, seed=seed)


def failure_risk(model: Any, steps: Sequence[StepLike], k: int, unit: Unit = "exchange") -> float:
    """A fitted model's probability that the run fails, read from its first ``k`` turns."""
    return float(model.predict_proba([first_turns(steps, k, unit)])[0, 1])


def brier(labels: Any, risks: Any) -> float:
    """Mean squared difference between the risks and the outcomes (lower is better)."""
    y = np.asarray(labels, dtype=float)
    p = np.asarray(risks, dtype=float)
    return float(np.mean((p - y) ** 2)) if y.size else float("nan")


def evaluate(
    runs_steps: Sequence[Sequence[StepLike]],
    labels: Sequence[int] | Sequence[bool],
    groups: Sequence[Any],
    k: int,
    unit: Unit = "exchange",
    seeds: int = 3,
    make: Any = make_predictor,
    folds: int = 5,
) -> dict[str, Any]:
    """AUROC of ``make(seed)`` from the first ``k`` turns, by repeated grouped cross-validation.

    For each seed the runs are split into ``folds`` folds by group (``GroupKFold`` with shuffling:
    no group is scored by a model fitted on it), a fresh model is fitted on the other folds of
    each fold and scores it; the AUROC of the pooled out-of-fold scores is that seed's figure.
    Returns the mean and standard deviation over seeds (``auroc_mean``, ``auroc_std``), the mean
    AUROC within folds (``fold_auroc_mean``), the AUROC on the runs that had not yet ended
    within their first ``k`` turns (``unfinished_auroc_mean``; ``finished`` counts the others),
    and the Brier score of the out-of-fold risks beside that of the training base rate
    (``brier_mean``, ``base_rate_brier_mean``). Labels are 1 (or True) for failure.

    Groups are what must not leak (a task's trials); sources are not held out here: pooling
    several sources lets a model score their base rates, so per-source transfer is
    :func:`evaluate_held_out`'s figure.
    """
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import GroupKFold

    y = np.asarray(labels, dtype=int)
    group = np.asarray([str(g) for g in groups])
    if not len(runs_steps) == len(y) == len(group):
        raise ValueError("runs_steps, labels and groups must have the same length")
    prefixes = [first_turns(steps, k, unit) for steps in runs_steps]
    finished = np.array([len(p) == len(_body(s)) for p, s in zip(prefixes, runs_steps, strict=True)])
    splits = min(folds, len(set(group)))
    pooled, per_fold, unfinished, briers, base_briers = [], [], [], [], []
    for seed in range(seeds):
        scores = np.zeros(len(y))
        base = np.zeros(len(y))
        for train, test in GroupKFold(n_splits=splits, shuffle=True, random_state=seed).split(
            prefixes, y, group
        ):
            base[test] = float(y[train].mean())
            if len(set(y[train])) < 2:  # nothing to learn: the training base rate for everyone
                scores[test] = base[test]
            else:
                model = make(seed).fit([prefixes[i] for i in train], y[train])
                scores[test] = model.predict_proba([prefixes[i] for i in test])[:, 1]
            if len(set(y[test])) == 2:
                per_fold.append(roc_auc_score(y[test], scores[test]))
        pooled.append(roc_auc_score(y, scores) if len(set(y)) == 2 else float("nan"))
        briers.append(brier(y, scores))
        base_briers.append(brier(y, base))
        open_runs = ~finished
        if len(set(y[open_runs])) == 2:
            unfinished.append(roc_auc_score(y[open_runs], scores[open_runs]))
    return {
        "k": k,
        "unit": unit,
        "runs": len(y),
        "groups": len(set(group)),
        "finished": int(finished.sum()),
        "seeds": seeds,
        "auroc_mean": float(np.mean(pooled)),
        "auroc_std": float(np.std(pooled)),
        "auroc_per_seed": [float(a) for a in pooled],
        "fold_auroc_mean": float(np.mean(per_fold)) if per_fold else float("nan"),
        "unfinished_auroc_mean": float(np.mean(unfinished)) if unfinished else float("nan"),
        "brier_mean": float(np.mean(briers)),
        "base_rate_brier_mean": float(np.mean(base_briers)),
    }


def bootstrap_auroc(
    labels: Any, risks: Any, groups: Sequence[Any], seed: int = 0, resamples: int = 1000
) -> tuple[float, float]:
    """95% percentile interval of the AUROC, resampling whole groups (a task's trials stay together).

    Resamples that draw one outcome only are skipped; (nan, nan) when the runs hold one outcome.
    """
    from sklearn.metrics import roc_auc_score

    y = np.asarray(labels, dtype=int)
    p = np.asarray(risks, dtype=float)
    if len(set(y.tolist())) < 2:
        return float("nan"), float("nan")
    keys = [str(g) for g in groups]
    members: dict[str, list[int]] = {}
    for i, key in enumerate(keys):
        members.setdefault(key, []).append(i)
    blocks = list(members.values())
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(resamples):
        picked = np.concatenate([blocks[j] for j in rng.integers(0, len(blocks), len(blocks))])
        if len(set(y[picked].tolist())) == 2:
            values.append(roc_auc_score(y[picked], p[picked]))
    if not values:
        return float("nan"), float("nan")
    return float(np.quantile(values, 0.025)), float(np.quantile(values, 0.975))


def evaluate_held_out(
    runs_steps: Sequence[Sequence[StepLike]],
    labels: Sequence[int] | Sequence[bool],
    held_out: Sequence[str],
    groups: Sequence[Any],
    k: int,
    unit: Unit = "exchange",
    seeds: int = 3,
    make: Any = make_predictor,
    resamples: int = 1000,
    models: dict[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """Each source (or domain) left out in turn: fitted on the others, scored on it.

    ``held_out[i]`` names the source of run i (``tau_bench:airline``, a framework, a task family);
    ``groups[i]`` what must stay together when resampling (a task's trials). For every source, one
    model per seed is fitted on all runs of the other sources and scores this one's. Returns a
    row per source: ``auroc_mean``/``auroc_std`` over seeds, ``auroc_low``/``auroc_high`` (95%
    bootstrap over groups of the seed-averaged risks), ``brier`` and ``base_rate_brier`` (the
    training base rate as a constant risk), ``mean_risk``, ``flagged`` (share at risk >= 0.5), and
    ``note`` when a figure cannot be had (one outcome in training: the base rate is used; one
    outcome held out: no AUROC, the risks say how much of it is flagged).

    ``models``, when given, receives each source's seed-0 model under the source's name (None when
    its training runs hold one outcome): the model that never saw that source's runs, which a
    caller may score them with (cross-fitting) without fitting it again.

    Raises:
        ValueError: the inputs differ in length, or there are fewer than two sources (nothing to
            fit on when the only one is held out); the message names the sources found.
    """
    from sklearn.metrics import roc_auc_score

    y = np.asarray(labels, dtype=int)
    source = np.asarray([str(s) for s in held_out])
    if not len(runs_steps) == len(y) == len(source) == len(groups):
        raise ValueError("runs_steps, labels, held_out and groups must have the same length")
    names = sorted(set(source.tolist()))
    if len(names) < 2:
        raise ValueError(_too_few_sources(names, source, y))
    prefixes = [first_turns(steps, k, unit) for steps in runs_steps]
    rows = []
    for name in names:
        test = np.flatnonzero(source == name)
        train = np.flatnonzero(source != name)
        notes = []
        per_seed, risks = [], np.zeros((seeds, len(test)))
        base_rate = float(y[train].mean()) if len(train) else float("nan")
        for seed in range(seeds):
            model = None
            if len(set(y[train].tolist())) < 2:
                risks[seed] = base_rate
            else:
                model = make(seed).fit([prefixes[i] for i in train], y[train])
                risks[seed] = model.predict_proba([prefixes[i] for i in test])[:, 1]
            if models is not None and seed == 0:
                models[name] = model
            if len(set(y[test].tolist())) == 2:
                per_seed.append(roc_auc_score(y[test], risks[seed]))
        if len(set(y[train].tolist())) < 2:
            notes.append("training runs hold one outcome: the base rate for every run")
        if len(set(y[test].tolist())) < 2:
            notes.append("held-out runs hold one outcome: no AUROC")
        mean = risks.mean(axis=0)
        low, high = bootstrap_auroc(y[test], mean, [groups[int(i)] for i in test], resamples=resamples)
        rows.append(
            {
                "held_out": name,
                "k": k,
                "unit": unit,
                "runs": len(test),
                "failed": int(y[test].sum()),
                "training_runs": len(train),
                "seeds": seeds,
                "auroc_mean": float(np.mean(per_seed)) if per_seed else float("nan"),
                "auroc_std": float(np.std(per_seed)) if per_seed else float("nan"),
                "auroc_low": low,
                "auroc_high": high,
                "brier": brier(y[test], mean),
                "base_rate_brier": brier(y[test], np.full(len(test), base_rate)),
                "mean_risk": float(mean.mean()) if len(test) else float("nan"),
                "flagged": float((mean >= 0.5).mean()) if len(test) else float("nan"),
                "note": "; ".join(notes),
            }
        )
    return rows


def _too_few_sources(names: list[str], source: np.ndarray, y: np.ndarray) -> str:
    found = ", ".join(
        f"{n} ({int((source == n).sum())} runs, {int(y[source == n].sum())} failed)" for n in names
    )
    return (
        f"{len(names)} source(s) of labelled runs ({found or 'none'}): a held-out evaluation scores "
        "each source by a model fitted on the others, so at least two sources are needed, and at "
        "least two with both outcomes (failures and successes) for an AUROC"
    )


CROSS_FIT_FOLDS = 3


def cross_fit_folds(
    held_out: Sequence[str], groups: Sequence[Any], folds: int = CROSS_FIT_FOLDS
) -> dict[str, list[int]]:
    """Which runs each cross-fitted model scores: ``{fold name: run indices}``.

    A run in a model's training set must not be scored by it: each fold's runs are scored by a
    model fitted on every run outside the fold. With two or more sources the folds are the sources
    (as :func:`evaluate_held_out` splits them, so a run's risk never comes from a model that saw its
    source); with one, the groups (a task's trials stay together) are dealt round ``folds`` folds
    in order of first appearance, named ``fold1`` ... (fewer when there are fewer groups).
    """
    if len(held_out) != len(groups):
        raise ValueError("held_out and groups must have the same length")
    names = sorted({str(s) for s in held_out})
    if len(names) >= 2:
        return {n: [i for i, s in enumerate(held_out) if str(s) == n] for n in names}
    order = list(dict.fromkeys(groups))
    fold_of = {g: i % folds for i, g in enumerate(order)}
    out: dict[str, list[int]] = {}
    for i, g in enumerate(groups):
        out.setdefault(f"fold{fold_of[g] + 1}", []).append(i)
    return dict(sorted(out.items()))


__all__ = [
    "CALIBRATION_FOLDS",
    "CROSS_FIT_FOLDS",
    "MODEL_NAME",
    "NUMERIC_NAMES",
    "CalibratedRisk",
    "DomainFeatures",
    "StepLike",
    "Turn",
    "Unit",
    "action_text",
    "agent_text",
    "bootstrap_auroc",
    "brier",
    "cross_fit_folds",
    "evaluate",
    "evaluate_held_out",
    "failure_risk",
    "feature_names",
    "first_turns",
    "is_customer",
    "is_tool",
    "is_write",
    "length_features",
    "make_length_baseline",
    "make_predictor",
    "mask",
    "numeric_features",
    "unsupported_figures",
]
