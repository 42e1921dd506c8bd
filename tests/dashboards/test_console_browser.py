"""The console end to end in a real browser: headless Debian chromium driven by Playwright.

A stack started with `omium demo --serve` (server + embedded warehouse + console, a run left
awaiting review) and a worker, as separate processes. The browser opens Monitoring, finds
the paused run in the recovery queue, edits the prompt, tests the fix, retries from the
checkpoint and sees the run complete. Screenshots go to ``test-artifacts/console/``.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pytest

from omium.examples.company_x.workflow import FIXED_PROMPT
from tests.conftest import free_port

if TYPE_CHECKING:
    from playwright.sync_api import Page

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts" / "console"
CHROMIUM = "/usr/bin/chromium"
FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
]


def ensure_chromium() -> str:
    """Debian's chromium, installed here if missing (CI machines start without it)."""
    if not Path(CHROMIUM).exists():
        if shutil.which("apt-get") is None:
            pytest.fail("chromium is missing and apt-get is not available to install it")
        for command in (["apt-get", "update", "-q"], ["apt-get", "install", "-y", "-q", "chromium"]):
            done = subprocess.run(
                command,
                capture_output=True,
                text=True,
                timeout=900,
                env=os.environ | {"DEBIAN_FRONTEND": "noninteractive"},
            )
            if done.returncode != 0 and command[1] == "install":
                pytest.fail(f"installing chromium failed: {done.stderr[-2000:]}")
    return CHROMIUM


@contextlib.contextmanager
def browser_page() -> Iterator[Page]:
    """A page of headless Debian chromium (1400x1000, 60 s timeouts), closed with its browser after."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=ensure_chromium(), headless=True, args=FLAGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.set_default_timeout(60_000)
            yield page
        finally:
            browser.close()


def wait_for(predicate, timeout: float, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.25)


def console_up(url: str) -> bool:
    """Whether the Streamlit console at ``url`` answers its health check."""
    try:
        return httpx.get(f"{url}/_stcore/health", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def stop_all(procs: list[subprocess.Popen[bytes]]) -> None:
    """Terminate the stack's processes, killing any that do not stop within 30 s."""
    for proc in procs:
        proc.terminate()
    for proc in procs:
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


@pytest.fixture
def demo_stack(tmp_path: Path) -> Iterator[dict[str, str]]:
    http_port, console_port = free_port(), free_port()
    env = os.environ | {
        "OMIUM_HOME": str(tmp_path / "home"),
        "OMIUM_HTTP_PORT": str(http_port),
        "OMIUM_GRPC_PORT": "-1",
        "OMIUM_SERVER_URL": f"http://127.0.0.1:{http_port}",
        "OMIUM_API_TOKEN": "browser-token",
        "OMIUM_CONSOLE_PORT": str(console_port),
        "COLUMNS": "200",
    }
    logs = tmp_path / "logs"
    logs.mkdir()
    procs: list[subprocess.Popen[bytes]] = []

    def start(name: str, *args: str) -> None:
        with open(logs / f"{name}.log", "wb") as log:  # the child keeps its own descriptor
            procs.append(
                subprocess.Popen(
                    [sys.executable, "-m", "omium.cli.main", *args],
                    env=env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    cwd=ROOT,
                )
            )

    try:
        start("demo", "demo", "--executions", "16", "--concurrency", "4", "--serve")
        wait_for(lambda: "serving at" in (logs / "demo.log").read_text(errors="replace"), 240, "the demo")
        demo_out = (logs / "demo.log").read_text(errors="replace")
        paused = re.search(r"awaiting your review: run (\S+) ", demo_out)
        assert paused, demo_out[-3000:]
        start("worker", "worker", "omium.examples.company_x.workflow", "--lease", "5")
        # `omium demo --serve` started the console beside its server.
        url = f"http://127.0.0.1:{console_port}"

        wait_for(lambda: console_up(url), 120, "the console")
        yield {"url": url, "run": paused.group(1), "server": env["OMIUM_SERVER_URL"]}
    finally:
        stop_all(procs)


@pytest.mark.integration
def test_fix_a_paused_run_in_the_browser(demo_stack: dict[str, str]) -> None:
    from playwright.sync_api import expect

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    run_id = demo_stack["run"]
    with browser_page() as page:
        page.goto(demo_stack["url"])
        expect(page.get_by_text("Total executions")).to_be_visible()
        expect(page.get_by_text("Human interventions")).to_be_visible()
        expect(page.get_by_text(re.compile("^Latest execution: "))).to_be_visible()  # the page has rendered
        page.screenshot(path=str(ARTIFACTS / "1-monitoring.png"), full_page=True)

        # Links that land: the notification's link opens exactly its run, an unknown id says so,
        # and every page has its own URL.
        page.goto(f"{demo_stack['url']}/?run={run_id}")
        expect(page.get_by_text("onboard_customer · paused")).to_be_visible()
        expect(page.get_by_label("Run id")).to_have_value(run_id)
        assert f"run={run_id}" in page.url
        page.goto(f"{demo_stack['url']}/?run=nope")
        expect(page.get_by_text("No run 'nope'.")).to_be_visible()
        page.goto(f"{demo_stack['url']}/monitoring")
        expect(page.get_by_text("Total executions")).to_be_visible()

        page.goto(f"{demo_stack['url']}/recovery?run={run_id}")
        expect(page.get_by_text(f"{run_id} · onboard_customer · policy_violation")).to_be_visible()
        prompt = page.get_by_label("terms_generator.prompt")
        expect(prompt).to_be_visible()
        prompt.fill(FIXED_PROMPT)
        prompt.press("Control+Enter")  # commit the text area's value
        page.screenshot(path=str(ARTIFACTS / "2-recovery-edit.png"), full_page=True)
        page.get_by_role("button", name="Test fix").click()
        expect(page.get_by_text("Test fix passed")).to_be_visible(timeout=90_000)
        page.screenshot(path=str(ARTIFACTS / "3-test-fix-passed.png"), full_page=True)
        page.get_by_role("button", name="Retry from checkpoint").click()
        expect(page.get_by_text("approved: queued to resume")).to_be_visible()

        def completed() -> bool:
            answer = httpx.post(
                f"{demo_stack['server']}/v1/store/get_run",
                json={"args": {"run_id": run_id}},
                headers={"authorization": "Bearer browser-token"},
                timeout=5,
            )
            return bool(answer.json()["result"]["status"] == "completed")

        wait_for(completed, 90, "the run to complete")
        page.goto(f"{demo_stack['url']}/run?run={run_id}")
        expect(page.get_by_text("onboard_customer · completed")).to_be_visible()
        expect(page.get_by_text("Timeline")).to_be_visible()
        expect(page.get_by_text("policy_violation in terms_generator")).to_be_visible()  # opens on the cause
        page.screenshot(path=str(ARTIFACTS / "4-run-completed.png"), full_page=True)
    assert all(
        (ARTIFACTS / name).stat().st_size > 10_000
        for name in (
            "1-monitoring.png",
            "2-recovery-edit.png",
            "3-test-fix-passed.png",
            "4-run-completed.png",
        )
    )


@pytest.mark.integration
def test_find_a_third_party_trace_and_read_its_conversation(demo_stack: dict[str, str]) -> None:
    """An OpenInference LangGraph trace sent over OTLP beside the demo's runs: Runs finds it by a
    customer id said only in its messages, and its trace view shows the conversation."""
    from playwright.sync_api import expect

    from tests.dashboards import third_party_traces as sent
    from tests.instrumentation import fake_openai

    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "TRACELOOP_"))}
    env.update({"PYTHONPATH": "", "OPENAI_API_KEY": "test", "TRACELOOP_TELEMETRY": "false"})
    with fake_openai.serving() as (openai_url, _requests):
        done = subprocess.run(
            [sys.executable, sent.__file__, demo_stack["server"], openai_url],
            env=env,
            capture_output=True,
            text=True,
            timeout=240,
            cwd=ROOT,
        )
    assert done.returncode == 0, done.stderr[-4000:]
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with browser_page() as page:
        page.goto(f"{demo_stack['url']}/runs")
        expect(page.get_by_text(re.compile(r"^\d+ runs match"))).to_be_visible()
        search = page.get_by_label("Search ids, agents, errors and messages")
        search.fill(sent.CUSTOMER)
        search.press("Enter")
        expect(page.get_by_text(re.compile(r"^2 runs match"))).to_be_visible()
        expect(page.get_by_role("link", name="Trace view")).to_be_visible()
        page.wait_for_timeout(1500)  # the table is drawn on a canvas after the page settles
        page.screenshot(path=str(ARTIFACTS / "5-runs-third-party.png"), full_page=True)
        search.fill("locked after 5 failed attempts")  # the LangGraph researcher's answer only
        search.press("Enter")
        expect(page.get_by_text(re.compile(r"^1 runs match"))).to_be_visible()
        expect(page.get_by_text(f"Open session {sent.SESSION}")).to_be_visible()
        page.get_by_role("link", name="Trace view").click()
        expect(page.get_by_text("Conversation")).to_be_visible()
        said = page.get_by_test_id("stChatMessage")  # the conversation, not the raw attributes
        expect(said.get_by_text(sent.QUESTION)).to_be_visible()
        expect(said.get_by_text("The account is locked after 5 failed attempts.")).to_be_visible()
        expect(page.get_by_text("Spans (local time)")).to_be_visible()
        page.screenshot(path=str(ARTIFACTS / "6-trace-view.png"), full_page=True)
        page.goto(f"{demo_stack['url']}/session?session={sent.SESSION}")
        expect(page.get_by_text("Runs of the session (local time)")).to_be_visible()
        page.screenshot(path=str(ARTIFACTS / "7-session.png"), full_page=True)
    assert all(
        (ARTIFACTS / n).stat().st_size > 10_000 for n in ("5-runs-third-party.png", "6-trace-view.png")
    )


@pytest.mark.integration
def test_links_land_and_the_graph_draws(demo_stack: dict[str, str]) -> None:
    """The pause alert's link (the webhook's, ``recovery/notify.py``) opens exactly its run; an
    unknown run id says so instead of showing another run; the run's dependency graph draws."""
    from playwright.sync_api import expect

    from omium.recovery.notify import Notification

    run_id = demo_stack["run"]
    link = Notification(run_id, "onboard_customer", "policy_violation", "", {}, "", demo_stack["url"]).link
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with browser_page() as page:
        page.goto(link)
        expect(page.get_by_role("heading", name="Run detail")).to_be_visible()
        expect(page.get_by_label("Run id")).to_have_value(run_id)
        expect(page.get_by_text(re.compile(r"onboard_customer · paused"))).to_be_visible()
        assert f"run={run_id}" in page.url
        page.get_by_text("Dependency graph", exact=True).click()
        graph = page.locator(".js-plotly-plot")
        expect(graph).to_be_visible()
        for agent in ("kyc_verification_agent", "credit_scorer", "terms_generator"):
            expect(graph.get_by_text(agent).first).to_be_attached()
        graph.scroll_into_view_if_needed()
        page.wait_for_timeout(1000)  # plotly finishes its layout after the plot is attached
        page.screenshot(path=str(ARTIFACTS / "9-dependency-graph.png"))
        page.goto(f"{demo_stack['url']}/?run=onboard-no-such-run")
        expect(page.get_by_text("No run 'onboard-no-such-run'.")).to_be_visible()
        expect(page.get_by_text(re.compile(r"onboard_customer · "))).to_have_count(0)
    assert (ARTIFACTS / "9-dependency-graph.png").stat().st_size > 10_000
