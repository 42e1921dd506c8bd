"""Omium in benchmarks/checkpoint.py: a @workflow of @step calls, each returning its new message.

``BENCH_MODE``:
* ``sqlite``: what ``omium.init()`` gives a script in a fresh ``$OMIUM_HOME``; if that is not yet
  the SQL control store (a tree from before it), the SQLite control store is opened explicitly
  (``open_control_store("sqlite:///$OMIUM_HOME/control.db")``) and the row says so. A tree with
  no SQL store at all (``--baseline`` of an older one) measures its own default. Also a row with
  ``fsync=True`` (each commit survives power loss, as SQLite's own default does for the peers).
* ``postgres``: ``OMIUM_CONTROL_URL`` set to a fresh database on the benchmark's server (the
  store opened explicitly if ``init()`` does not yet honour it).
* ``remote``: ``omium serve`` in another process, reached over its control API.

The crash: a child process runs the workflow and exits (``os._exit``) inside step CRASH_AT; a new
process opens the store and runs the same run id, and we time that (store opening included) and
count the steps below CRASH_AT it executed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from _common import (
    CRASH_AT,
    MESSAGES,
    MODE,
    PHASE,
    STEPS,
    TURNS,
    WORK,
    du,
    overhead,
    pg_bytes,
    pg_database,
    report,
    sqlite_bytes,
    unique,
)

import omium
from omium import step, workflow
from omium.sdk import tracing

# No server is asked for (a script beside a running `omium serve` would get its RemoteStore).
os.environ["OMIUM_SERVER_URL"] = "http://127.0.0.1:9"
TOKEN = "bench-token"
executed: list[int] = []


@step
def turn(i: int) -> str:
    executed.append(i)
    if PHASE == "crash" and i == CRASH_AT:
        os._exit(9)
    return MESSAGES[i]


@workflow
def conversation(n: int) -> int:
    history = []
    for i in range(n):
        history.append(turn(i))
    return len(history)


def is_sql(store: Any) -> bool:
    """Whether ``store`` is the SQL control store (or a kind of it, as the embedded default is)."""
    return any(cls.__name__ == "SqlStore" for cls in type(store).__mro__)


def _use(store: Any) -> Any:
    omium.init(store=store, tracer_provider=None)
    tracing.configure(None)  # spans are not what is measured (the peers write none)
    return store


def open_store(home: str) -> tuple[Any, str]:
    """The store of this mode, and a note on how it was chosen."""
    if MODE == "remote":
        from omium.sdk.remote_store import RemoteStore

        return _use(RemoteStore(os.environ["BENCH_REMOTE_URL"], token=TOKEN)), "omium serve's control API"
    os.environ["OMIUM_HOME"] = home
    if MODE == "postgres":
        os.environ["OMIUM_CONTROL_URL"] = os.environ["BENCH_DB_URL"]
    else:
        os.environ.pop("OMIUM_CONTROL_URL", None)
    url = os.environ["BENCH_DB_URL"] if MODE == "postgres" else f"sqlite:///{home}/control.db"
    if os.environ.get("BENCH_EXPLICIT"):  # a child: its parent found init() is not the SQL store
        from omium.sdk.sql import open_control_store

        return _use(open_control_store(url)), "opened explicitly"
    default = omium.init(tracer_provider=None)
    tracing.configure(None)
    if is_sql(default):
        return default, f"omium.init() default ({type(default).__name__})"
    try:
        from omium.sdk.sql import open_control_store
    except ImportError:  # a tree from before the SQL store: its own default
        if MODE == "postgres":
            raise SystemExit("this tree has no SQL control store") from None
        return default, f"omium.init() default ({type(default).__name__})"
    default.close()
    os.environ["BENCH_EXPLICIT"] = "1"  # for the crash and resume children
    note = f"opened explicitly: omium.init() gives {type(default).__name__} in this tree"
    return _use(open_control_store(url)), note


def _size(store: Any, home: str) -> int:
    """Bytes the store holds now (SQLite file + WAL, PostgreSQL tables, else files on disk)."""
    if MODE == "postgres":
        return pg_bytes(os.environ["BENCH_DB_URL"])
    if is_sql(store):
        return sqlite_bytes(str(store.engine.url.database))
    return du(home)


def crash_phases(env: dict[str, str]) -> dict[str, object]:
    """Crash a child at CRASH_AT, resume in another; returns its resume seconds and re-executions."""
    child = [sys.executable, *sys.argv]
    crashed = subprocess.run(child, env=os.environ | env | {"BENCH_PHASE": "crash"})
    assert crashed.returncode == 9, crashed.returncode
    resumed = subprocess.run(
        child, env=os.environ | env | {"BENCH_PHASE": "resume"}, capture_output=True, text=True
    )
    if resumed.returncode != 0:
        raise SystemExit(f"the resume failed:\n{resumed.stderr[-3000:]}")
    return dict(json.loads(resumed.stdout.strip().splitlines()[-1]))


def child_phase() -> None:
    home = os.path.join(WORK, "crash")
    if PHASE == "crash":
        open_store(home)
        omium.run(conversation, STEPS, run_id="crash")
        raise SystemExit("not reached: the crash exits")
    started = time.perf_counter()
    store, _ = open_store(home)
    opened = time.perf_counter() - started
    omium.run(conversation, STEPS, run_id="crash")
    resume = time.perf_counter() - started
    report({"resume_s": resume, "open_s": opened, "reexecuted": len([i for i in executed if i < CRASH_AT])})
    store.close()


def measure(key: str, system: str, env: dict[str, str]) -> None:
    """Per-step overhead, bytes of a TURNS-turn run in a fresh store, crash and resume."""
    store, note = open_store(os.path.join(WORK, "main"))
    kind = type(store).__name__
    if not is_sql(store) and type(store).__name__ != "RemoteStore":  # an older tree's default
        system = f"Omium embedded default ({type(store).__name__})"
    per_step = overhead(lambda r: omium.run(conversation, STEPS, run_id=f"o{r}"))
    store.close()
    stored: int | None = None
    if MODE != "remote":
        home = os.path.join(WORK, "bytes")
        if MODE == "postgres":
            os.environ["BENCH_DB_URL"] = pg_database(unique("omium_bytes"))
        store, _ = open_store(home)
        before = _size(store, home)
        warehouse = os.path.join(home, "warehouse")
        before_warehouse = du(warehouse)
        omium.run(conversation, TURNS, run_id="bytes")
        if hasattr(store, "flush"):
            store.flush()
        store.close()  # the embedded default ships its outbox to the warehouse as it closes
        stored = _size(store, home) - before
        if getattr(store, "shipper", "absent") != "absent":
            grown = du(warehouse) - before_warehouse
            note += f"; its warehouse's analytical copy: {grown:,} more bytes on disk"
        if MODE == "postgres":
            os.environ["BENCH_DB_URL"] = env["BENCH_DB_URL"]
    row = {"key": key, "system": system, "note": note, "per_step_ms": per_step * 1e3, "bytes": stored}
    report(row | crash_phases(env))
    if not is_sql(store):
        return
    if MODE == "sqlite":
        # The same store with each commit fsynced (synchronous=FULL), as the peers' SQLite does:
        # OMIUM_FSYNC=1, or explicitly where the tree does not read it.
        os.environ["OMIUM_FSYNC"] = "1"
        store, how = open_store(os.path.join(WORK, "fsync"))
        with store.engine.connect() as connection:
            synchronous = connection.exec_driver_sql("PRAGMA synchronous").scalar()
        if synchronous != 2:
            from omium.sdk.sql import open_control_store

            store.close()
            store, how = (
                _use(open_control_store(f"sqlite:///{WORK}/fsync2/control.db", fsync=True)),
                "explicit",
            )
        os.environ.pop("OMIUM_FSYNC")
        note = f"{how}, OMIUM_FSYNC=1; per-step only; each commit synced as SqliteSaver's and DBOS's are"
        per_step_only(store, "omium-sqlite-fsync", "Omium, SQLite control store, fsync=True", note)
    if kind != "SqlStore":
        # The default is more than the store (the embedded warehouse's shipper): the store alone.
        from omium.sdk.sql import open_control_store

        if MODE == "postgres":
            url = pg_database(unique("omium_alone"))
        else:
            url = f"sqlite:///{WORK}/alone/control.db"
        per_step_only(
            _use(open_control_store(url)),
            f"omium-{MODE}-alone",
            f"Omium, SqlStore alone ({'PostgreSQL' if MODE == 'postgres' else 'SQLite'})",
            "per-step only; open_control_store(url): no embedded warehouse, no shipper",
        )


def per_step_only(store: Any, key: str, system: str, note: str) -> None:
    """A row of per-step overhead alone, on ``store`` (closed afterwards)."""
    per_step = overhead(lambda r: omium.run(conversation, STEPS, run_id=f"{key}-{r}"))
    store.close()
    report(
        {
            "key": key,
            "system": system,
            "note": note,
            "per_step_ms": per_step * 1e3,
            "bytes": None,
            "resume_s": None,
            "reexecuted": None,
        }
    )


def start_server() -> tuple[subprocess.Popen[bytes], str]:
    """``omium serve`` on a free port with a home of its own; returns it and its URL."""
    import socket

    import httpx

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = os.environ | {
        "OMIUM_HOME": os.path.join(WORK, "server"),
        "OMIUM_HTTP_PORT": str(port),
        "OMIUM_GRPC_PORT": "-1",
        "OMIUM_API_TOKEN": TOKEN,
        "OMIUM_DATABASE": "bench",
    }
    env.pop("OMIUM_CONTROL_URL", None)
    server = subprocess.Popen(
        [sys.executable, "-m", "omium.cli.main", "serve"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while True:
        try:
            if httpx.get(f"{url}/v1/health", timeout=1).status_code == 200:
                return server, url
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline or server.poll() is not None:
            server.kill()
            raise SystemExit("omium serve did not start")
        time.sleep(0.2)


def main() -> None:
    if PHASE != "main":
        child_phase()
        return
    Path(WORK).mkdir(parents=True, exist_ok=True)
    if MODE == "sqlite":
        measure("omium-sqlite", "Omium embedded (SQLite control store)", {})
    elif MODE == "postgres":
        url = pg_database(unique("omium"))
        os.environ["BENCH_DB_URL"] = url
        measure("omium-postgres", "Omium (PostgreSQL control store)", {"BENCH_DB_URL": url})
    else:
        server, url = start_server()
        os.environ["BENCH_REMOTE_URL"] = url
        try:
            measure("omium-remote", "Omium remote (omium serve, control API)", {"BENCH_REMOTE_URL": url})
        finally:
            server.terminate()
            server.wait(30)


if __name__ == "__main__":
    main()
