"""Importers: multi-agent runs in public formats (Who&When, tau-bench) as traces, plus any labels.

Each run becomes one trace: a root span for the run and one span per step of its history, with
the agent (``gen_ai.agent.name``), role, step index (``omium.step_index``, the 0-based position in
the source history) and content; every span carries ``omium.run_id`` and the source file's name
as ``omium.source_id``. Labels are optional, as users' own logs have none: a labelled run's
labels become a row of ``omium_ground_truth`` (annotations, never shown as a method's result);
an unlabelled run has no row there. Run ids name the source, the subset (by default the folder
a Who&When file is in, or a tau-bench file's folder) and the file, so two subsets with the same
file names stay two sets of runs; they are derived from the source, so importing the same file
again changes nothing. Speaker labels such as ``Orchestrator (thought)`` are mapped to the agent
(``Orchestrator``), the raw label kept beside it (``omium.speaker``). A file that does not match
its format gets a :class:`DataImportError` naming the file and the field.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omium.errors import DataImportError
from omium.sdk.store import now_us

BASE_TIME_NS = 1_700_000_000 * 10**9  # imported runs carry no clock: steps are one second apart from here
STEP_NS = 10**9


@dataclass(frozen=True)
class Step:
    """One step of an imported history."""

    agent: str
    role: str
    content: str
    tool_calls: str = ""
    speaker: str = ""  # the label the source gave the speaker, when it is not the agent's name


@dataclass(frozen=True)
class ImportedRun:
    """A run read from a public dataset, with its labels."""

    source: str  # "who_and_when" | "tau_bench"
    source_id: str  # the file's name (and the record within it)
    run_id: str
    steps: tuple[Step, ...]
    failed: bool | None  # None: the source does not say (an unlabelled run)
    mistake_agent: str = ""
    mistake_step: int = -1
    mistake_reason: str = ""
    task_id: str = ""
    reward: float = float("nan")
    question: str = ""
    attributes: dict[str, str] = field(default_factory=dict)
    subset: str = ""

    @property
    def labelled(self) -> bool:
        """Whether the source labelled the run (an outcome or a decisive step)."""
        return self.failed is not None or self.mistake_step >= 0 or bool(self.mistake_agent)


# A trailing parenthetical is what the speaker did, not who spoke: "Orchestrator (thought)",
# "Orchestrator (-> WebSurfer)" are the Orchestrator.
_SPEAKER_NOTE = re.compile(r"\s*\([^()]*\)\s*$")


def agent_of(speaker: str) -> str:
    """The agent behind a speaker label (the label without trailing notes in parentheses)."""
    name = speaker.strip()
    while (shorter := _SPEAKER_NOTE.sub("", name)) != name and shorter:
        name = shorter
    return name


def _subset_name(text: str) -> str:
    """A subset name fit for a run id (no ':' inside)."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_") or "default"


def _need(record: dict[str, Any], key: str, kind: type | tuple[type, ...], where: str) -> Any:
    if key not in record:
        raise DataImportError(f"{where}: missing field {key!r}")
    value = record[key]
    if not isinstance(value, kind):
        names = " or ".join(k.__name__ for k in (kind if isinstance(kind, tuple) else (kind,)))
        raise DataImportError(f"{where}: field {key!r} must be {names}, got {type(value).__name__}")
    return value


def _load_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except OSError as error:
        raise DataImportError(f"{path}: cannot read it: {error.strerror or error}") from None
    except ValueError as error:
        raise DataImportError(f"{path}: not JSON: {error}") from None


def read_who_and_when(directory: Path, subset: str | None = None) -> list[ImportedRun]:
    """The Who&When runs in ``directory`` (one JSON object per ``*.json`` file); ``subset`` names
    them in run ids (default: the directory's name)."""
    if not directory.is_dir():
        raise DataImportError(f"{directory}: not a directory of Who&When JSON files")
    files = sorted(directory.glob("*.json"), key=lambda p: (len(p.stem), p.stem))
    if not files:
        raise DataImportError(f"{directory}: no *.json files")
    name = subset if subset is not None else directory.resolve().name
    return [who_and_when_run(path, name) for path in files]


def who_and_when_run(path: Path, subset: str | None = None) -> ImportedRun:
    """One Who&When file (labels optional); ``subset`` as for :func:`read_who_and_when`."""
    record = _load_json(path)
    where = str(path)
    if not isinstance(record, dict):
        raise DataImportError(f"{where}: expected a JSON object")
    history = _need(record, "history", list, where)
    steps = []
    for index, entry in enumerate(history):
        at = f"{where}: history[{index}]"
        if not isinstance(entry, dict):
            raise DataImportError(f"{at}: expected an object with content, role and name")
        content = _need(entry, "content", str, at)
        name = entry.get("name") or entry.get("role") or ""
        if not isinstance(name, str) or not name:
            raise DataImportError(f"{at}: missing field 'name' (the speaking agent)")
        agent = agent_of(name) or name
        speaker = name if agent != name else ""
        steps.append(Step(agent=agent, role=str(entry.get("role", "")), content=content, speaker=speaker))
    mistake_step = -1
    if "mistake_step" in record:
        raw_step = _need(record, "mistake_step", (str, int), where)
        try:
            mistake_step = int(raw_step)
        except ValueError:
            raise DataImportError(
                f"{where}: field 'mistake_step' must be a step index, got {raw_step!r}"
            ) from None
        if not 0 <= mistake_step < len(steps):
            raise DataImportError(
                f"{where}: field 'mistake_step' {mistake_step} is outside history (0-{len(steps) - 1})"
            )
    mistake_agent = agent_of(_need(record, "mistake_agent", str, where)) if "mistake_agent" in record else ""
    if "is_correct" in record:
        failed: bool | None = not bool(_need(record, "is_correct", (bool, int), where))
    else:
        # Who&When's annotated runs are failures; a file with a decisive step says so too.
        failed = True if mistake_step >= 0 or mistake_agent else None
    question_id = str(record.get("question_ID") or path.stem)
    name = _subset_name(subset if subset is not None else path.resolve().parent.name)
    return ImportedRun(
        source="who_and_when",
        source_id=path.name,
        run_id=f"who_and_when:{name}:{path.stem}",
        steps=tuple(steps),
        failed=failed,
        mistake_agent=mistake_agent,
        mistake_step=mistake_step,
        mistake_reason=str(record.get("mistake_reason", "")),
        task_id=question_id,
        question=str(record.get("question", "")),
        attributes={"level": str(record.get("level", "")), "question_id": question_id},
        subset=name,
    )


def read_tau_bench(path: Path, subset: str | None = None) -> list[ImportedRun]:
    """The tau-bench trajectories in ``path`` (a JSON list of runs; the reward, their label, is
    optional); ``subset`` names them in run ids (default: the file's folder)."""
    records = _load_json(path)
    name = _subset_name(subset if subset is not None else path.resolve().parent.name)
    if not isinstance(records, list):
        raise DataImportError(f"{path}: expected a JSON list of runs")
    runs = []
    for index, record in enumerate(records):
        where = f"{path}: [{index}]"
        if not isinstance(record, dict):
            raise DataImportError(f"{where}: expected an object")
        task = _need(record, "task_id", int, where)
        trial = _need(record, "trial", int, where)
        reward = float(_need(record, "reward", (int, float), where)) if "reward" in record else float("nan")
        steps = []
        for position, message in enumerate(_need(record, "traj", list, where)):
            at = f"{where}.traj[{position}]"
            if not isinstance(message, dict):
                raise DataImportError(f"{at}: expected a message object")
            role = _need(message, "role", str, at)
            agent = {"assistant": "airline_agent", "user": "customer", "system": "system"}.get(role, "")
            if role == "tool":
                agent = f"tool:{message.get('name') or 'unknown'}"
            calls = message.get("tool_calls") or []
            steps.append(
                Step(
                    agent=agent or role,
                    role=role,
                    content=str(message.get("content") or ""),
                    tool_calls=json.dumps(calls) if calls else "",
                )
            )
        runs.append(
            ImportedRun(
                source="tau_bench",
                source_id=f"{path.name}#{index}",
                run_id=f"tau_bench:{name}:{path.stem}:{task}:{trial}",
                steps=tuple(steps),
                failed=None if reward != reward else reward < 1.0,
                task_id=str(task),
                reward=reward,
                attributes={"trial": str(trial)},
                subset=name,
            )
        )
    return runs


def _id(text: str, size: int) -> int:
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:size], "big") or 1


def spans(run: ImportedRun) -> Iterator[dict[str, Any]]:
    """The run as span rows (root first), with ids derived from the run so re-imports collapse."""
    trace = f"{_id(run.run_id, 16):032x}"
    root = f"{_id(run.run_id + '/root', 8):016x}"
    end = BASE_TIME_NS + STEP_NS * max(1, len(run.steps))
    common = {
        "omium.run_id": run.run_id,
        "omium.source_id": run.source_id,
        "omium.source": run.source,
        "omium.subset": run.subset,
    }
    yield {
        "trace_id": trace,
        "span_id": root,
        "parent_span_id": "",
        "name": f"invoke_workflow {run.source}",
        "start_ns": BASE_TIME_NS,
        "end_ns": end,
        "error": bool(run.failed),
        "attributes": {
            **common,
            "gen_ai.operation.name": "invoke_workflow",
            "gen_ai.workflow.name": run.source,
            **{f"omium.{k}": v for k, v in run.attributes.items()},
        },
    }
    for index, step in enumerate(run.steps):
        attributes = {
            **common,
            "gen_ai.operation.name": "invoke_agent",
            "gen_ai.agent.name": step.agent,
            "omium.agent_key": step.agent.lower(),  # names vary in case across sets: fold it
            "omium.role": step.role,
            "omium.step_index": str(index),
            "omium.content": step.content,
        }
        if step.tool_calls:
            attributes["omium.tool_calls"] = step.tool_calls
        if step.speaker:
            attributes["omium.speaker"] = step.speaker
        yield {
            "trace_id": trace,
            "span_id": f"{_id(f'{run.run_id}/{index}', 8):016x}",
            "parent_span_id": root,
            "name": f"invoke_agent {step.agent}",
            "start_ns": BASE_TIME_NS + STEP_NS * index,
            "end_ns": BASE_TIME_NS + STEP_NS * (index + 1),
            "error": False,
            "attributes": attributes,
        }


TRACE_COLUMNS = [
    "Timestamp",
    "TraceId",
    "SpanId",
    "ParentSpanId",
    "SpanName",
    "SpanKind",
    "ServiceName",
    "ResourceAttributes",
    "SpanAttributes",
    "Duration",
    "StatusCode",
]
TRUTH_COLUMNS = [
    "run_id",
    "source",
    "source_id",
    "failed",
    "mistake_agent",
    "mistake_step",
    "mistake_reason",
    "task_id",
    "reward",
    "question",
    "imported_at",
]


def write(warehouse: Any, runs: Iterable[ImportedRun], batch: int = 5_000) -> dict[str, int]:
    """Insert the runs' spans into ``otel_traces`` and the labels of labelled runs into
    ``omium_ground_truth``; counts of runs, spans and labelled runs."""
    import datetime as dt

    rows: list[list[Any]] = []
    truth: list[list[Any]] = []
    counts = {"runs": 0, "spans": 0, "labelled": 0}

    def flush() -> None:
        if rows:
            warehouse.insert("otel_traces", [list(c) for c in zip(*rows, strict=True)], TRACE_COLUMNS)
            rows.clear()

    for run in runs:
        counts["runs"] += 1
        for span in spans(run):
            rows.append(
                [
                    dt.datetime.fromtimestamp(span["start_ns"] / 1e9, dt.UTC),
                    span["trace_id"],
                    span["span_id"],
                    span["parent_span_id"],
                    span["name"],
                    "Internal",
                    f"omium-import-{run.source}",
                    {"service.name": f"omium-import-{run.source}"},
                    span["attributes"],
                    span["end_ns"] - span["start_ns"],
                    "Error" if span["error"] else "Unset",
                ]
            )
            counts["spans"] += 1
            if len(rows) >= batch:
                flush()
        if not run.labelled:
            continue
        counts["labelled"] += 1
        truth.append(
            [
                run.run_id,
                run.source,
                run.source_id,
                bool(run.failed),
                run.mistake_agent,
                run.mistake_step,
                run.mistake_reason,
                run.task_id,
                run.reward,
                run.question,
                dt.datetime.fromtimestamp(now_us() / 1e6, dt.UTC),
            ]
        )
    flush()
    if truth:
        warehouse.insert("omium_ground_truth", [list(c) for c in zip(*truth, strict=True)], TRUTH_COLUMNS)
    return counts


__all__ = [
    "ImportedRun",
    "Step",
    "agent_of",
    "read_tau_bench",
    "read_who_and_when",
    "spans",
    "who_and_when_run",
    "write",
]
