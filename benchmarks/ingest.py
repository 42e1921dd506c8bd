"""Ingest benchmark: Omium's OTLP/HTTP collector into the embedded warehouse vs Arize Phoenix.

One command, both systems in one run on this machine:

    python benchmarks/ingest.py                 # full run (Phoenix installs into .bench/ once)
    python benchmarks/ingest.py --quick         # smaller, for a smoke check
    python benchmarks/ingest.py --baseline ../old/src --rounds 3 --skip-phoenix
                                                # this tree against another Omium, same run

Pre-encoded OTLP protobuf requests of 1,000 realistic agent spans each are posted by
concurrent clients. Reported per system: sustained spans/s (until every span is stored and
queryable), p50/p99 request latency, peak RSS of the server, and trace-by-id lookup latency
(Omium at 1M stored spans through its SQL API, Phoenix through its REST span search at the
size it holds). Phoenix answers before it stores; its rate counts until its database holds
every span.

A logs row beside it: OTLP/HTTP log exports of 1,000 GenAI event records each (prompts and
completions as the OpenTelemetry GenAI instrumentations send them) into ``otel_logs``, counted
until every record is acknowledged, i.e. stored. Phoenix has no OTLP logs endpoint: no peer row.
"""

from __future__ import annotations

import argparse
import json
import random
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _harness import (
    BENCH_DIR,
    LoadResult,
    RssSampler,
    free_port,
    median,
    peer_python,
    post_all,
    quantile,
    start_process,
    wait_until,
)

from omium.collector import sample
from omium.warehouse import queries
from omium.warehouse.remote import RemoteWarehouse

SPANS_PER_REQUEST = 1000


def payloads(count: int, seed: int) -> list[bytes]:
    started = time.perf_counter()
    out = sample.requests(count, SPANS_PER_REQUEST, seed=seed)
    print(
        f"  encoded {count} requests of {SPANS_PER_REQUEST} spans in {time.perf_counter() - started:.1f}s",
        flush=True,
    )
    return out


RECORDS_PER_REQUEST = 1000


def log_payloads(count: int, seed: int) -> list[bytes]:
    """``count`` ExportLogsServiceRequests of GenAI event records (user and assistant messages)."""
    from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest

    rng = random.Random(seed)
    base = time.time_ns() - 3600 * 10**9
    out = []
    for index in range(count):
        request = ExportLogsServiceRequest()
        resource = request.resource_logs.add()
        resource.resource.attributes.add(key="service.name").value.string_value = "company-x-onboarding"
        scope = resource.scope_logs.add()
        scope.scope.name = "opentelemetry.instrumentation.openai_v2"
        for n in range(RECORDS_PER_REQUEST):
            role = "user" if n % 2 == 0 else "assistant"
            record = scope.log_records.add(
                time_unix_nano=base + (index * RECORDS_PER_REQUEST + n) * 1000,
                severity_number=9,
                trace_id=rng.randbytes(16),
                span_id=rng.randbytes(8),
                flags=1,
                event_name=f"gen_ai.{role}.message",
            )
            record.body.string_value = (
                f'{{"role":"{role}","content":"step {n}: verify the applicant {rng.randrange(10**6)}"}}'
            )
            record.attributes.add(key="gen_ai.provider.name").value.string_value = "openai"
            record.attributes.add(key="gen_ai.request.model").value.string_value = "gpt-4o"
        out.append(request.SerializeToString())
    return out


def run_logs(url: str, args: argparse.Namespace) -> dict[str, object]:
    """Log records/s into otel_logs on the running server at ``url``."""
    bodies = log_payloads(args.log_requests + 1, seed=3)
    post_all(f"{url}/v1/logs", bodies[:1], RECORDS_PER_REQUEST, 1)  # warm-up (not counted)
    load = post_all(f"{url}/v1/logs", bodies[1:], RECORDS_PER_REQUEST, args.concurrency)
    with RemoteWarehouse(url, token=TOKEN) as warehouse:
        stored = int(warehouse.scalar("SELECT count() FROM otel_logs FINAL"))
    assert stored == RECORDS_PER_REQUEST * len(bodies), stored
    return summarise("Omium logs", load, 0) | {
        "note": "log records into otel_logs; Phoenix has no OTLP logs endpoint"
    }


def trace_ids(bodies: list[bytes], n: int, rng: random.Random) -> list[str]:
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    ids: list[str] = []
    for body in rng.sample(bodies, min(len(bodies), n)):
        request = ExportTraceServiceRequest.FromString(body)
        spans = request.resource_spans[0].scope_spans[0].spans
        ids.append(spans[len(spans) // 2].trace_id.hex())
    return ids


TOKEN = "bench-token"


def run_omium(args: argparse.Namespace, work: Path, src: str | None = None) -> dict[str, object]:
    """Omium's server from this tree, or from the source tree ``src`` (``--baseline``)."""
    port, grpc_port = free_port(), free_port()
    url = f"http://127.0.0.1:{port}"
    env = {
        "OMIUM_HOME": str(work / "omium"),
        "OMIUM_HTTP_PORT": str(port),
        "OMIUM_GRPC_PORT": str(grpc_port),
        "OMIUM_API_TOKEN": TOKEN,
    }
    if src:
        env["PYTHONPATH"] = str(Path(src).resolve())
    proc = start_process([sys.executable, "-m", "omium.cli.main", "serve"], env, work / "omium.log")
    try:
        wait_until(lambda: httpx.get(f"{url}/v1/health").status_code == 200, 120, "the Omium server")
        bodies = payloads(args.requests, seed=1)
        post_all(f"{url}/v1/traces", bodies[:3], SPANS_PER_REQUEST, 1)  # warm-up (not counted)
        with RssSampler(proc.pid) as rss:
            load = post_all(f"{url}/v1/traces", bodies[3:], SPANS_PER_REQUEST, args.concurrency)
        result = summarise("Omium" if src is None else f"Omium baseline ({src})", load, rss.peak)
        # Fill to the lookup size through the same ingest path, then time trace-by-id lookups.
        with RemoteWarehouse(url, token=TOKEN) as warehouse:
            stored = int(warehouse.scalar("SELECT count() FROM otel_traces"))
            seed = 100
            while stored < args.lookup_spans:
                batch = min(
                    args.requests, (args.lookup_spans - stored + SPANS_PER_REQUEST - 1) // SPANS_PER_REQUEST
                )
                extra = payloads(batch, seed=seed)
                post_all(f"{url}/v1/traces", extra, SPANS_PER_REQUEST, args.concurrency)
                stored += batch * SPANS_PER_REQUEST
                seed += 1
            stored = int(warehouse.scalar("SELECT count() FROM otel_traces FINAL"))
            rng = random.Random(7)
            ids = trace_ids(bodies, args.lookups, rng)
            queries.trace_spans(warehouse, ids[0])  # warm-up
            lookups = []
            for trace_id in ids:
                started = time.perf_counter()
                frame = queries.trace_spans(warehouse, trace_id)
                lookups.append(time.perf_counter() - started)
                assert frame.height > 0
        result |= lookup_figures(stored, lookups)
        if src is None and args.log_requests:
            print("  logs (OTLP/HTTP protobuf into otel_logs):", flush=True)
            result["logs"] = run_logs(url, args)
        return result
    finally:
        proc.terminate()
        proc.wait(60)


def run_phoenix(args: argparse.Namespace, work: Path) -> dict[str, object]:
    python = peer_python("phoenix", "arize-phoenix")
    port, grpc_port = free_port(), free_port()
    url = f"http://127.0.0.1:{port}"
    home = work / "phoenix"
    home.mkdir()
    proc = start_process(
        [str(python), "-m", "phoenix.server.main", "serve"],
        {
            "PHOENIX_WORKING_DIR": str(home),
            "PHOENIX_PORT": str(port),
            "PHOENIX_GRPC_PORT": str(grpc_port),
            "PHOENIX_HOST": "127.0.0.1",
        },
        work / "phoenix.log",
    )
    db = home / "phoenix.db"

    def stored() -> int:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
            return int(conn.execute("SELECT count(*) FROM spans").fetchone()[0])

    try:
        wait_until(lambda: httpx.get(f"{url}/healthz").status_code == 200, 180, "Phoenix")
        bodies = payloads(args.phoenix_requests + 1, seed=2)
        post_all(f"{url}/v1/traces", bodies[:1], SPANS_PER_REQUEST, 1)
        wait_until(lambda: stored() >= SPANS_PER_REQUEST, 300, "Phoenix to store the warm-up")
        with RssSampler(proc.pid) as rss:
            started = time.perf_counter()
            load = post_all(f"{url}/v1/traces", bodies[1:], SPANS_PER_REQUEST, args.concurrency)
            total = SPANS_PER_REQUEST * len(bodies)
            wait_until(lambda: stored() >= total, 1800, "Phoenix to store every span")
            load.seconds = time.perf_counter() - started
        result = summarise("Phoenix", load, rss.peak)
        ids = trace_ids(bodies, min(args.lookups, 50), random.Random(7))
        lookups = []
        for trace_id in ids:
            began = time.perf_counter()
            response = httpx.get(
                f"{url}/v1/projects/default/spans/otlpv1",
                params={"trace_id": trace_id, "limit": 1000},
                timeout=60,
            )
            response.raise_for_status()
            lookups.append(time.perf_counter() - began)
        return result | lookup_figures(stored(), lookups)
    finally:
        proc.terminate()
        proc.wait(60)


def lookup_figures(stored: int, lookups: list[float]) -> dict[str, object]:
    return {
        "lookup_spans_stored": stored,
        "lookup_p50_ms": round(median(lookups) * 1e3, 1),
        "lookup_p95_ms": round(quantile(lookups, 0.95) * 1e3, 1),
    }


def summarise(name: str, load: LoadResult, peak_rss: int) -> dict[str, object]:
    return {
        "system": name,
        "spans": load.spans,
        "seconds": round(load.seconds, 2),
        "spans_per_s": round(load.spans_per_second),
        "p50_ms": round(median(load.latencies) * 1e3, 1),
        "p99_ms": round(quantile(load.latencies, 0.99) * 1e3, 1),
        "peak_rss_mb": round(peak_rss / 2**20),
        "backpressure_retries": load.retries,
    }


def _median_row(rows: list[dict[str, object]]) -> dict[str, object]:
    """One row per tree: the median of each number over its rounds."""
    out = dict(rows[0])
    for key, value in rows[0].items():
        if isinstance(value, (int, float)):
            out[key] = median([float(row[key]) for row in rows])  # type: ignore[arg-type]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=200, help="Omium requests of 1,000 spans")
    parser.add_argument("--phoenix-requests", type=int, default=20, help="Phoenix requests of 1,000 spans")
    parser.add_argument("--log-requests", type=int, default=100, help="log requests of 1,000 records")
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--lookup-spans", type=int, default=1_000_000)
    parser.add_argument("--lookups", type=int, default=200)
    parser.add_argument("--skip-phoenix", action="store_true")
    parser.add_argument("--quick", action="store_true", help="small sizes for a smoke run")
    parser.add_argument("--baseline", help="another Omium source tree (its src/) to run beside this one")
    parser.add_argument("--rounds", type=int, default=1, help="Omium runs per tree (medians reported)")
    args = parser.parse_args()
    if args.quick:
        args.requests, args.phoenix_requests, args.lookup_spans, args.lookups = 30, 5, 30_000, 30
        args.log_requests = 30
    BENCH_DIR.mkdir(exist_ok=True)
    results = []
    trees: list[str | None] = [None] + ([args.baseline] if args.baseline else [])
    runs: dict[str | None, list[dict[str, object]]] = {tree: [] for tree in trees}
    for round_ in range(args.rounds):
        # Alternate the order so that neither tree always runs on a warmer machine.
        for tree in trees if round_ % 2 == 0 else trees[::-1]:
            with tempfile.TemporaryDirectory(dir=BENCH_DIR) as tmp:
                print(
                    f"Omium {tree or '(this tree)'} round {round_ + 1} (embedded warehouse, OTLP/HTTP):",
                    flush=True,
                )
                runs[tree].append(run_omium(args, Path(tmp), tree))
                # Each round's rate, so the spread behind the medians is on record.
                print(f"  {runs[tree][-1]['spans_per_s']:,.0f} spans/s", flush=True)
    logs = [row.pop("logs") for row in runs[None] if "logs" in row]
    for tree in trees:
        results.append(_median_row(runs[tree]))
    # Shown beside this tree's trace row; ``results`` keeps the rows the ratios below are taken of.
    logs_rows = [_median_row(logs)] if logs else []
    with tempfile.TemporaryDirectory(dir=BENCH_DIR) as tmp:
        work = Path(tmp)
        if not args.skip_phoenix:
            print("Arize Phoenix (OTLP/HTTP protobuf, SQLite):", flush=True)
            results.append(run_phoenix(args, work))
    keys = [
        "system",
        "spans",
        "seconds",
        "spans_per_s",
        "p50_ms",
        "p99_ms",
        "peak_rss_mb",
        "backpressure_retries",
        "lookup_spans_stored",
        "lookup_p50_ms",
        "lookup_p95_ms",
    ]
    print()
    print(" | ".join(keys))
    table = results[:1] + logs_rows + results[1:]
    for row in table:
        cells = [row.get(k, "-") for k in keys]
        print(" | ".join(f"{c:.1f}" if isinstance(c, float) else str(c) for c in cells))
    for row in logs_rows:
        if "note" in row:
            print(f"{row['system']}: {row['note']} (spans columns count log records; RSS not sampled)")
    rate = {str(row["system"]).split(" (")[0]: float(row["spans_per_s"]) for row in results}  # type: ignore[arg-type]
    if not args.skip_phoenix:
        peer = float(results[-1]["spans_per_s"])  # type: ignore[arg-type]
        print(f"\nOmium / Phoenix sustained ingest: {rate['Omium'] / peer:.1f}x")
    if args.baseline:
        print(
            f"this tree / baseline, median of {args.rounds}: ingest {rate['Omium'] / rate['Omium baseline']:.3f}x, "
            f"p50 latency {float(results[0]['p50_ms']) / float(results[1]['p50_ms']):.3f}x, "  # type: ignore[arg-type]
            f"lookup p50 {float(results[0]['lookup_p50_ms']) / float(results[1]['lookup_p50_ms']):.3f}x"  # type: ignore[arg-type]
        )
    (BENCH_DIR / "ingest.json").write_text(json.dumps(table, indent=2))


if __name__ == "__main__":
    main()
