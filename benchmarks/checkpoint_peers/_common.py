"""The workload every system of benchmarks/checkpoint.py runs, and how bytes are counted.

Imported by the systems' scripts beside it, each run in its own process (and a peer in its own
venv): no dependency beyond the standard library here, psycopg only when PostgreSQL is measured.

argv: STEPS TURNS REPEATS CRASH_AT WORKDIR. Environment: ``BENCH_MODE`` (``sqlite``,
``postgres`` or ``remote``), ``BENCH_PG`` (the PostgreSQL server's URL, for ``postgres``).
"""

from __future__ import annotations

import json
import os
import random
import sqlite3
import statistics
import sys
import time
import uuid
from collections.abc import Callable
from urllib.parse import urlsplit, urlunsplit

STEPS, TURNS, REPEATS, CRASH_AT = (int(x) for x in sys.argv[1:5])
WORK = sys.argv[5]
MODE = os.environ.get("BENCH_MODE", "sqlite")
PHASE = os.environ.get("BENCH_PHASE", "main")


def _texts(count: int, size: int = 1024, seed: int = 15) -> list[str]:
    """Unique chat-like messages of ``size`` characters: random words from a vocabulary, so that
    a store that compresses (PostgreSQL's TOAST, ClickHouse) is not measured on a repeated byte."""
    rng = random.Random(seed)
    letters = "abcdefghijklmnopqrstuvwxyz"
    vocabulary = ["".join(rng.choice(letters) for _ in range(rng.randint(2, 10))) for _ in range(5000)]
    out = []
    for i in range(count):
        words = [f"#{i}"]
        while sum(len(w) + 1 for w in words) < size:
            words.append(rng.choice(vocabulary))
        out.append(" ".join(words)[:size])
    return out


MESSAGES = _texts(max(STEPS, TURNS) + 1)


def bare(n: int) -> int:
    """The workflow without durability: the history of n messages."""
    history = []
    for i in range(n):
        history.append(MESSAGES[i])
    return len(history)


def overhead(durable: Callable[[int], object]) -> float:
    """Median over the repeats of (durable run - bare loop) / steps, in seconds."""
    rows = []
    for r in range(REPEATS):
        started = time.perf_counter()
        bare(STEPS)
        plain = time.perf_counter() - started
        started = time.perf_counter()
        durable(r)
        rows.append((time.perf_counter() - started - plain) / STEPS)
    return statistics.median(rows)


def sqlite_bytes(path: str) -> int:
    """A SQLite database's bytes: its file plus its WAL, after a checkpoint moved the WAL in."""
    if not os.path.exists(path):
        return 0
    connection = sqlite3.connect(path)
    try:
        connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        connection.close()
    wal = path + "-wal"
    return os.path.getsize(path) + (os.path.getsize(wal) if os.path.exists(wal) else 0)


def du(path: str) -> int:
    """Bytes of every file under ``path``."""
    total = 0
    for root, _, files in os.walk(path):
        total += sum(os.path.getsize(os.path.join(root, f)) for f in files)
    return total


def pg_database(name: str) -> str:
    """A fresh database on the benchmark's PostgreSQL server (``BENCH_PG``); returns its URL.

    The name gets a random suffix unless it has one (a child process reuses its parent's).
    """
    import psycopg
    from psycopg import sql

    server = os.environ["BENCH_PG"]
    with psycopg.connect(server, autocommit=True) as connection:
        connection.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        connection.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return pg_url(name)


def pg_url(name: str) -> str:
    """The URL of database ``name`` on the benchmark's server."""
    return urlunsplit(urlsplit(os.environ["BENCH_PG"])._replace(path=f"/{name}"))


def unique(prefix: str) -> str:
    """A database name of this process's own."""
    return f"{prefix}_{uuid.uuid4().hex[:8]}"


def pg_bytes(url: str) -> int:
    """Bytes of every table in the database, with its indexes and TOAST
    (``pg_total_relation_size``), system catalogs excepted."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as connection:
        row = connection.execute(
            "SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0) FROM pg_class c "
            "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relkind IN ('r', 'm') "
            "AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg_toast%'"
        ).fetchone()
    return int(row[0]) if row else 0


def report(row: dict[str, object]) -> None:
    """One row of the results table (the parent reads JSON lines from stdout)."""
    print(json.dumps(row), flush=True)
