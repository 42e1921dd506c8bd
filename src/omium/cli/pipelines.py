"""``omium pipelines build``: materialise every pipeline asset once, without a Dagster daemon.

The same assets ``omium up`` schedules under Dagster, run in this process: the daily assets for
every day that has spans (or the days given), then the models, predictions and root causes. A
notebook or CI job uses this to have the derived tables filled before it reads them.
"""

from __future__ import annotations

import datetime as dt

import typer

from omium.errors import OmiumError

app = typer.Typer(help="Build the derived tables: features, labels, models, predictions, root causes.")


@app.command("build")
def build(
    day: list[str] = typer.Option(
        None, "--day", help="YYYY-MM-DD to build (repeatable; default every day with spans)."
    ),
    models: bool = typer.Option(
        True, "--models/--no-models", help="Also train the models and explain failures."
    ),
) -> None:
    """Materialise the daily assets for each day, then the models, predictions and root causes."""
    import dagster as dg
    from rich.progress import Progress

    from omium.pipelines import spans
    from omium.pipelines.defs import assets
    from omium.pipelines.defs.resources import WarehouseResource

    resource = WarehouseResource()
    try:
        days = [dt.date.fromisoformat(d) for d in day] if day else None
    except ValueError as exc:
        raise OmiumError(f"--day takes YYYY-MM-DD: {exc}") from exc
    if days is None:
        with resource.connect() as wh:
            days = spans.days_with_spans(wh)
    if not days:
        raise OmiumError("the warehouse has no spans yet: run `omium demo` or `omium import ...` first")
    resources = {"warehouse": resource}
    quiet = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}  # progress is shown here
    daily = [a for a in assets.ALL_ASSETS if a.partitions_def is not None]
    with Progress(transient=True) as progress:
        task = progress.add_task("daily assets", total=len(days))
        for each in days:
            progress.update(task, description=f"daily assets {each}")
            result = dg.materialize(
                daily, partition_key=str(each), resources=resources, run_config=quiet, raise_on_error=False
            )
            _report(result, f"daily assets {each}")
            progress.advance(task)
    if models:
        rest = [a for a in assets.ALL_ASSETS if a.partitions_def is None]
        config = {**quiet, "ops": {"failure_predictions": {"config": {"all_runs": True}}}}
        result = dg.materialize(rest, resources=resources, run_config=config, raise_on_error=False)
        _report(result, "models, predictions and root causes")


def _report(result: object, what: str) -> None:
    checks = result.get_asset_check_evaluations()  # type: ignore[attr-defined]
    failing = [
        f"{c.asset_key.to_user_string()}.{c.check_name}: {c.description}" for c in checks if not c.passed
    ]
    if not result.success:  # type: ignore[attr-defined]
        failure = next((e for e in result.all_events if e.is_step_failure), None)  # type: ignore[attr-defined]
        detail = failure.step_failure_data.error.message.strip() if failure else "see the Dagster log above"
        raise OmiumError(f"{what} failed: {detail}")
    typer.echo(f"{what}: {len(checks) - len(failing)}/{len(checks)} checks passed")
    for line in failing:
        typer.echo(f"  check failed: {line}")
