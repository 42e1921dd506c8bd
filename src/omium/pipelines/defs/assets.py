"""The assets: thin wrappers that read the warehouse, call :mod:`omium.pipelines` / :mod:`omium.models`,
write the derived tables back and check what they wrote (each asset's checks run with it).

Per day (partitioned by the day a run started): normalised spans, run dependency edges, the
cross-run agent graph, step and run features, failure labels. Across days: the failure
classifier (and the classes it assigns), the failure predictor, predictions for recent runs,
and root causes for failed runs.
"""

import datetime as dt
import json
import math
from collections import Counter
from typing import Any

import dagster as dg
import polars as pl

from omium.models import taxonomy
from omium.pipelines import features as feats
from omium.pipelines import labels as labelling
from omium.pipelines import registry, spans
from omium.pipelines import root_causes as explain
from omium.pipelines.defs.resources import WarehouseResource

# The earliest day with data worth partitions: the public failure datasets are from late 2023.
PARTITIONS = dg.DailyPartitionsDefinition(start_date="2023-11-01", end_offset=1)
PREDICTION_KS = (2, 4, 8)
GROUP = "omium"


def _day(context: dg.AssetExecutionContext) -> dt.date:
    return dt.date.fromisoformat(context.partition_key)


def _check(
    name: str, passed: bool, description: str, severity: str = "ERROR", **metadata: Any
) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(
        check_name=name,
        passed=bool(passed),
        severity=dg.AssetCheckSeverity.ERROR if severity == "ERROR" else dg.AssetCheckSeverity.WARN,
        description=description,
        metadata=metadata,
    )


def _specs(asset: str, *names: str) -> list[dg.AssetCheckSpec]:
    return [dg.AssetCheckSpec(name, asset=asset) for name in names]


# Per day -------------------------------------------------------------------------------------------


@dg.asset(
    partitions_def=PARTITIONS,
    group_name=GROUP,
    check_specs=_specs("normalized_spans", "all_spans_normalised", "step_spans_have_agents"),
)
def normalized_spans(context: dg.AssetExecutionContext, warehouse: WarehouseResource) -> dg.MaterializeResult:
    """Spans of the runs that started this day, agent, operation, tool, tokens, provider, session resolved."""
    day = _day(context)
    with warehouse.connect() as wh:
        written = spans.normalise_day(wh, day)
        stats = wh.query_rows(
            """
            SELECT uniqExact(run_id) AS runs,
                   countIf(step_index >= 0 AND agent = '' AND role != 'system') AS anonymous,
                   (SELECT count() FROM otel_traces FINAL WHERE if(RunId != '', RunId, TraceId) IN
                       (SELECT run_id FROM omium_normalized_spans WHERE day = {day:Date})
                       AND Timestamp >= toDateTime64({day:Date}, 9)) AS source_spans
            FROM omium_normalized_spans FINAL WHERE day = {day:Date}
            """,
            {"day": day},
        )[0]
    return dg.MaterializeResult(
        metadata={"spans": written, "runs": int(stats["runs"])},
        check_results=[
            _check(
                "all_spans_normalised",
                written == stats["source_spans"],
                f"{written} normalised of {stats['source_spans']} source spans",
                spans=written,
                source_spans=int(stats["source_spans"]),
            ),
            _check(
                "step_spans_have_agents",
                stats["anonymous"] == 0,
                f"{stats['anonymous']} step spans carry no agent under any convention",
                severity="WARN",
                anonymous=int(stats["anonymous"]),
            ),
        ],
    )


def _state_writers(wh: Any, keys: list[str]) -> dict[str, str]:
    if not keys:
        return {}
    rows = wh.query_rows(
        "SELECT concat(namespace, '/', key) AS k, argMax(writer, version) AS writer FROM omium_shared_state "
        "WHERE concat(namespace, '/', key) IN {keys:Array(String)} GROUP BY k",
        {"keys": keys},
    )
    return {r["k"]: r["writer"] for r in rows}


@dg.asset(
    partitions_def=PARTITIONS,
    group_name=GROUP,
    deps=[normalized_spans],
    check_specs=_specs("run_edges", "edges_join_known_agents"),
)
def run_edges(context: dg.AssetExecutionContext, warehouse: WarehouseResource) -> dg.MaterializeResult:
    """Per-run dependency edges: span parentage, hand-off links, shared-state reads, turn-taking."""
    day = _day(context)
    with warehouse.connect() as wh:
        frame = spans.load_day(wh, day)
        read_keys = sorted(
            {
                n[len(feats.STATE_READ) :]
                for n in frame["span_name"].to_list()
                if n.startswith(feats.STATE_READ)
            }
        )
        rows = feats.run_edges(frame, _state_writers(wh, read_keys))
        feats.insert_rows(wh, "omium_run_edges", rows)
    agents = set(frame["agent"].to_list()) | {"", *(_state_writers_sources(rows))}
    unknown = sorted({r["target"] for r in rows} - agents)
    kinds = Counter(r["kind"] for r in rows)
    return dg.MaterializeResult(
        metadata={"edges": len(rows), **{f"{k}_edges": v for k, v in kinds.items()}},
        check_results=[
            _check(
                "edges_join_known_agents",
                not unknown,
                f"edge targets not among the day's agents: {unknown[:5]}",
            )
        ],
    )


def _state_writers_sources(rows: list[dict[str, Any]]) -> set[str]:
    # A state edge's source may be a writer in another run: it is an agent all the same.
    return {r["source"] for r in rows if r["kind"] == "state"}


@dg.asset(
    partitions_def=PARTITIONS,
    group_name=GROUP,
    deps=[run_edges],
    check_specs=_specs("agent_graph", "error_rates_are_rates"),
)
def agent_graph(context: dg.AssetExecutionContext, warehouse: WarehouseResource) -> dg.MaterializeResult:
    """The cross-run agent graph of the day: runs, calls, errors, latency and tokens per edge."""
    day = _day(context)
    with warehouse.connect() as wh:
        count = feats.agent_edges(wh, day)
        bad = wh.scalar(
            "SELECT countIf(error_rate < 0 OR error_rate > 1 OR errors > calls) FROM omium_agent_edges FINAL "
            "WHERE day = {day:Date}",
            {"day": day},
        )
    return dg.MaterializeResult(
        metadata={"edges": count},
        check_results=[
            _check("error_rates_are_rates", bad == 0, f"{bad} edges with an error rate outside [0, 1]")
        ],
    )


def _finite(rows: list[dict[str, Any]]) -> int:
    return sum(1 for r in rows for v in r["features"].values() if not math.isfinite(v))


@dg.asset(
    partitions_def=PARTITIONS,
    group_name=GROUP,
    deps=[normalized_spans],
    check_specs=_specs("step_features", "step_features_finite"),
)
def step_features(context: dg.AssetExecutionContext, warehouse: WarehouseResource) -> dg.MaterializeResult:
    """Features of every step: its place and speaker in the run, what it says, errors, attempts, latency."""
    day = _day(context)
    with warehouse.connect() as wh:
        rows = feats.step_feature_rows(spans.load_day(wh, day))
        feats.insert_rows(wh, "omium_step_features", rows)
    bad = _finite(rows)
    return dg.MaterializeResult(
        metadata={"steps": len(rows)},
        check_results=[_check("step_features_finite", bad == 0, f"{bad} non-finite step feature values")],
    )


@dg.asset(
    partitions_def=PARTITIONS,
    group_name=GROUP,
    deps=[normalized_spans],
    check_specs=_specs("run_features", "every_run_has_features", "run_features_finite"),
)
def run_features(context: dg.AssetExecutionContext, warehouse: WarehouseResource) -> dg.MaterializeResult:
    """Run features: retries, loops, tool errors, bad hand-offs, conflicts, outliers, tokens, text."""
    day = _day(context)
    with warehouse.connect() as wh:
        frame = spans.load_day(wh, day)
        rows = feats.run_features(frame)
        feats.insert_rows(wh, "omium_run_features", rows)
    runs = frame["run_id"].n_unique() if frame.height else 0
    bad = _finite(rows)
    return dg.MaterializeResult(
        metadata={"runs": len(rows)},
        check_results=[
            _check("every_run_has_features", len(rows) == runs, f"{len(rows)} feature rows for {runs} runs"),
            _check("run_features_finite", bad == 0, f"{bad} non-finite run feature values"),
        ],
    )


@dg.asset(
    partitions_def=PARTITIONS,
    group_name=GROUP,
    deps=[normalized_spans],
    check_specs=_specs("failure_labels", "every_run_labelled", "classes_in_taxonomy"),
)
def failure_labels(context: dg.AssetExecutionContext, warehouse: WarehouseResource) -> dg.MaterializeResult:
    """Failure labels from statuses, guard violations, reviews and imported ground truth, in the taxonomy."""
    day = _day(context)
    with warehouse.connect() as wh:
        rows = labelling.failure_labels(wh, day)
        feats.insert_rows(wh, "omium_failure_labels", rows)
        runs = int(
            wh.scalar(
                "SELECT uniqExact(run_id) FROM omium_normalized_spans FINAL WHERE day = {day:Date}",
                {"day": day},
            )
        )
    allowed = {*taxonomy.CLASSES, taxonomy.UNKNOWN, taxonomy.NONE}
    strays = sorted({r["failure_class"] for r in rows} - allowed)
    classes = Counter(r["failure_class"] for r in rows if r["failed"])
    return dg.MaterializeResult(
        metadata={
            "runs": len(rows),
            "failed": sum(r["failed"] for r in rows),
            **{f"class_{k}": v for k, v in classes.items()},
        },
        check_results=[
            _check("every_run_labelled", len(rows) == runs, f"{len(rows)} labels for {runs} runs"),
            _check("classes_in_taxonomy", not strays, f"classes outside the taxonomy: {strays}"),
        ],
    )


# Across days -----------------------------------------------------------------------------------------


def _labelled_runs(wh: Any) -> pl.DataFrame:
    return wh.query_df(
        """
        SELECT l.run_id AS run_id, l.failed AS failed, l.failure_class AS failure_class,
               f.features AS features, if(g.source != '', g.source, 'omium') AS source
        FROM (SELECT * FROM omium_failure_labels FINAL) AS l
        INNER JOIN (SELECT * FROM omium_run_features FINAL) AS f ON f.run_id = l.run_id
        LEFT JOIN (SELECT run_id, source FROM omium_ground_truth FINAL) AS g ON g.run_id = l.run_id
        ORDER BY run_id
        """
    )


def _as_dict(value: Any) -> dict[str, float]:
    """A Map column as a dict, whichever shape the transport gave it (dict, pairs or key/value structs)."""
    if isinstance(value, dict):
        return value
    return (
        {e["key"]: e["value"] if isinstance(e, dict) else e[1] for e in value}
        if value and isinstance(value[0], dict)
        else dict(value)
    )


def _classified(
    model: Any, version: str, run_ids: list[str], features: list[dict[str, float]], beats: bool
) -> list[dict[str, Any]]:
    """Rows of ``omium_failure_classes``: ``model``'s class of each run, or unknown when the
    classifier does not beat the majority class (it knows nothing the counts do not)."""
    if not run_ids:
        return []
    out = []
    for run_id, p in zip(run_ids, model.predict_proba(features), strict=True):
        best = int(p.argmax())
        out.append(
            {
                "run_id": run_id,
                "failure_class": str(model.classes_[best]) if beats else taxonomy.UNKNOWN,
                "confidence": float(p[best]) if beats else 0.0,
                "model_version": version,
            }
        )
    return out


@dg.asset(
    group_name=GROUP,
    deps=[run_features, failure_labels],
    check_specs=_specs(
        "failure_classifier",
        "classifier_beats_majority",
        "every_failed_run_classified",
        "no_run_classified_by_its_own_model",
    ),
)
def failure_classifier(warehouse: WarehouseResource) -> dg.MaterializeResult:
    """Trains the failure classifier on failed runs of known class; classifies every failed run.

    Its quality is held out per source, as the failure predictor's: each source (``who_and_when``,
    ``tau_bench``, ``omium`` for live runs) is classified by a model fitted on the other sources
    (:func:`omium.models.classifier.evaluate_held_out`), beside always naming that source's most
    common class; the registered model's metrics hold those rows (``held_out``), never an accuracy
    over the sources pooled. With fewer than two sources of labelled classes that is not measurable,
    which the metrics say (``why_not``).

    ``omium_failure_classes`` holds what the classifier derived, never a label: a run of unknown
    class is classified by the model fitted on every run of known class (registered with those
    runs, ``params.training_runs``); a run of known class by a model fitted without it, its
    cross-fitting fold's (``failure_classifier_cross_fit``, with its training runs and the runs it
    classifies): the folds are the sources, reusing the held-out evaluation's models, or with one
    source the stratified folds of :func:`~omium.models.classifier.cross_fit`. Its label stays in
    ``omium_failure_labels`` (and an import's in ``omium_ground_truth``), which readers show beside
    as the annotation. A classifier that does not beat each measured source's majority class, or
    cannot be measured, names no class: its runs are ``unknown`` and its check fails.
    """
    from omium.models.classifier import (
        MODEL_NAME,
        cross_fit,
        evaluate_held_out,
        make_classifier,
        summarise_held_out,
    )

    with warehouse.connect() as wh:
        frame = _labelled_runs(wh).filter(pl.col("failed"))
        known = frame.filter(pl.col("failure_class").is_in(list(taxonomy.CLASSES)))
        known_ids = known["run_id"].to_list()
        x = [_as_dict(v) for v in known["features"].to_list()]
        y = known["failure_class"].to_list()
        sources = known["source"].to_list()
        per_source = dict(sorted(Counter(sources).items()))
        metrics: dict[str, Any] = {
            "evaluation": "held out per source",
            "runs": len(y),
            "classes": dict(sorted(Counter(y).items())),
            "sources": per_source,
        }
        source_models: dict[str, Any] = {}
        try:
            rows = evaluate_held_out(x, y, sources, models=source_models)
            why_not = ""
        except ValueError as exc:
            # One source (live runs only, say) leaves nothing to fit on when it is held out: the
            # quality is not measurable, which is said, not a crash. Any other ValueError is a bug.
            if len(per_source) >= 2:
                raise
            rows, why_not = [], f"not measurable: {exc}"
        metrics["held_out"] = rows
        metrics |= summarise_held_out(rows)
        if why_not:
            metrics["why_not"] = why_not
        # A classifier that does not beat always naming a source's most common class knows nothing
        # there the counts do not, and one that cannot be measured is not known to: its classes are
        # not shown, the runs it would classify are "unknown".
        beats = bool(metrics["beats_majority"])
        # Cross-fitting folds: (name, model fitted without the fold, its training runs, its runs).
        folds: list[tuple[str, Any, list[int], list[int]]] = []
        if len(per_source) >= 2:
            metrics["cross_fit_folds"] = "sources"
            for name, model in source_models.items():
                if model is not None:  # its other sources hold one class: its runs stay unknown
                    test = [i for i, s in enumerate(sources) if s == name]
                    train = [i for i, s in enumerate(sources) if s != name]
                    folds.append((name, model, train, test))
        else:
            # The sources cannot provide folds: stratified folds within the one source, whose
            # accuracy is no figure of the product's (a source is scored by the others).
            metrics["cross_fit_folds"] = "stratified folds within one source"
            stratified = cross_fit(x, y)[1]
            folds = [(f"fold{n}", f.model, f.train, f.test) for n, f in enumerate(stratified, start=1)]
        out: list[dict[str, Any]] = []
        version = ""
        if len(set(y)) >= 2:
            model = make_classifier().fit(x, y)
            saved = registry.save(
                wh,
                warehouse.model_directory(),
                MODEL_NAME,
                model,
                training_rows=len(y),
                metrics=metrics,
                params={"training_runs": known_ids, "training_sources": per_source},
            )
            version = saved.version
            unknown = frame.filter(~pl.col("failure_class").is_in(list(taxonomy.CLASSES)))
            out += _classified(
                model,
                version,
                unknown["run_id"].to_list(),
                [_as_dict(v) for v in unknown["features"].to_list()],
                beats,
            )
        for name, fold_model, train, test in folds:
            scored = [known_ids[i] for i in test]
            saved = registry.save(
                wh,
                warehouse.model_directory(),
                f"{MODEL_NAME}_cross_fit",
                fold_model,
                training_rows=len(train),
                metrics={
                    "fold": name,
                    "evaluation": f"none: it classifies its fold's runs only ({MODEL_NAME})",
                },
                params={
                    "fold": name,
                    "training_runs": [known_ids[i] for i in train],
                    "scores": scored,
                },
            )
            out += _classified(fold_model, saved.version, scored, [x[i] for i in test], beats)
        # A run no model classified (no classifier, or a fold without a model) is written as
        # unknown all the same: the table is keyed by run, so this replaces any older row of it.
        classified = {r["run_id"] for r in out}
        out += [
            {"run_id": r, "failure_class": taxonomy.UNKNOWN, "confidence": 0.0, "model_version": ""}
            for r in frame["run_id"].to_list()
            if r not in classified
        ]
        feats.insert_rows(wh, "omium_failure_classes", out, stamp="classified_at")
        leaks = _scored_by_own_model(wh, out)
    if metrics["measurable"]:
        said = "held-out accuracy per source vs always its majority class: " + ", ".join(
            f"{r['held_out']} {r['accuracy']:.2f} vs {r['majority_accuracy']:.2f}"
            for r in rows
            if r["accuracy"] is not None
        )
        said += "".join(f"; {r['held_out']} not measured ({r['note']})" for r in rows if r["note"])
    else:
        said = str(metrics.get("why_not") or "not measurable: no runs of known class")
    return dg.MaterializeResult(
        metadata={
            "version": version,
            "training_runs": len(y),
            "classified": len(out),
            "cross_fitted": sum(len(f[3]) for f in folds),
            "evaluation": json.dumps(metrics),
            "worst_source": str(metrics["worst_source"] or "not measurable"),
        },
        check_results=[
            _check(
                "classifier_beats_majority",
                beats,
                said + ("" if beats else "; its classes are withheld (class unknown)"),
            ),
            _check(
                "every_failed_run_classified",
                len({r["run_id"] for r in out}) == frame.height,
                f"{len(out)} classes for {frame.height} failed runs",
            ),
            _check(
                "no_run_classified_by_its_own_model",
                not leaks,
                f"{len(leaks)} classes from a model whose recorded training set holds the run: {leaks[:5]}",
            ),
        ],
    )


def _step_frame(wh: Any, run_ids: list[str] | None = None) -> pl.DataFrame:
    where = "AND run_id IN {ids:Array(String)}" if run_ids is not None else ""
    return wh.query_df(
        f"""
        SELECT run_id, step_index, span_id, agent, role, content, tool_calls, status
        FROM omium_normalized_spans FINAL WHERE step_index >= 0 {where}
        ORDER BY run_id, ts, span_id
        """,
        {"ids": run_ids or []} if run_ids is not None else None,
    )


def _turns(run: pl.DataFrame) -> list[Any]:
    from omium.models.prediction import Turn

    return [
        Turn(agent=r["agent"], role=r["role"], content=r["content"], tool_calls=r["tool_calls"])
        for r in run.unique("step_index", keep="first", maintain_order=True).iter_rows(named=True)
    ]


def _json_safe(value: Any) -> Any:
    """``value`` with NaN floats as ``None``: JSON readers (ClickHouse, Grafana, browsers) refuse NaN."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _held_out_summary(rows: list[dict[str, Any]], sources: int | None = None) -> dict[str, Any]:
    """The figure a predictor is judged by: the lowest AUROC of a source left out, or why there is none.

    A source's AUROC counts when its own runs and the other sources' runs (its training set) both
    hold failures and successes; with fewer than two sources having both outcomes nothing is
    measurable (holding out the one such source leaves a training set that only tells sources
    apart). Pooling the sources is never the figure: each source's base rate alone scores there.
    """
    both = [r for r in rows if 0 < r["failed"] < r["runs"]]
    measured = [
        r
        for r in rows
        if r.get("auroc_mean") is not None
        and math.isfinite(r["auroc_mean"])
        and "training runs hold one outcome" not in (r.get("note") or "")
    ]
    if (sources is not None and sources < 2) or len(both) < 2 or not measured:
        why = (
            f"not measurable: {sources} source(s) of labelled runs; a source is scored by the others"
            if sources is not None and sources < 2
            else f"not measurable: {len(both)} source(s) with both outcomes, two are needed"
        )
        return {
            "auroc_min": None,
            "auroc_min_source": None,
            "measured_sources": 0,
            "measurable": False,
            "why_not": why,
        }
    worst = min(measured, key=lambda r: r["auroc_mean"])
    return {
        "auroc_min": worst["auroc_mean"],
        "auroc_min_source": worst["held_out"],
        "measured_sources": len(measured),
        "measurable": True,
        "why_not": "",
    }


def _cross_fit_name(k: int) -> str:
    from omium.models.prediction import MODEL_NAME

    return f"{MODEL_NAME}_k{k}_cross_fit"


def _cross_fit(
    wh: Any,
    warehouse: WarehouseResource,
    k: int,
    prefixes: list[Any],
    y: list[int],
    run_ids: list[str],
    sources: list[str],
    groups: list[Any],
    fitted: dict[str, Any],
) -> dict[str, str]:
    """Registers one model per cross-fitting fold, fitted on the runs outside it; ``{fold: version}``.

    ``fitted`` holds the models :func:`~omium.models.prediction.evaluate_held_out` already fitted
    per source (the same split when the folds are the sources), so they are not fitted again. A
    fold whose complement holds one outcome gets no model: its runs get no risk.
    """
    from omium.models import prediction

    out: dict[str, str] = {}
    for fold, scored in prediction.cross_fit_folds(sources, groups).items():
        inside = set(scored)
        train = [i for i in range(len(y)) if i not in inside]
        if fold in fitted:
            model = fitted[fold]
        elif len({y[i] for i in train}) == 2:
            model = prediction.make_predictor().fit([prefixes[i] for i in train], [y[i] for i in train])
        else:
            model = None
        if model is None:
            continue
        saved = registry.save(
            wh,
            warehouse.model_directory(),
            _cross_fit_name(k),
            model,
            training_rows=len(train),
            metrics={"k": k, "fold": fold, "evaluation": "none: it scores its fold's runs only"},
            params={
                "fold": fold,
                "training_runs": [run_ids[i] for i in train],
                "scores": [run_ids[i] for i in scored],
            },
        )
        out[fold] = saved.version
    return out


@dg.asset(
    group_name=GROUP,
    deps=[normalized_spans, failure_labels],
    check_specs=_specs("failure_predictor", "auroc_above_chance"),
)
def failure_predictor(warehouse: WarehouseResource) -> dg.MaterializeResult:
    """Trains the failure predictor (risk of failing from the first k turns) per k; held out per source.

    Each source (``who_and_when``, ``tau_bench``, ``omium`` for live runs) is scored by a model
    fitted on the others (:func:`omium.models.prediction.evaluate_held_out`); the registered
    model's metrics hold those rows (``held_out``) and the lowest of their AUROCs, never an AUROC
    over the sources pooled (every imported Who&When run is a failure, so telling sources apart
    scored high there). The model itself is fitted on every labelled run; the registry records
    which (``params.training_runs``). So that no run is scored by a model fitted on it, each
    fold of :func:`~omium.models.prediction.cross_fit_folds` (a source, or with one source a
    third of its tasks) gets a model fitted on the other folds, registered as
    ``failure_predictor_k<k>_cross_fit`` with its training runs and the runs it scores; the
    predictor's ``params.cross_fit`` names those versions (a fold whose complement holds one
    outcome gets none). :func:`failure_predictions` scores a training run with its fold's model.
    """
    from omium.models import prediction

    with warehouse.connect() as wh:
        labelled = wh.query_df(
            "SELECT l.run_id AS run_id, l.failed AS failed, "
            "if(g.task_id != '', concat(g.source, ':', g.task_id), l.run_id) AS task, "
            "if(g.source != '', g.source, 'omium') AS source "
            "FROM (SELECT * FROM omium_failure_labels FINAL) AS l "
            "LEFT JOIN (SELECT * FROM omium_ground_truth FINAL) AS g ON g.run_id = l.run_id ORDER BY run_id"
        )
        steps = _step_frame(wh)
        by_run = {run_id: _turns(run) for (run_id,), run in steps.group_by(["run_id"])}
        labelled = labelled.filter(pl.col("run_id").is_in(list(by_run)))
        run_ids = labelled["run_id"].to_list()
        runs = [by_run[r] for r in run_ids]
        y = [int(v) for v in labelled["failed"].to_list()]
        groups = labelled["task"].to_list()
        sources = labelled["source"].to_list()
        per_source = dict(sorted(Counter(sources).items()))
        results: dict[str, Any] = {}
        for k in PREDICTION_KS:
            prefixes = [prediction.first_turns(r, k) for r in runs]
            metrics: dict[str, Any] = {
                "k": k,
                "runs": len(y),
                "failed": sum(y),
                "evaluation": "held out per source",
                "sources": per_source,
            }
            if len(set(y)) == 2:
                fold_models: dict[str, Any] = {}
                try:
                    rows = prediction.evaluate_held_out(
                        runs, y, sources, groups, k=k, seeds=1, models=fold_models
                    )
                    why_not = ""
                except ValueError as exc:
                    # One source (live runs only, say) leaves nothing to fit on when it is held
                    # out: the quality is not measurable, which is said, not a crash. Any other
                    # ValueError is a bug and stays one.
                    if len(per_source) >= 2:
                        raise
                    rows, why_not = [], f"not measurable: {exc}"
                metrics["held_out"] = [{key: _json_safe(v) for key, v in row.items()} for row in rows]
                metrics |= _held_out_summary(rows, len(per_source))
                if why_not:
                    metrics["why_not"] = why_not
                cross_fit = _cross_fit(wh, warehouse, k, prefixes, y, run_ids, sources, groups, fold_models)
                model = prediction.make_predictor().fit(prefixes, y)
                saved = registry.save(
                    wh,
                    warehouse.model_directory(),
                    f"{prediction.MODEL_NAME}_k{k}",
                    model,
                    training_rows=len(y),
                    metrics=metrics,
                    params={
                        "training_runs": run_ids,
                        "training_sources": per_source,
                        "cross_fit": cross_fit,
                    },
                )
                metrics["version"] = saved.version
            else:
                metrics |= _held_out_summary([], len(per_source))
            results[f"k{k}"] = metrics
    k4 = results.get("k4", {})
    auroc = k4.get("auroc_min")
    if auroc is None:
        said = f"AUROC at k=4 held out per source: {k4.get('why_not', 'not measurable')}"
    else:
        said = (
            f"lowest AUROC at k=4 of a source held out: {auroc:.3f} ({k4['auroc_min_source']}); "
            + ", ".join(
                f"{r['held_out']} {r['auroc_mean']:.2f} [{r['auroc_low']:.2f}, {r['auroc_high']:.2f}]"
                for r in k4.get("held_out", [])
                if r.get("auroc_mean") is not None and r.get("auroc_low") is not None
            )
        )
    return dg.MaterializeResult(
        metadata={
            "evaluation": json.dumps(results, default=str),
            "auroc_k4": float("nan") if auroc is None else float(auroc),
            "auroc_k4_source": str(k4.get("auroc_min_source") or "not measurable"),
        },
        check_results=[
            _check(
                # A quality that cannot be measured is not claimed: the check fails (as a warning).
                "auroc_above_chance",
                auroc is not None and auroc > 0.5,
                said,
                severity="WARN",
            )
        ],
    )


class PredictionConfig(dg.Config):
    """Which runs to score: those started in the last ``hours``, or every run."""

    hours: float = 24.0
    all_runs: bool = False


def _scorers(
    wh: Any, version: Any, k: int, run_ids: list[str]
) -> tuple[list[tuple[Any, str, list[str]]], list[str]]:
    """Which model scores which of ``run_ids`` under the registered predictor ``version``, and the
    runs none may score: ``([(model, its version, runs)], skipped)``.

    A run the predictor was fitted on is scored by its cross-fitting fold's model, provided that
    model's recorded training set excludes it; without such a model (a fold whose other runs hold
    one outcome, or a version registered before the registry kept training sets) it is skipped.
    """
    trained = version.trained_on
    if trained is None:
        # Registered before the registry recorded training sets: whether it saw a run is unknown.
        return [], list(run_ids)
    unseen = [r for r in run_ids if r not in trained]
    scorers = [(registry.load(version), version.version, unseen)] if unseen else []
    left = [r for r in run_ids if r in trained]
    for fold_version in dict(version.params.get("cross_fit") or {}).values():
        if not left:
            break
        fold = registry.get(wh, _cross_fit_name(k), fold_version)
        scores, fold_trained = set(fold.params.get("scores") or []), fold.trained_on or frozenset()
        mine = [r for r in left if r in scores and r not in fold_trained]
        if mine:
            scorers.append((registry.load(fold), fold.version, mine))
            left = [r for r in left if r not in set(mine)]
    return scorers, left


@dg.asset(
    group_name=GROUP,
    deps=[failure_predictor],
    check_specs=_specs("failure_predictions", "risks_are_probabilities", "no_run_scored_by_its_own_model"),
)
def failure_predictions(
    context: dg.AssetExecutionContext, config: PredictionConfig, warehouse: WarehouseResource
) -> dg.MaterializeResult:
    """Risk of failure of recent runs from their first k turns, by the latest predictor of each k.

    A run the predictor was fitted on (a labelled run, with ``all_runs`` or once finished) is never
    scored by it: its cross-fitting fold's model, fitted without it, scores it instead (see
    :func:`failure_predictor`); with no such model it gets no risk, counted in ``skipped_in_training_set``.
    """
    from omium.models import prediction

    with warehouse.connect() as wh:
        if config.all_runs:
            ids = None
        else:
            since = dt.datetime.now(dt.UTC) - dt.timedelta(hours=config.hours)
            ids = [
                r["run_id"]
                for r in wh.query_rows(
                    "SELECT DISTINCT run_id FROM omium_normalized_spans WHERE ts >= {since:DateTime64(6)}",
                    {"since": since},
                )
            ]
        steps = _step_frame(wh, ids)
        by_run = {run_id: _turns(run) for (run_id,), run in steps.group_by(["run_id"], maintain_order=True)}
        rows: list[dict[str, Any]] = []
        skipped: dict[int, int] = {}
        cross_fitted: dict[int, int] = {}
        for k in PREDICTION_KS:
            try:
                version = registry.latest(wh, f"{prediction.MODEL_NAME}_k{k}")
            except registry.ModelNotFound:
                continue
            if not by_run:
                break
            scorers, left = _scorers(wh, version, k, list(by_run))
            skipped[k] = len(left)
            cross_fitted[k] = sum(len(runs) for _, v, runs in scorers if v != version.version)
            if left:
                unrecorded = version.trained_on is None
                context.log.info(
                    f"k={k}: {len(left)} runs skipped: "
                    + (
                        f"{version.name} {version.version} did not record its training set (rebuild it)"
                        if unrecorded
                        else f"in the training set of {version.name} {version.version} "
                        "and no model was fitted without them"
                    )
                )
            for model, model_version, run_ids in scorers:
                prefixes = [prediction.first_turns(by_run[r], k) for r in run_ids]
                risks = model.predict_proba(prefixes)[:, 1]
                rows += [
                    {
                        "run_id": r,
                        "model_version": model_version,
                        "k": k,
                        "risk": float(p),
                        "steps_seen": len(s),
                    }
                    for r, p, s in zip(run_ids, risks, prefixes, strict=True)
                ]
        feats.insert_rows(wh, "omium_predictions", rows, stamp="predicted_at")
        leaks = _scored_by_own_model(wh, rows)
    bad = sum(1 for r in rows if not 0.0 <= r["risk"] <= 1.0)
    return dg.MaterializeResult(
        metadata={
            "predictions": len(rows),
            "runs": len(by_run),
            **{f"cross_fitted_k{k}": v for k, v in cross_fitted.items()},
            **{f"skipped_in_training_set_k{k}": v for k, v in skipped.items()},
        },
        check_results=[
            _check("risks_are_probabilities", bad == 0, f"{bad} risks outside [0, 1]"),
            _check(
                "no_run_scored_by_its_own_model",
                not leaks,
                f"{len(leaks)} risks from a model whose recorded training set holds the run: {leaks[:5]}",
            ),
        ],
    )


def _scored_by_own_model(wh: Any, rows: list[dict[str, Any]]) -> list[str]:
    """The runs of ``rows`` whose risk came from a model the registry says was fitted on them."""
    versions = sorted({r["model_version"] for r in rows})
    if not versions:
        return []
    trained = {
        v["model_version"]: set(json.loads(v["params"]).get("training_runs") or [])
        for v in wh.query_rows(
            "SELECT model_version, argMax(params, trained_at) AS params FROM omium_models FINAL "
            "WHERE model_version IN {versions:Array(String)} GROUP BY model_version",
            {"versions": versions},
        )
    }
    return [r["run_id"] for r in rows if r["run_id"] in trained.get(r["model_version"], set())]


class RootCauseConfig(dg.Config):
    """Which failed runs: the given ids (a sensor's new failures), or every failed run."""

    run_ids: list[str] = []


FAILED_RUNS = f"""
SELECT l.run_id AS run_id, l.failure_class AS failure_class, c.failure_class AS assigned,
       g.mistake_agent AS mistake_agent, if(g.run_id != '', g.mistake_step, -1) AS mistake_step,
       g.mistake_reason AS mistake_reason, g.question AS question,
       o.attributes['failure'] AS failure, i.trigger AS trigger, i.message AS incident_message,
       i.position AS position, i.agent AS agent
FROM (SELECT * FROM omium_failure_labels FINAL WHERE failed) AS l
LEFT JOIN ({labelling.INCIDENTS}) AS i ON i.run_id = l.run_id
LEFT JOIN (SELECT * FROM omium_failure_classes FINAL) AS c ON c.run_id = l.run_id
LEFT JOIN (SELECT * FROM omium_ground_truth FINAL) AS g ON g.run_id = l.run_id
LEFT JOIN (SELECT * FROM omium_runs FINAL) AS o ON o.run_id = l.run_id
WHERE empty({{ids:Array(String)}}) OR l.run_id IN {{ids:Array(String)}}
ORDER BY run_id
"""


@dg.asset(
    group_name=GROUP,
    deps=[failure_labels, step_features, failure_classifier],
    check_specs=_specs("root_causes", "every_failed_run_has_a_root_cause", "steps_within_runs"),
)
def root_causes(config: RootCauseConfig, warehouse: WarehouseResource) -> dg.MaterializeResult:
    """For every failed run, the responsible agent and step with an evidence chain (``omium_root_causes``).

    One row per run and method that produced a result: ``runtime_chain`` for a live run's
    incident, else ``attribution_model`` (or ``first_error`` without a model), and the LLM judge's
    ``judge_<method>`` as a row of its own when ``OMIUM_JUDGE_URL`` is set (a provider failure gives
    no judge row: the metadata counts it). Each row has a ``verdict``: ``unknown`` when the method
    named nothing or fell below its threshold; such a row has agent ``''`` and step ``-1``, its best
    guess only in the evidence (see :mod:`omium.pipelines.root_causes`).
    """
    from omium.warehouse.store import recorded_steps

    with warehouse.connect() as wh:
        if config.run_ids:
            for day in {
                r["day"]
                for r in wh.query_rows(
                    "SELECT toDate(min(Timestamp)) AS day FROM otel_traces "
                    "WHERE RunId IN {ids:Array(String)} GROUP BY RunId",
                    {"ids": config.run_ids},
                )
            }:
                spans.normalise_day(
                    wh, day
                )  # a sensor's new failure may be younger than the last daily build
                feats.insert_rows(wh, "omium_failure_labels", labelling.failure_labels(wh, day))
        failed = wh.query_df(FAILED_RUNS, {"ids": config.run_ids})
        truth = failed.filter(pl.col("mistake_step") >= 0)
        training_truth = wh.query_df(
            "SELECT run_id, source, mistake_step FROM omium_ground_truth FINAL WHERE mistake_step >= 0"
        )
        training_steps = (
            _step_frame(wh, training_truth["run_id"].to_list()) if training_truth.height else None
        )
        # Annotations train the model; they are never a run's result. A failed run that is in the
        # training set is attributed by a model fitted without it (cross-fitting), so no result is
        # shown on a run its model was trained on; each registered model records its training set.
        chooser = explain.ModelChooser()
        if training_steps is not None and training_steps.height:
            chooser = explain.ModelChooser.fit(
                training_truth,
                training_steps,
                set(failed["run_id"].to_list()),
                lambda name, model, trained_on, rows: (
                    registry.save(
                        wh,
                        warehouse.model_directory(),
                        name,
                        model,
                        training_rows=rows,
                        metrics={"note": "held-out accuracy per framework: benchmarks/attribution.py"},
                        params={"training_runs": sorted(trained_on)},
                    ).version
                ),
            )
        steps = _step_frame(wh, failed["run_id"].to_list())
        by_run = {run_id: run for (run_id,), run in steps.group_by(["run_id"])}
        # An LLM judge (OMIUM_JUDGE_URL) attributes the runs without a runtime chain as well; its
        # answer is a row of its own (omium_root_causes keeps one row per run and method).
        judging = explain.JudgePass.of(warehouse.settings())
        causes: list[explain.RootCause] = []
        for row in failed.iter_rows(named=True):
            run_id = row["run_id"]
            # The classifier's class (out of fold for a run of known class), never the run's label:
            # a run the classifier has not classified yet (a sensor's new failure) is unknown.
            failure_class = row["assigned"] or taxonomy.UNKNOWN
            run_steps = by_run.get(run_id, pl.DataFrame(schema=steps.schema))
            found: list[explain.RootCause] = []
            if failure := labelling.incident(row):
                found.append(explain.runtime_chain(run_id, failure, recorded_steps(wh, run_id)))
            else:
                model, version = chooser.for_run(run_id)
                found.append(explain.attribute_run(run_id, run_steps, model, version))
                if judging is not None:
                    judged = judging.attribute(run_id, run_steps, row["question"] or "")
                    found.extend([judged] if judged is not None else [])
            causes.extend(
                explain.RootCause(**{**cause.__dict__, "failure_class": failure_class or taxonomy.UNKNOWN})
                for cause in found
            )
        feats.insert_rows(wh, "omium_root_causes", explain.rows(causes), stamp="created_at")
        last = {r: max(run["step_index"].to_list()) for r, run in by_run.items()}
    missing = failed.height - len({c.run_id for c in causes})
    # An unknown result stores step -1 by design: only the steps a method named must be in the run.
    outside = [
        c.run_id for c in causes if c.known and not 0 <= c.step_index <= last.get(c.run_id, c.step_index)
    ]
    methods = Counter(c.method for c in causes)
    unknown = Counter(c.method for c in causes if not c.known)
    return dg.MaterializeResult(
        metadata={
            "failed_runs": failed.height,
            "root_causes": len(causes),
            "annotated_runs": truth.height,
            "cross_fitted_runs": len(chooser.held_out),
            **{f"method_{k}": v for k, v in methods.items()},
            **{f"unknown_{k}": v for k, v in unknown.items()},
            **(judging.metadata() if judging is not None else {}),
        },
        check_results=[
            _check(
                "every_failed_run_has_a_root_cause",
                missing == 0,
                f"{missing} failed runs without a root cause",
            ),
            _check("steps_within_runs", not outside, f"root causes outside their run: {outside[:5]}"),
        ],
    )


ALL_ASSETS = [
    normalized_spans,
    run_edges,
    agent_graph,
    step_features,
    run_features,
    failure_labels,
    failure_classifier,
    failure_predictor,
    failure_predictions,
    root_causes,
]

__all__ = [
    "ALL_ASSETS",
    "PARTITIONS",
    "PredictionConfig",
    "RootCauseConfig",
    "agent_graph",
    "failure_classifier",
    "failure_labels",
    "failure_predictions",
    "failure_predictor",
    "normalized_spans",
    "root_causes",
    "run_edges",
    "run_features",
    "step_features",
]
