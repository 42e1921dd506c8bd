"""Console benchmark: time to first full render of each page, measured in a real browser.

One command (needs Debian's chromium at /usr/bin/chromium):

    python benchmarks/console.py                             # 100k runs, 10M spans
    python benchmarks/console.py --runs 10000 --spans 1000000  # a tenth of that
    python benchmarks/console.py --quick                     # 1k runs, 100k spans
    python benchmarks/console.py --beside-demo               # while `omium demo` runs beside it
    python benchmarks/console.py --home /tmp/wh              # keep the filled warehouse there
                                                             # (a second run reuses it)

The warehouse is filled first, in this process: a few hundred real Company X executions under
their policy (spans included), cloned with INSERT ... SELECT into 100,000 runs (steps,
checkpoints, hand-offs and audit events with them) and 10,000,000 spans. Then `omium serve` and
`omium console` start on it as separate processes, one OTLP trace of 2,000 agent spans (in a
session) is sent to the server as an instrumented app would, and headless chromium (Playwright)
opens each page five times: the time from navigation to the page's content being visible with
Streamlit idle is reported (median and max). Goals: every page < 2 s; run detail and the trace
view of the 2,000-span trace < 1 s.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _harness import BENCH_DIR, free_port

COLUMNS = """
SELECT name FROM system.columns
WHERE database = currentDatabase() AND table = {table:String} AND default_kind NOT IN ('MATERIALIZED', 'ALIAS')
ORDER BY position
"""
# How each cloned table makes copy ``n`` of a row distinct (and spreads runs over time).
CLONED = {
    "omium_runs": {
        "run_id": "concat(run_id, '-c', toString(n))",
        "started_at": "started_at - toIntervalSecond(n * 7)",
        "updated_at": "updated_at - toIntervalSecond(n * 7)",
    },
    "omium_steps": {"run_id": "concat(run_id, '-c', toString(n))"},
    "omium_checkpoints": {"run_id": "concat(run_id, '-c', toString(n))"},
    "omium_handoffs": {"run_id": "concat(run_id, '-c', toString(n))"},
    "omium_events": {"run_id": "concat(run_id, '-c', toString(n))"},
    "otel_traces": {
        "TraceId": "concat(lower(hex(cityHash64(TraceId, n))), substring(TraceId, 17))",
        "Timestamp": "Timestamp - toIntervalSecond(n)",
        # Copy n of a run's spans belongs to a copy of the run (RunId is materialized from this): the
        # spans are copied more often than the runs, so a run holds a few traces, as a resumed one does.
        "SpanAttributes": "if(SpanAttributes['omium.run_id'] = '' OR n % {runs:UInt32} = 0, SpanAttributes, "
        "mapUpdate(SpanAttributes, map('omium.run_id', "
        "concat(SpanAttributes['omium.run_id'], '-c', toString(n % {runs:UInt32})))))",
    },
}


def clone(warehouse: Any, table: str, copies: int, limit: int = 0, runs: int = 1) -> None:
    """Insert ``copies`` altered copies of ``table``'s rows (of its first ``limit`` rows, if set);
    ``runs``: how many copies of each run there are (the original included)."""
    columns = [row["name"] for row in warehouse.query_rows(COLUMNS, {"table": table})]
    changes = CLONED[table]
    select = ", ".join(changes.get(c, f"`{c}`") for c in columns)
    source = f"(SELECT * FROM {table} LIMIT {{limit:UInt64}}) AS rows" if limit else table
    warehouse.command(
        f"INSERT INTO {table} ({', '.join(f'`{c}`' for c in columns)}) SELECT {select} FROM {source} "
        "CROSS JOIN (SELECT number + 1 AS n FROM numbers({copies:UInt32})) AS copies",
        {"copies": copies, "limit": limit, "runs": runs},
    )


def fill(home: Path, runs: int, spans: int, seed_runs: int) -> dict[str, int]:
    """Real executions, cloned up to ``runs`` runs and ``spans`` spans."""
    import omium
    from omium.config import Settings
    from omium.examples.company_x import workflow as company_x
    from omium.recovery import supervise
    from omium.sdk import tracing
    from omium.sdk.guards import register_detector
    from omium.warehouse.store import embedded_store

    settings = Settings.from_env().with_(home=home)
    store = embedded_store(settings)
    omium.init(store=store)
    register_detector(company_x.UNSUPPORTED_CLAIMS)
    from omium.cli.company_x import scenarios

    for i, scenario in enumerate(scenarios(seed_runs, seed=11)):
        customer = f"bench-{i:05d}"
        company_x.seed_customer(store, customer)
        supervise(
            company_x.onboard_customer, customer, scenario, run_id=customer, store=store, sleep=lambda s: None
        )
    from omium.warehouse.store import EmbeddedStore

    assert isinstance(store, EmbeddedStore), "the benchmark fills the embedded warehouse"
    store.ship()  # every committed fact into the warehouse now, not at the shipper's next look
    provider = tracing._provider
    if provider is not None:
        provider.force_flush()  # type: ignore[attr-defined]
    warehouse = store.warehouse
    assert warehouse is not None
    copies = max(0, runs // seed_runs - 1)
    if copies:
        for table in ("omium_runs", "omium_steps", "omium_checkpoints", "omium_handoffs", "omium_events"):
            clone(warehouse, table, copies)
    have = int(warehouse.scalar("SELECT count() FROM otel_traces"))
    if have and spans > have:
        clone(warehouse, "otel_traces", -(-(spans - have) // have), limit=have, runs=copies + 1)
    counts = {
        "runs": int(warehouse.scalar("SELECT count() FROM omium_runs FINAL")),
        "spans": int(warehouse.scalar("SELECT count() FROM otel_traces")),
        "steps": int(warehouse.scalar("SELECT count() FROM omium_steps")),
    }
    store.close()
    tracing.configure(None)
    return counts


BIG_TRACE_SPANS = 2_000
SESSION = "bench-session"
PAGES = {
    # page: (path, text that shows the content has rendered)
    "Monitoring": ("/monitoring", "Latest execution: "),
    "Runs": ("/runs", "runs match"),
    "Run detail": ("/run?run={run}", "Failed at step"),
    f"Trace ({BIG_TRACE_SPANS:,} spans)": ("/trace?trace={trace}", "Spans (local time)"),
    "Session": (f"/session?session={SESSION}", "Runs of the session (local time)"),
    "Recovery queue": ("/recovery", "awaiting review"),
    "Replay": ("/replay?run={run}", "Fork"),
    "Setup": ("/setup", "Policy"),
}
# A page not drawn in this long is reported as such (and not loaded again).
PAGE_TIMEOUT_S = 60
GOALS = {"Run detail": 1.0, f"Trace ({BIG_TRACE_SPANS:,} spans)": 1.0}


def big_trace() -> tuple[str, bytes]:
    """One OTLP trace of ``BIG_TRACE_SPANS`` agent spans in session ``SESSION``: its id and request."""
    import random

    from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

    from omium.collector import sample

    rng = random.Random(3)
    start = time.time_ns() - 120_000_000_000
    spans: list[Any] = []
    while len(spans) < BIG_TRACE_SPANS:
        spans.extend(sample.trace_spans(rng, "", start + len(spans) * 1_000_000))
    spans = spans[:BIG_TRACE_SPANS]
    trace_id, root = spans[0].trace_id, spans[0].span_id
    for span in spans:
        if span.trace_id != trace_id:  # one trace: the other workflows hang under the first root
            span.trace_id = trace_id
            if not span.parent_span_id:
                span.parent_span_id = root
        span.attributes.append(KeyValue(key="session.id", value=AnyValue(string_value=SESSION)))
    return trace_id.hex(), sample.export_request(spans, service="bench-agents").SerializeToString()


def send_big_trace(server: str, token: str) -> str:
    """Send the big trace over OTLP/HTTP and wait until all its spans are queryable; its id."""
    trace, body = big_trace()
    auth = {"authorization": f"Bearer {token}"}
    if _span_count(server, auth, trace) >= BIG_TRACE_SPANS:
        return trace  # a reused warehouse (--home) has it already
    sent = httpx.post(
        f"{server}/v1/traces",
        content=body,
        headers=auth | {"content-type": "application/x-protobuf"},
        timeout=60,
    )
    sent.raise_for_status()
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if _span_count(server, auth, trace) >= BIG_TRACE_SPANS:
            return trace
        time.sleep(0.5)
    raise SystemExit("the big trace did not land")


def _span_count(server: str, auth: dict[str, str], trace: str) -> int:
    rows = httpx.post(
        f"{server}/v1/sql",
        json={
            "query": "SELECT count() FROM otel_traces FINAL WHERE TraceId = {t:String}",
            "parameters": {"t": trace},
        },
        headers=auth | {"accept": "application/json"},
        timeout=60,
    ).json()["rows"]
    return int(rows[0][0]) if rows else 0


# Streamlit idle, and every chart on the page drawn (Vega-Lite canvas or svg, plotly svg).
CHARTS_DRAWN = """() => !document.querySelector('[data-testid="stStatusWidget"]') &&
  [...document.querySelectorAll('[data-testid="stVegaLiteChart"], [data-testid="stPlotlyChart"]')]
    .every(c => c.querySelector('canvas, svg'))"""


def measure(
    url: str, run_id: str, trace: str, repeats: int, only: list[str] | None = None
) -> dict[str, list[float]]:
    """Seconds from navigation to a rendered, idle page, per page (of ``only``, if given)."""
    from playwright.sync_api import sync_playwright

    flags = [
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
    ]
    from playwright.sync_api import TimeoutError as PageTimeout

    unknown = set(only or ()) - set(PAGES)
    if unknown:
        raise SystemExit(f"no page {sorted(unknown)}: the pages are {list(PAGES)}")
    timings: dict[str, list[float]] = {name: [] for name in PAGES if not only or name in only}
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", headless=True, args=flags)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.set_default_timeout(PAGE_TIMEOUT_S * 1000)
        page.goto(url + "/setup")  # warm the server's first script run
        page.get_by_text("Policy").first.wait_for()
        for _ in range(repeats):
            for name, (path, marker) in PAGES.items():
                if name not in timings:
                    continue
                if timings[name] and math.isinf(timings[name][-1]):
                    continue  # timed out once: not tried again (the other pages still are)
                started = time.perf_counter()
                try:
                    page.goto(url + path.format(run=run_id, trace=trace))
                    page.get_by_text(marker).first.wait_for(state="visible")
                    page.wait_for_function(CHARTS_DRAWN)
                except PageTimeout:
                    timings[name].append(math.inf)
                    print(f"  {name}: no full render within {PAGE_TIMEOUT_S} s", flush=True)
                    continue
                timings[name].append(time.perf_counter() - started)
        browser.close()
    return timings


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=100_000)
    parser.add_argument("--spans", type=int, default=10_000_000)
    parser.add_argument("--seed-runs", type=int, default=250)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument(
        "--beside-demo",
        action="store_true",
        help="measure while `omium demo` (its own embedded server and warehouse) runs beside the console",
    )
    parser.add_argument("--pages", nargs="+", metavar="PAGE", help="time only these pages (names as printed)")
    parser.add_argument(
        "--home",
        type=Path,
        help="keep the filled $OMIUM_HOME here; a later run with the same sizes reuses it instead of filling",
    )
    args = parser.parse_args()
    if args.quick:
        args.runs, args.spans, args.seed_runs, args.repeats = 1_000, 100_000, 100, 3
    BENCH_DIR.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory(dir=BENCH_DIR) as tmp:
        home = args.home or Path(tmp) / "home"
        sizes = {"runs": args.runs, "spans": args.spans, "seed_runs": args.seed_runs}
        filled = home / "benchmark-fill.json"
        if filled.exists() and json.loads(filled.read_text())["sizes"] == sizes:
            counts = json.loads(filled.read_text())["counts"]
            print(f"reusing the warehouse in {home}: {counts}", flush=True)
        else:
            if filled.exists() or (home.exists() and any(home.iterdir())):
                raise SystemExit(f"{home} holds another warehouse: give an empty or new directory")
            print(f"filling the warehouse: {args.runs:,} runs, {args.spans:,} spans...", flush=True)
            started = time.perf_counter()
            counts = fill(home, args.runs, args.spans, args.seed_runs)
            print(f"  {counts} in {time.perf_counter() - started:.0f}s", flush=True)
            filled.write_text(json.dumps({"sizes": sizes, "counts": counts}))
        http_port, console_port = free_port(), free_port()
        env = os.environ | {
            "OMIUM_HOME": str(home),
            "OMIUM_HTTP_PORT": str(http_port),
            "OMIUM_GRPC_PORT": "-1",
            "OMIUM_SERVER_URL": f"http://127.0.0.1:{http_port}",
            "OMIUM_CONSOLE_PORT": str(console_port),
        }
        procs = [
            subprocess.Popen(
                [sys.executable, "-m", "omium.cli.main", "serve"],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            ),
        ]
        try:
            _wait(f"http://127.0.0.1:{http_port}/v1/health")
            procs.append(
                subprocess.Popen(
                    [sys.executable, "-m", "omium.cli.main", "console"],
                    env=env,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )
            url = f"http://127.0.0.1:{console_port}"
            _wait(f"{url}/_stcore/health")
            from omium.config import Settings

            # Every API call needs the token: a local client finds it in $OMIUM_HOME, as here.
            token = Settings.from_env(env).api_token
            assert token, "the server writes its token into $OMIUM_HOME"
            answer = httpx.post(
                f"http://127.0.0.1:{http_port}/v1/sql",
                # A run the control store holds (the copies are the warehouse's only).
                json={
                    "query": "SELECT run_id FROM omium_runs FINAL WHERE status = 'paused' "
                    "AND position(run_id, '-c') = 0 LIMIT 1"
                },
                headers={"accept": "application/json", "authorization": f"Bearer {token}"},
            )
            answer.raise_for_status()
            failing = answer.json()["rows"]
            run_id = failing[0][0] if failing else "bench-00000"
            trace = send_big_trace(f"http://127.0.0.1:{http_port}", token)
            if args.beside_demo:
                procs.append(start_demo(Path(tmp) / "demo-home"))
            timings = measure(url, run_id, trace, args.repeats, args.pages)
        finally:
            for proc in procs:
                proc.terminate()
            for proc in procs:
                try:
                    proc.wait(30)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
    beside = ", while `omium demo` ran beside it" if args.beside_demo else ", nothing else running"
    print(
        f"\nconsole first full render, {counts['runs']:,} runs / {counts['spans']:,} spans, "
        f"{args.repeats} loads each{beside}:"
    )
    print("page | median s | max s | goal")
    results: dict[str, Any] = {"counts": counts, "pages": {}}
    for name, values in timings.items():
        goal = GOALS.get(name, 2.0)
        median = statistics.median(values)
        results["pages"][name] = {
            "median_s": None if math.isinf(median) else median,
            "max_s": None if math.isinf(max(values)) else max(values),
            "goal_s": goal,
        }
        shown = f"> {PAGE_TIMEOUT_S}" if math.isinf(median) else f"{median:.2f}"
        worst = f"> {PAGE_TIMEOUT_S}" if math.isinf(max(values)) else f"{max(values):.2f}"
        print(f"{name} | {shown} | {worst} | < {goal:.0f} s {'met' if median < goal else 'NOT met'}")
    (BENCH_DIR / "console.json").write_text(json.dumps(results, indent=2))


def start_demo(home: Path) -> subprocess.Popen[bytes]:
    """`omium demo` (Company X's executions, its own embedded server and warehouse) as load beside
    the console, once it is recording: long enough to outlast the measurement, stopped after it."""
    port = free_port()
    env = os.environ | {
        "OMIUM_HOME": str(home),
        "OMIUM_HTTP_PORT": str(port),
        "OMIUM_GRPC_PORT": "-1",
        "OMIUM_SERVER_URL": f"http://127.0.0.1:{port}",
    }
    demo = subprocess.Popen(
        [sys.executable, "-m", "omium.cli.main", "demo", "--executions", "100000"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    _wait(f"http://127.0.0.1:{port}/v1/health")
    time.sleep(5)  # executions under way
    return demo


def _wait(url: str, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise SystemExit(f"{url} did not answer")


if __name__ == "__main__":
    main()
