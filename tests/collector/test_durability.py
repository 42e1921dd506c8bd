"""Real server processes: kill -9 loses nothing acknowledged; overload is refused, not queued."""

from __future__ import annotations

import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import psutil
import pytest

from omium.collector import sample
from tests.conftest import ServerProcess

pytestmark = pytest.mark.integration
SPANS = 500


def _bodies(count: int, first_seed: int) -> dict[int, bytes]:
    return {seed: sample.requests(1, SPANS, seed=seed)[0] for seed in range(first_seed, first_seed + count)}


def _post(url: str, body: bytes) -> int:
    try:
        return httpx.post(
            f"{url}/v1/traces", content=body, timeout=30, headers={"content-type": "application/x-protobuf"}
        ).status_code
    except httpx.HTTPError:
        return 0


def _per_seed(server: ServerProcess) -> dict[int, tuple[int, int]]:
    """seed -> (distinct spans as queries see them, raw rows)."""
    seed = "toUInt32(splitByChar('-', RunId)[2])"
    final = dict(server.sql(f"SELECT {seed} AS seed, count() FROM otel_traces FINAL GROUP BY seed"))
    raw = dict(server.sql(f"SELECT {seed} AS seed, count() FROM otel_traces GROUP BY seed"))
    return {int(s): (int(final.get(s, 0)), int(n)) for s, n in raw.items()}


def test_kill_9_loses_nothing_acknowledged(server_process: ServerProcess) -> None:
    rng = random.Random(42)
    bodies = _bodies(60, 1000)
    acked: set[int] = set()
    server_process.start()
    pending = list(bodies)
    interrupted: list[int] = []
    for _cycle in range(3):
        lock = threading.Lock()
        stop = threading.Event()

        def sender(queue: list[int], stop: threading.Event = stop, lock: threading.Lock = lock) -> None:
            for seed in queue:
                if stop.is_set():
                    return
                if _post(server_process.url, bodies[seed]) == 200:
                    with lock:
                        acked.add(seed)

        half = len(pending) // 2
        threads = [
            threading.Thread(target=sender, args=(pending[:half],)),
            threading.Thread(target=sender, args=(pending[half:],)),
        ]
        for t in threads:
            t.start()
        time.sleep(rng.uniform(0.5, 2.0))
        server_process.kill9()
        stop.set()
        for t in threads:
            t.join(60)
        server_process.start()
        counts = _per_seed(server_process)
        for seed in acked:
            assert counts.get(seed, (0, 0))[0] == SPANS, (
                f"acknowledged request {seed} lost spans after kill -9"
            )
        pending = [seed for seed in bodies if seed not in acked]
        interrupted.append(len(pending))
    assert acked, "no request was acknowledged before the kills"
    assert interrupted[0] > 0, "the first kill -9 came after every request was acknowledged"
    # Clients re-send what was not acknowledged: at-least-once delivery, counted once.
    for seed in pending:
        assert _post(server_process.url, bodies[seed]) == 200
    counts = _per_seed(server_process)
    assert sorted(counts) == sorted(bodies)
    assert all(final == SPANS for final, _ in counts.values())
    total = server_process.sql("SELECT count() FROM otel_traces FINAL")[0][0]
    assert total == SPANS * len(bodies)


def test_overload_answers_503_with_retry_after_and_bounded_memory(tmp_path) -> None:  # type: ignore[no-untyped-def]
    server = ServerProcess(tmp_path, OMIUM_MAX_PENDING_SPANS="2000").start()
    try:
        bodies = list(_bodies(12, 5000).items())
        process = psutil.Process(server.proc.pid)  # type: ignore[union-attr]
        baseline = process.memory_info().rss
        peak = baseline
        results: list[tuple[int, int, str | None]] = []
        lock = threading.Lock()
        deadline = time.monotonic() + 8

        def flood(worker: int) -> None:
            index = worker
            with httpx.Client(timeout=30) as client:
                while time.monotonic() < deadline:
                    seed, body = bodies[index % len(bodies)]
                    index += 1
                    response = client.post(
                        f"{server.url}/v1/traces",
                        content=body,
                        headers={"content-type": "application/x-protobuf"},
                    )
                    with lock:
                        results.append((seed, response.status_code, response.headers.get("retry-after")))

        with ThreadPoolExecutor(16) as pool:
            futures = [pool.submit(flood, i) for i in range(16)]
            while not all(f.done() for f in futures):
                peak = max(peak, process.memory_info().rss)
                time.sleep(0.05)
            for f in futures:
                f.result()
        statuses = [status for _, status, _ in results]
        refused = [r for r in results if r[1] == 503]
        assert refused, f"no request was refused under overload: {set(statuses)}"
        assert set(statuses) <= {200, 503}
        assert all(retry is not None and int(retry) >= 1 for _, _, retry in refused)
        assert peak - baseline < 400 * 1024 * 1024, f"memory grew by {(peak - baseline) / 2**20:.0f} MiB"
        # Everything acknowledged is there, once.
        acked = {seed for seed, status, _ in results if status == 200}
        counts = _per_seed(server)
        for seed in acked:
            assert counts[seed][0] == SPANS
        assert httpx.get(f"{server.url}/v1/health").status_code == 200
    finally:
        server.stop()
