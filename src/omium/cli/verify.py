"""``omium verify RUN [--step N ...] [--max-forks K] --app MODULE``: verify a failed run's root
cause by re-executing forks of it (see :mod:`omium.recovery.counterfactual`)."""

from __future__ import annotations

from typing import Any

import typer

from omium.errors import ConfigError


def _cell(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def table(results: list[Any]) -> list[str]:
    """The verdicts as fixed-width lines: step, agent, outcome, forks, calls, how the re-run ended."""
    lines = [f"{'step':>5}  {'agent':<14}  {'outcome':<13}  {'forks':>5}  {'calls':>5}  re-run"]
    for v in results:
        ended = v.evidence[-1] if v.evidence else ""
        if ended.startswith("re-run ("):  # the column says it already
            ended = ended.split(": ", 1)[1]
        lines.append(
            f"{'#' + str(v.step):>5}  {_cell(v.agent, 14):<14}  {v.outcome:<13}  {v.forks:>5}  {v.calls:>5}  "
            f"{_cell(ended, 110)}"
        )
    return lines


def verify(
    run_id: str = typer.Argument(..., help="The failed run (or one paused after a failure)."),
    step: list[int] = typer.Option(
        [], "--step", help="A candidate step position (repeat; default: the runtime chain's candidates)."
    ),
    max_forks: int = typer.Option(3, "--max-forks", min=0, help="Forks the verification may make."),
    max_calls: int = typer.Option(500, "--max-calls", min=0, help="Calls it may re-execute in all."),
    samples: int = typer.Option(1, "--samples", min=1, help="Fresh samples per candidate."),
    edit: list[str] = typer.Option(
        [], "--edit", help="Test this fix instead of a re-sample: AGENT.FIELD=VALUE (repeat)."
    ),
    earliest: bool = typer.Option(
        False,
        "--earliest",
        help="Go on past a verified step to earlier candidates; the earliest verified is the cause.",
    ),
    app: str = typer.Option(None, "--app", help="MODULE[:WORKFLOW] that defines the run's workflow."),
) -> None:
    """Fork the run before each candidate step, re-execute it with the step re-sampled (or with
    --edit), in a scratch store; a step is verified when the failure no longer occurs. Exit 0 when
    one is verified, 1 when none is, 2 on an error (an unknown run, a bad option)."""
    from omium.recovery.counterfactual import Budget, chain_candidates, failure_of, root_cause
    from omium.recovery.counterfactual import verify as run_verify
    from omium.sdk.branching import parse_overrides
    from omium.sdk.runs import init

    edits = parse_overrides(edit)
    store = init()
    try:
        run = store.get_run(run_id)  # an unknown run: NotFoundError, one line and exit 2
        failure = failure_of(store, run)
        if app is None:
            raise ConfigError(
                f"name the module that defines workflow {run.workflow!r}: --app MODULE[:WORKFLOW]"
            )
        from omium.cli.worker import load_workflows

        candidates = list(step) or chain_candidates(store, run_id)
        results = run_verify(
            run_id,
            candidates,
            store=store,
            workflows=load_workflows(app),
            edits=edits,
            budget=Budget(max_forks, max_calls),
            samples=samples,
            earliest=earliest,
            reviewer="cli",
        )
    finally:
        store.close()
    where = f"#{failure.get('position', -1)} {failure.get('step') or 'the workflow'}"
    typer.echo(
        f"run {run_id} failed at {where} ({failure.get('agent') or 'no agent'}): {failure.get('message', '')}"
    )
    typer.echo(f"candidates: {', '.join(f'#{p}' for p in candidates) or 'none'}")
    for line in table(results):
        typer.echo(line)
    found = root_cause(results)
    if found is None:
        if any(v.verified for v in results):
            typer.echo("no cause established: the budget left candidates before the verified step untried")
        else:
            typer.echo("no candidate verified")
        raise typer.Exit(1)
    typer.echo(f"root cause verified: #{found.step} ({found.agent})")
