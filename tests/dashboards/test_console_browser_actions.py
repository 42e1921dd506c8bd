"""Operator actions in a real browser (issue 17, item 4): headless Debian chromium driven by
Playwright against `omium demo --serve` (the harness of test_console_browser.py, with a worker that
hosts a slow workflow too). Pause and Resume of a slow run beside the demo's, and Rollback of a
completed demo run to a checkpoint of the operator's choosing, on one stack started once for the
module. Screenshots: ``test-artifacts/console/8-pause-resume.png`` and
``10-rollback-completed.png``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from omium.recovery.worker import submit
from omium.sdk.remote_store import RemoteStore
from tests.conftest import free_port
from tests.dashboards.test_console_browser import (
    ARTIFACTS,
    ROOT,
    browser_page,
    console_up,
    stop_all,
    wait_for,
)

TOKEN = "browser-token"
STEPS = 200  # 0.25 s each: the run is still running when the browser clicks Pause


@pytest.fixture(scope="module")
def demo_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """`omium demo --serve` (server, warehouse, console) and one worker hosting the demo's and the
    slow workflow, through the server's API (it hears of a pause at its lease's renewals). Started
    once for the module's tests: each acts on runs of its own."""
    tmp_path = tmp_path_factory.mktemp("actions")
    http_port, console_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("OMIUM_")} | {
        "OMIUM_HOME": str(tmp_path / "home"),
        "OMIUM_HTTP_PORT": str(http_port),
        "OMIUM_GRPC_PORT": "-1",
        "OMIUM_SERVER_URL": f"http://127.0.0.1:{http_port}",
        "OMIUM_API_TOKEN": TOKEN,
        "OMIUM_CONSOLE_PORT": str(console_port),
        "OMIUM_TEST_LEDGER": str(tmp_path / "ledger.jsonl"),
        "PYTHONPATH": str(ROOT),
        "COLUMNS": "200",
    }
    logs = tmp_path / "logs"
    logs.mkdir()
    procs: list[subprocess.Popen[bytes]] = []

    def start(name: str, *args: str, home: str = "") -> None:
        with open(logs / f"{name}.log", "wb") as log:  # the child keeps its own descriptor
            procs.append(
                subprocess.Popen(
                    [sys.executable, "-m", "omium.cli.main", *args],
                    env=env | ({"OMIUM_HOME": home} if home else {}),
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    cwd=ROOT,
                )
            )

    try:
        start("demo", "demo", "--executions", "8", "--concurrency", "4", "--serve")
        wait_for(lambda: "serving at" in (logs / "demo.log").read_text(errors="replace"), 240, "the demo")
        start(
            "worker", "worker", "tests.dashboards.slow_and_demo", "--lease", "1.5", home=str(tmp_path / "w")
        )
        url = f"http://127.0.0.1:{console_port}"

        wait_for(lambda: console_up(url), 120, "the console")
        yield {"url": url, "server": env["OMIUM_SERVER_URL"], "ledger": env["OMIUM_TEST_LEDGER"]}
    finally:
        stop_all(procs)


@pytest.mark.integration
def test_pause_a_running_run_and_resume_it_in_the_browser(demo_stack: dict[str, str]) -> None:
    from playwright.sync_api import expect

    ledger = Path(demo_stack["ledger"])
    calls = ledger.with_suffix(".calls")
    store = RemoteStore(demo_stack["server"], token=TOKEN)
    try:
        submit(store, "slow_order", "browser-order", STEPS, run_id="slow-browser")
        wait_for(lambda: calls.exists() and len(calls.read_text().splitlines()) >= 2, 120, "the run to start")
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        with browser_page() as page:
            page.goto(f"{demo_stack['url']}/run?run=slow-browser")
            expect(page.get_by_text("slow_order · running")).to_be_visible()
            page.get_by_role("button", name="Pause").click()
            expect(page.get_by_text("will pause at its next recorded call")).to_be_visible()
            wait_for(lambda: store.get_run("slow-browser").status == "paused", 60, "the run to pause")
            executed = len(calls.read_text().splitlines())
            assert executed == len(store.steps("slow-browser")) < STEPS  # nothing ran past the pause
            page.reload()
            expect(page.get_by_text("slow_order · paused")).to_be_visible()
            expect(page.get_by_text("Paused by console")).to_be_visible()
            expect(page.get_by_role("button", name="Resume")).to_be_visible()
            page.screenshot(path=str(ARTIFACTS / "8-pause-resume.png"), full_page=True)
            page.get_by_role("button", name="Resume").click()
            expect(page.get_by_text("queued to resume")).to_be_visible()
            wait_for(lambda: store.get_run("slow-browser").status == "completed", 180, "the run to complete")
            page.reload()
            expect(page.get_by_text("slow_order · completed")).to_be_visible()
            expect(page.get_by_role("button", name="Resume")).to_have_count(0)
        applied = [json.loads(line) for line in ledger.read_text().splitlines()]
        assert sorted(a["i"] for a in applied) == list(range(STEPS))  # every effect once
        assert len(calls.read_text().splitlines()) == STEPS  # no completed call executed again
        assert (ARTIFACTS / "8-pause-resume.png").stat().st_size > 10_000
        assert httpx.get(f"{demo_stack['server']}/v1/health", timeout=5).status_code == 200
    finally:
        store.close()


def _clean_completed_run(store: RemoteStore) -> str:
    """A demo run that completed without an incident (so only the operator's rollback is audited)."""
    for run in store.list_runs(status="completed", limit=1000):
        if run.workflow == "onboard_customer" and not store.events(run.run_id):
            return run.run_id
    raise AssertionError("the demo left no run that completed without an incident")


@pytest.mark.integration
def test_rollback_a_completed_run_in_the_browser(demo_stack: dict[str, str]) -> None:
    """Run detail of a completed demo run offers its checkpoints in run order, the latest
    preselected; Rollback to an earlier one is audited as ``rolled_back`` to that checkpoint, a
    worker re-runs the run from there (what follows the checkpoint in a new generation, what
    precedes it kept) and it completes again; the page says what the action did and, reloaded,
    the run's new history."""
    from playwright.sync_api import expect

    store = RemoteStore(demo_stack["server"], token=TOKEN)
    try:
        run_id = _clean_completed_run(store)
        marks = [c.name for c in sorted(store.checkpoints(run_id), key=lambda c: c.seq)]
        in_order = list(dict.fromkeys(reversed(marks)))[::-1]  # a name reached twice counts last
        assert in_order[:2] == ["application_received", "kyc_verified"], in_order
        target = "kyc_verified"
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        with browser_page() as page:
            page.goto(f"{demo_stack['url']}/run?run={run_id}")
            expect(page.get_by_text("onboard_customer · completed")).to_be_visible()
            choice = page.get_by_role("combobox", name="Roll back to checkpoint")
            expect(choice).to_have_value(in_order[-1])  # the latest checkpoint preselected
            choice.click()
            options = page.get_by_role("option")
            expect(options).to_have_count(len(in_order))
            assert options.all_inner_texts() == in_order  # run order, not alphabetical
            options.filter(has_text=target).click()
            expect(choice).to_have_value(target)
            page.get_by_role("button", name="Rollback and re-run").click()
            # The refreshed page says what was done, once.
            expect(
                page.get_by_text(f"Rollback to {target} queued: a worker re-runs {run_id} from there.")
            ).to_be_visible()

            def rolled_back_and_completed() -> bool:
                kinds = [e.kind for e in store.events(run_id)]
                return "rolled_back" in kinds and store.get_run(run_id).status == "completed"

            wait_for(rolled_back_and_completed, 180, "the rolled-back run to complete again")
            page.reload()
            expect(page.get_by_text("onboard_customer · completed")).to_be_visible()
            # The new history: the Steps section's tries include the re-run's generation.
            inspect = page.get_by_role("combobox", name="Inspect try")
            inspect.click()
            inspect.fill("credit_scorer")  # the list is long (and drawn in part): filter it
            expect(page.get_by_role("option").filter(has_text="generation 1").first).to_be_attached()
            page.keyboard.press("Escape")
            page.get_by_text("Audit trail", exact=True).click()
            expect(page.get_by_test_id("stDataFrame")).to_be_visible()
            page.wait_for_timeout(1500)  # the table is drawn on a canvas after the page settles
            page.screenshot(path=str(ARTIFACTS / "10-rollback-completed.png"), full_page=True)
        (event,) = [e for e in store.events(run_id) if e.kind == "rolled_back"]
        assert event.actor == "console" and event.attributes["checkpoint"] == target
        assert json.loads(event.before) == {"status": "completed"}
        run = store.get_run(run_id)
        assert run.attributes["rolled_back_to"] == target
        steps = store.steps(run_id)
        # What ran after the checkpoint ran again, in the next generation; KYC's calls were kept.
        assert {s.generation for s in steps if s.agent == "credit_scorer"} == {1}
        assert {s.generation for s in steps if s.agent == "kyc_verification_agent"} == {0}
        assert (ARTIFACTS / "10-rollback-completed.png").stat().st_size > 10_000
    finally:
        store.close()
