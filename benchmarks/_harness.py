"""Shared pieces of the side-by-side benchmarks: peers in their own venvs, load, RSS, quantiles."""

from __future__ import annotations

import os
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psutil

ROOT = Path(__file__).resolve().parent.parent
BENCH_DIR = ROOT / ".bench"


def peer_python(name: str, requirement: str) -> Path:
    """A venv of its own for a peer (its pins must not touch Omium's), made on first use.

    ``requirement`` is one or more space-separated requirements. The venv counts as made only
    once its install succeeded (a marker file), so an interrupted install is redone.
    """
    venv = BENCH_DIR / f"{name}-venv"
    python = venv / "bin" / "python"
    done = venv / ".installed"
    if not done.exists():
        print(f"installing {requirement} into {venv} (first run only)...", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", *requirement.split()], check=True)
        done.write_text(requirement)
    return python


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def quantile(values: Sequence[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


class RssSampler:
    """Peak resident memory of a process and its children, sampled every 50 ms."""

    def __init__(self, pid: int) -> None:
        self.process = psutil.Process(pid)
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _rss(self) -> int:
        total = 0
        for proc in [self.process, *self.process.children(recursive=True)]:
            try:
                total += proc.memory_info().rss
            except psutil.Error:
                pass
        return total

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self._rss())
            time.sleep(0.05)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


@dataclass
class LoadResult:
    """What a load run measured."""

    spans: int
    seconds: float
    latencies: list[float] = field(default_factory=list)
    retries: int = 0

    @property
    def spans_per_second(self) -> float:
        return self.spans / self.seconds


def post_all(
    url: str,
    payloads: Sequence[bytes],
    spans_per_payload: int,
    concurrency: int,
    headers: dict[str, str] | None = None,
) -> LoadResult:
    """POST every payload with ``concurrency`` clients, honouring 429/503 + Retry-After."""
    latencies: list[float] = []
    retries = 0
    lock = threading.Lock()
    index = iter(range(len(payloads)))

    def worker() -> None:
        nonlocal retries
        with httpx.Client(timeout=120) as client:
            while True:
                with lock:
                    i = next(index, None)
                if i is None:
                    return
                while True:
                    started = time.perf_counter()
                    response = client.post(
                        url,
                        content=payloads[i],
                        headers={"content-type": "application/x-protobuf"} | (headers or {}),
                    )
                    elapsed = time.perf_counter() - started
                    if response.status_code in (429, 503):
                        with lock:
                            retries += 1
                        time.sleep(min(float(response.headers.get("retry-after", "1")), 2.0))
                        continue
                    response.raise_for_status()
                    with lock:
                        latencies.append(elapsed)
                    break

    started = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        for future in [pool.submit(worker) for _ in range(concurrency)]:
            future.result()
    return LoadResult(len(payloads) * spans_per_payload, time.perf_counter() - started, latencies, retries)


def wait_until(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if predicate():
                return
        except (httpx.HTTPError, OSError):
            pass
        time.sleep(0.2)
    raise TimeoutError(f"timed out waiting for {what}")


def start_process(argv: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with open(log, "ab") as out:
        return subprocess.Popen(
            argv, env=os.environ | env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
