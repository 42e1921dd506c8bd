"""``omium demo``: Company X's customer onboarding, a few hundred executions under its policy.

Starts the embedded stack (server + warehouse), runs the onboarding workflow with a scripted
model whose failures a real one has (hallucinated 0% APR, transient tool errors, a stale
hand-off, a race on an order, a high-value offer), lets the policy roll back, retry and pause,
plays the on-call engineer for some paused runs (approve the big offer, fix the prompt, test the
fix, retry from the checkpoint), leaves at least one run awaiting review, and prints a summary.
"""

from __future__ import annotations

import contextlib
import random
import signal
import statistics
import time
import uuid
from concurrent.futures import ThreadPoolExecutor, as_completed
from typing import Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from omium.config import Settings

# How often each scenario happens (the rest of the weight is "ok").
MIX = {
    "transient": 0.12,
    "race": 0.08,
    "flaky_hallucination": 0.08,
    "stale": 0.05,
    "unsupported_claim": 0.05,
    "hallucination": 0.03,
    "high_value": 0.03,
}


def scenarios(count: int, seed: int) -> list[str]:
    """The scenario of each execution: the mix above, with at least one of every kind."""
    rng = random.Random(seed)
    names, weights = ["ok", *MIX], [1 - sum(MIX.values()), *MIX.values()]
    chosen = rng.choices(names, weights, k=count)
    for i, name in enumerate(MIX):  # every failure appears at least once, however small the run
        if name not in chosen and i < count:
            chosen[(i * 7 + 3) % count] = name
    return chosen


def percentile(values: list[float], q: float) -> float:
    """The q-quantile (nearest rank); nan for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def demo(
    executions: int = typer.Option(300, help="Onboarding executions to run."),
    concurrency: int = typer.Option(8, help="Executions in flight at once."),
    seed: int = typer.Option(7, help="Seed of the scenario mix."),
    serve: bool = typer.Option(False, "--serve", help="Keep the server running afterwards (Ctrl-C stops)."),
) -> None:
    """Company X onboarding: hundreds of executions, failures caught, rolled back, retried and reviewed."""
    import omium
    from omium.cli.demo import stack
    from omium.examples.company_x import workflow as company_x
    from omium.recovery import resume, review, supervise, test_fix
    from omium.sdk.guards import register_detector
    from omium.sdk.remote_store import RemoteStore

    if executions < 1 or concurrency < 1:
        raise typer.BadParameter("executions and concurrency must be at least 1")
    settings = Settings.from_env()
    console = Console()
    with stack(settings, console) as (url, local_store, token):
        settings = settings.with_(api_token=token)
        store = local_store or RemoteStore(url, token=token)
        omium.init(store=store)
        register_detector(company_x.UNSUPPORTED_CLAIMS)
        batch = uuid.uuid4().hex[:6]
        plan = scenarios(executions, seed)
        runs = [
            (f"onboard-{batch}-{i:04d}", f"cust-{batch}-{i:04d}", scenario) for i, scenario in enumerate(plan)
        ]
        outcomes: dict[str, Any] = {}
        started = time.perf_counter()

        def execute(run_id: str, customer: str, scenario: str) -> Any:
            company_x.seed_customer(store, customer)
            return supervise(company_x.onboard_customer, customer, scenario, run_id=run_id, store=store)

        with (
            Progress(
                TextColumn("onboarding customers"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                console=console,
            ) as progress,
            ThreadPoolExecutor(concurrency) as pool,
        ):
            task = progress.add_task("onboard", total=len(runs))
            futures = {pool.submit(execute, *run): run for run in runs}
            for future in as_completed(futures):
                outcomes[futures[future][0]] = future.result()
                progress.advance(task)
        elapsed = time.perf_counter() - started
        first = dict(outcomes)  # how each execution went before anyone stepped in

        # The on-call engineer: approve the big offers, fix the prompt of all but one paused run.
        interventions = 0
        paused = [r for r in runs if outcomes[r[0]].status == "paused"]
        kept_for_review = next(
            (r for r in paused if outcomes[r[0]].failure.trigger != "high_value_operation"), None
        )
        fix = {"terms_generator.prompt": company_x.FIXED_PROMPT}
        for run_id, _, _ in paused:
            if kept_for_review is not None and run_id == kept_for_review[0]:
                continue
            if outcomes[run_id].failure.trigger == "high_value_operation":
                review(run_id, "approve", reviewer="risk-officer", reason="limit checked", store=store)
            else:
                if not test_fix(run_id, fix, store=store, reviewer="on-call").passed:
                    continue
                review(
                    run_id,
                    "approve",
                    edits=fix,
                    reviewer="on-call",
                    reason="APR range in the prompt",
                    store=store,
                )
            interventions += 1
            outcomes[run_id] = resume(run_id, store=store)
        _summary(console, company_x, runs, first, outcomes, interventions, elapsed, settings, kept_for_review)
        if serve:
            # A SIGTERM ends the demo like Ctrl-C does: the console beside it is stopped too.
            signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
            companion = _console_process(settings, url)
            console.print(f"serving at {url}; Ctrl-C stops")
            if companion is not None:
                console.print(f"console: {_console_link(settings, kept_for_review)}")
            else:
                console.print("console: not installed here (pip install 'omium[console]')")
            try:
                with contextlib.suppress(KeyboardInterrupt):
                    while True:
                        time.sleep(1)
            finally:
                if companion is not None:
                    companion.terminate()
                    companion.wait(30)
        if local_store is None:
            store.close()


def _console_link(settings: Settings, kept: Any) -> str:
    """The console's address, on the run left awaiting review when there is one (one click)."""
    base = f"http://{settings.host}:{settings.console_port}"
    return f"{base}/recovery?run={kept[0]}" if kept is not None else base


def _console_process(settings: Settings, url: str) -> Any:
    """The console beside the demo's server, when its extra is installed (None otherwise)."""
    import importlib.util
    import os
    import subprocess
    import sys

    if importlib.util.find_spec("streamlit") is None:
        return None
    env = os.environ | {"OMIUM_SERVER_URL": url}
    if settings.api_token:
        env["OMIUM_API_TOKEN"] = settings.api_token
    return subprocess.Popen([sys.executable, "-m", "omium.cli.main", "console"], env=env)


def _summary(
    console: Console,
    company_x: Any,
    runs: list[tuple[str, str, str]],
    first: dict[str, Any],
    outcomes: dict[str, Any],
    interventions: int,
    elapsed: float,
    settings: Settings,
    kept: tuple[str, str, str] | None,
) -> None:
    total = len(runs)
    completed = sum(1 for o in outcomes.values() if o.status == "completed")
    waiting = [r for r, o in outcomes.items() if o.status == "paused"]
    resumed = [o for r, o in outcomes.items() if o is not first[r]]
    rollbacks = sum(o.rollbacks for o in first.values()) + sum(o.rollbacks for o in resumed)
    retries = sum(o.retries for o in first.values())
    incidents = [o for o in first.values() if o.incident]
    recovery = [o.settled_at - o.detected_at for o in incidents if o.settled_at and o.detected_at]
    emails = sum(len(company_x.WORLD.emails_to(customer)) for _, customer, _ in runs)
    sends = sum(company_x.WORLD.send_attempts[customer] for _, customer, _ in runs)
    by_scenario: dict[str, list[str]] = {}
    for run_id, _, scenario in runs:
        by_scenario.setdefault(scenario, []).append(outcomes[run_id].status)
    table = Table("scenario", "executions", "completed", "paused", "failed", title="Company X onboarding")
    for scenario, statuses in sorted(by_scenario.items(), key=lambda kv: -len(kv[1])):
        table.add_row(
            scenario,
            str(len(statuses)),
            str(statuses.count("completed")),
            str(statuses.count("paused")),
            str(statuses.count("failed")),
        )
    console.print(table)
    console.print(
        f"executions: {total} in {elapsed:.1f}s | success: {completed / total:.1%} | "
        f"incidents: {len(incidents)} | rollbacks: {rollbacks} | retries: {retries} | "
        f"human interventions: {interventions} | awaiting review: {len(waiting)}"
    )
    if recovery:
        console.print(
            f"recovery time (detected -> completed or paused): p50 {statistics.median(recovery):.2f}s, "
            f"p99 {percentile(recovery, 0.99):.2f}s (backoff waits of 1-10 s included)"
        )
    console.print(
        f"emails delivered: {emails} for {completed} completed runs ({sends} send calls; none twice)"
    )
    link = _console_link(settings, kept)
    console.print(f"console: omium demo --serve (or omium up), then open {link}", soft_wrap=True)
    if kept is not None:
        app = "omium.examples.company_x.workflow"
        edit = f"--edit 'terms_generator.prompt={company_x.FIXED_PROMPT}'"
        console.print(
            f"awaiting your review: run {kept[0]} ({kept[2]}). Try:\n"
            f"  omium incidents {kept[0]}\n"
            f"  omium review {kept[0]} {edit} --test --app {app}\n"
            f"  omium review {kept[0]} --approve {edit}\n"
            f"  omium worker {app} --once",
            soft_wrap=True,
        )


__all__ = ["MIX", "demo", "percentile", "scenarios"]
