"""Failure prediction: the risk that a run fails, from its first k turns only.

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

Features, all computed from the prefix alone:

- counted signals (:data:`NUMERIC_NAMES`, log-scaled): steps, messages and characters per speaker;
  tool calls — reads, writes (book/update/cancel...) and hand-offs to a human — tool errors, and
  whether a write was already made; request intents in the customer's words, in the first
  message and in all of them (cancel, change, book, baggage, compensation, refund, cabin,
  insurance, passengers, payment, several requests, constraints such as "cheapest"/"nonstop",
  questions for information, emotion, pressure, "I don't remember my reservation id") and how
  many distinct ones; identifiers mentioned (reservation codes, flight numbers, airports, dates,
  amounts, numbers, names); the agent's refusals, apologies, policy talk, confirmation requests,
  lists, offers (prices, times) and hand-off offers; how much the JSON tool results held; and
  whether the run has already ended (the customer's ``###STOP###``, a hand-off),
- (``text=True`` only) the agent's words, with ids, codes, dates, amounts and numbers masked, as
  TF-IDF of word 1-2-grams, and the actions and facts of the prefix as tokens: the tools called
  and, from JSON tool results, short values as ``key=value`` (``cabin=basic_economy``,
  ``membership=gold``) and the sizes of lists and objects (``n_reservations=3``), with personal
  and place fields left out, since identities do not carry over from one case to another.

The model (:func:`make_predictor`) is a logistic regression with very strong L2 regularisation
(C = 0.003) and balanced class weights on the standardised counted signals; ``text=True`` makes a
soft vote of it (weight 2) with logistic regressions (C = 0.1) on the two TF-IDF channels. Every
scaler and vocabulary is fitted in ``fit``, so cross-validation never learns from a scored fold.
These choices (features, C, the default model) were made by grouped cross-validation on 40 of the
50 tau-bench airline tasks and checked once on the other 10; ``benchmarks/prediction.py`` reports
all 50 — see it for the figures, which stay below the product goal of 0.75 AUROC at k = 4.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
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
WRITE = re.compile(
    r"book|update|cancel|modify|create|send|delete|remove|edit|write|insert|refund|issue", re.I
)
STOP = re.compile(r"###STOP###|TERMINATE\b", re.I)
TOOL_ERROR = re.compile(r"^\s*error\b|\berror:|exception|traceback|not found|failed", re.I)

INTENTS = {
    "cancel": re.compile(r"\bcancel", re.I),
    "change": re.compile(r"\bchang|modif|switch|\bmove\b|adjust|reschedul|rebook|different flight", re.I),
    "book": re.compile(r"\bbook\b|\bbook (a|an|another|the|same)\b|\bbuy\b|purchase|\breserve\b", re.I),
    "baggage": re.compile(r"\bbag|luggage|suitcase", re.I),
    "compensation": re.compile(r"compensat|delay|voucher|miss(ed|ing)? (my|the|an)|inconvenien", re.I),
    "refund": re.compile(r"refund|money back|reimburs", re.I),
    "cabin": re.compile(r"upgrad|downgrad|business class|\bcabin|economy", re.I),
    "insurance": re.compile(r"insur", re.I),
    "passenger": re.compile(
        r"passenger|travell?er|\bname\b|"
        r"my (wife|husband|friend|son|daughter|mom|dad|mother|father|partner|kids?|children|family)",
        re.I,
    ),
    "payment": re.compile(
        r"gift card|certificate|credit card|payment|\bpay\b|balance|\bpoints\b|\bfee", re.I
    ),
    "several": re.compile(
        r"\ba (few|couple)\b|several|multiple|\ball (of )?(my|the|them)\b|\bthem\b|some changes|"
        r"\balso\b|another|\bboth\b|as well|\bfirst\b",
        re.I,
    ),
    "emotion": re.compile(r"emergenc|urgent|sick|upset|frustrat|angry|disappoint|unacceptable|!!", re.I),
    "pressure": re.compile(r"lenient|manager|supervisor|insist|must|policy|exception", re.I),
    "constraint": re.compile(
        r"cheapest|quickest|fastest|shortest|non-?stop|direct|later|earlier|earliest|latest|same day|budget|"
        r"one-way|round[- ]trip|\d ?(am|pm)\b|o'clock",
        re.I,
    ),
    "information": re.compile(
        r"how (many|much)|what (is|are)|tell me|check (if|whether)|total|\bsum\b", re.I
    ),
    "unknown": re.compile(r"don'?t (remember|know|have)|not sure|forgot|can'?t (remember|find)", re.I),
}
AGENT_SIGNALS = {
    "refuse": re.compile(
        r"unable|cannot|can't|not able|unfortunately|not possible|not eligible|not allowed", re.I
    ),
    "confirm": re.compile(r"\bconfirm|would you like (me )?to proceed|shall i proceed|\(yes\)", re.I),
    "apology": re.compile(r"sorry|apolog", re.I),
    "policy": re.compile(r"policy|only (be )?(allowed|possible|eligible)|according to", re.I),
    "list": re.compile(r"^\s*(\d+\.|-|\*)\s", re.M),
    "handoff": re.compile(r"transfer|human agent|representative", re.I),
    "offer": re.compile(r"\$\s?\d|\b\d{1,2}:\d{2}\b|\b(am|pm|est)\b", re.I),
}
RESERVATION = re.compile(r"\b(?=[A-Z0-9]*\d)(?=[A-Z0-9]*[A-Z])[A-Z0-9]{6}\b")
FLIGHT = re.compile(r"\b[A-Z]{2,3}\d{3,4}\b")
AIRPORT = re.compile(r"\b[A-Z]{3}\b")
DATE = re.compile(
    r"\b(?:jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec)[a-z]*\.? \d{1,2}(?:st|nd|rd|th)?\b"
    r"|\b\d{4}-\d{2}-\d{2}\b",
    re.I,
)
AMOUNT = re.compile(r"\$\s?\d[\d,]*(?:\.\d+)?")
NUMBER = re.compile(r"\d+")
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


# --- features ---------------------------------------------------------------------------------


USER_ID = re.compile(r"\b[a-z]+_[a-z]+_\d+\b")
TIME = re.compile(r"\b\d{1,2}(?::\d{2})+\b|\b\d{1,2} ?(?:am|pm)\b", re.I)
MASKS = (
    (USER_ID, " userid "),
    (DATE, " date "),
    (TIME, " time "),
    (AMOUNT, " amount "),
    (FLIGHT, " flightno "),
    (RESERVATION, " rescode "),
    (AIRPORT, " airport "),
    (NUMBER, " num "),
)


def mask(text: str) -> str:
    """Text with the particulars of one case (ids, codes, dates, times, amounts, numbers) as placeholders.

    Vocabularies then learn what kind of thing was said, not which customer or flight it was about,
    which would not carry over to other cases.
    """
    for pattern, placeholder in MASKS:
        text = pattern.sub(placeholder, text)
    return text


def agent_text(prefixes: Sequence[Sequence[StepLike]]) -> list[str]:
    """What the agent(s) said in each prefix (not tool results, not the customer), masked."""
    return [mask(" \n".join(s.content for s in p if not is_customer(s) and not is_tool(s))) for p in prefixes]


def action_text(prefixes: Sequence[Sequence[StepLike]]) -> list[str]:
    """The prefix as tokens of actions and facts: tools called, then the shape of JSON tool results."""
    out = []
    for prefix in prefixes:
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
        out.append(" ".join(tokens) or "no_actions")
    return out


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
    "distinct_tools",
    "wrote_already",
    "ended",
    "customer_chars",
    "first_customer_chars",
    "agent_chars",
    "tool_chars",
    "agent_questions",
    *(f"intent_{name}" for name in INTENTS),
    *(f"first_intent_{name}" for name in INTENTS),
    "distinct_intents",
    *(f"agent_{name}" for name in AGENT_SIGNALS),
    "reservation_codes",
    "flight_numbers",
    "airports",
    "dates",
    "amounts",
    "customer_numbers",
    "customer_names",
    "result_items",
    "result_keys",
)


def numeric_features(prefixes: Sequence[Sequence[StepLike]]) -> np.ndarray:
    """Counted signals of each prefix (one row per prefix, columns named by ``NUMERIC_NAMES``)."""
    rows = []
    for prefix in prefixes:
        customer = [s.content for s in prefix if is_customer(s)]
        agent = [s for s in prefix if not is_customer(s) and not is_tool(s)]
        tools = [s for s in prefix if is_tool(s)]
        calls = [c for s in prefix for c in _calls(s)]
        names = [c["name"] for c in calls] or [_tool_name(s) for s in tools]
        handoffs = sum(bool(HANDOFF.search(n)) for n in names)
        writes = sum(bool(WRITE.search(n)) and not HANDOFF.search(n) for n in names)
        said = " \n".join(customer)
        spoken = " \n".join(s.content for s in agent)
        everything = " \n".join([said, spoken, *(c["arguments"] for c in calls)])
        intents = [len(p.findall(said)) for p in INTENTS.values()]
        row = [
            len(prefix),
            len(customer),
            len(agent),
            len(tools),
            len(names),
            writes,
            len(names) - writes - handoffs,
            handoffs,
            sum(bool(TOOL_ERROR.search(s.content[:200])) for s in tools),
            len(set(names)),
            int(writes > 0),
            int(bool(STOP.search(said)) or handoffs > 0),
            len(said),
            len(customer[0]) if customer else 0,
            len(spoken),
            sum(len(s.content) for s in tools),
            spoken.count("?"),
            *intents,
            *(int(bool(customer) and bool(p.search(customer[0]))) for p in INTENTS.values()),
            sum(i > 0 for i in intents),
            *(len(p.findall(spoken)) for p in AGENT_SIGNALS.values()),
            len(set(RESERVATION.findall(everything))),
            len(set(FLIGHT.findall(everything))),
            len(set(AIRPORT.findall(everything))),
            len(set(DATE.findall(everything))),
            len(AMOUNT.findall(everything)),
            len(NUMBER.findall(said)),
            len(NAME.findall(said)),
            *_result_shape(tools),
        ]
        rows.append([math.log1p(v) for v in row])
    return np.asarray(rows, dtype=float).reshape(len(rows), len(NUMERIC_NAMES))


def length_features(prefixes: Sequence[Sequence[StepLike]]) -> np.ndarray:
    """The length-only baseline's features: turns' steps in the prefix and characters in them (log)."""
    return np.asarray(
        [[math.log1p(len(p)), math.log1p(sum(len(s.content) for s in p))] for p in prefixes], dtype=float
    ).reshape(len(prefixes), 2)


# --- models -----------------------------------------------------------------------------------

SIGNALS_C = 0.003  # strong L2: 200 runs are only 50 distinct tasks, so little is learnt per feature
TEXT_C = 0.1


def _logistic(c: float, seed: int) -> Any:
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(C=c, class_weight="balanced", max_iter=5000, random_state=seed)


def _signals(seed: int) -> Any:
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import FunctionTransformer, StandardScaler

    return Pipeline(
        [
            ("features", FunctionTransformer(numeric_features)),
            ("scale", StandardScaler()),
            ("model", _logistic(SIGNALS_C, seed)),
        ]
    )


def make_predictor(seed: int = 0, text: bool = False) -> Any:
    """An unfitted scikit-learn model of failure risk; ``fit``/``predict_proba`` take lists of prefixes.

    Each prefix is a run's steps already cut to its first k turns (see :func:`first_turns`);
    class 1 is failure. The default is a logistic regression on the counted signals. With
    ``text=True`` it is a soft vote of three logistic regressions — the counted signals (weight 2),
    the agent's masked words as TF-IDF and the action and fact tokens as TF-IDF — whose
    vocabularies are learnt in ``fit``, from the training runs only. Either is one picklable object.
    """
    if not text:
        return _signals(seed)
    from sklearn.ensemble import VotingClassifier
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import FunctionTransformer

    words = Pipeline(
        [
            ("text", FunctionTransformer(agent_text)),
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
        [("signals", _signals(seed)), ("agent_words", words), ("actions", actions)],
        voting="soft",
        weights=[2, 1, 1],
    )


def make_length_baseline(seed: int = 0) -> Any:
    """The length-only baseline: a logistic regression on the prefix's step count and characters."""
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import FunctionTransformer, StandardScaler

    return Pipeline(
        [
            ("features", FunctionTransformer(length_features)),
            ("scale", StandardScaler()),
            ("model", _logistic(1.0, seed)),
        ]
    )


def failure_risk(model: Any, steps: Sequence[StepLike], k: int, unit: Unit = "exchange") -> float:
    """A fitted model's probability that the run fails, read from its first ``k`` turns."""
    return float(model.predict_proba([first_turns(steps, k, unit)])[0, 1])


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
    AUROC within folds (``fold_auroc_mean``), and the AUROC on the runs that had not yet ended
    within their first ``k`` turns (``unfinished_auroc_mean``; ``finished`` counts the others).
    Labels are 1 (or True) for failure.
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
    pooled, per_fold, unfinished = [], [], []
    for seed in range(seeds):
        scores = np.zeros(len(y))
        for train, test in GroupKFold(n_splits=splits, shuffle=True, random_state=seed).split(
            prefixes, y, group
        ):
            if len(set(y[train])) < 2:  # nothing to learn: the training base rate for everyone
                scores[test] = float(y[train].mean())
            else:
                model = make(seed).fit([prefixes[i] for i in train], y[train])
                scores[test] = model.predict_proba([prefixes[i] for i in test])[:, 1]
            if len(set(y[test])) == 2:
                per_fold.append(roc_auc_score(y[test], scores[test]))
        pooled.append(roc_auc_score(y, scores) if len(set(y)) == 2 else float("nan"))
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
    }


__all__ = [
    "MODEL_NAME",
    "NUMERIC_NAMES",
    "StepLike",
    "Turn",
    "Unit",
    "action_text",
    "agent_text",
    "evaluate",
    "failure_risk",
    "first_turns",
    "is_customer",
    "is_tool",
    "length_features",
    "make_length_baseline",
    "make_predictor",
    "mask",
    "numeric_features",
]
