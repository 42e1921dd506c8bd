"""Processes of the scale-out tests (``test_scale_out.py``): a workflow the workers host, and
compare-and-set clients.

The workflow ``scale_order`` runs ``steps`` side-effecting tool calls. Each call appends one line
``{"key", "run", "i", "pid", "t"}`` to the ledger (``OMIUM_TEST_LEDGER``), which stands for an external
system that honours idempotency keys: a call repeated after a crash shows as a second line with
the same key; a doubled side effect would show as a second key for one step.

CAS clients (``python -m tests.collector.scale_worker MODE OUT [URL ...]``) print ``ready``, wait
for a line on stdin (so that every client starts at once), then make compare-and-set attempts,
alternately on the status of the run ``cas`` (``update_run``) and on the shared-state key
``cas/counter`` (``write_state``), and write what they were granted to OUT as JSON:

- ``remote OUT URL...``: ``THREADS`` threads, each with a ``RemoteStore`` per server, attempt
  ``i`` going to server ``i // 2 % len(URLS)``; ``ATTEMPTS`` attempts each, or, with ``UNTIL`` set,
  until that file exists, ``PAUSE`` seconds apart (then a server that does not answer makes way
  for the next one; a write in flight when it died has an unknown outcome);
- ``embedded OUT``: ``omium.init()`` with no server (the embedded default in ``$OMIUM_HOME``),
  one thread; it also says whether it got the embedded warehouse.
- ``ship OUT``: ``omium.init()``, ship the whole outbox into the embedded warehouse, and count
  there the analytical copies of the run ``cas`` and of ``cas/counter``.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx

import omium
from omium import tool, workflow
from omium.errors import ConflictError, ServerError
from omium.sdk.store import CheckpointStore

RUN_ID = "cas"
NAMESPACE, KEY = "cas", "counter"


@tool
def effect(order: str, i: int, pause: float) -> str:
    line = {"key": omium.idempotency_key(), "run": order, "i": i, "pid": os.getpid(), "t": time.time()}
    # One write(2) with O_APPEND: lines of concurrent processes never interleave.
    fd = os.open(os.environ["OMIUM_TEST_LEDGER"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, (json.dumps(line) + "\n").encode())
    finally:
        os.close(fd)
    time.sleep(pause)
    return f"{order}:{i}"


@workflow
def scale_order(order: str, steps: int = 3, pause: float = 0.0) -> list[str]:
    return [effect(order, i, pause) for i in range(steps)]


class Granted:
    """What one client thread was granted."""

    def __init__(self) -> None:
        self.runs: list[list[Any]] = []  # [version, error text written]
        self.states: list[list[Any]] = []  # [version, value hash written]
        self.attempts = 0
        self.conflicts = 0
        self.unknown = 0  # the server died with the write in flight: committed or not, unknown
        self.failures: list[str] = []


def attempt_cas(
    stores: list[CheckpointStore],
    name: str,
    granted: Granted,
    done: Any,
    *,
    failover: bool = False,
    pause: float = 0.0,
) -> None:
    """CAS attempts until ``done(i)``, ``pause`` seconds apart. With ``failover``, a server that
    fails (killed) makes way for the next one; otherwise any failure ends the thread (and is
    reported)."""
    run_version: int | None = None
    state_version: int | None = None
    i = 0
    while not done(i):
        store = stores[(i // 2) % len(stores)]  # both kinds of write through every server
        tag = f"{name}-{i}"
        in_flight = False
        try:
            if i % 2 == 0:
                if run_version is None:
                    run_version = store.get_run(RUN_ID).version
                granted.attempts += 1
                in_flight = True
                try:
                    run = store.update_run(RUN_ID, run_version, status="running", error=tag)
                    granted.runs.append([run.version, tag])
                    run_version = run.version
                except ConflictError:
                    granted.conflicts += 1
                    run_version = None
            else:
                if state_version is None:
                    current = store.read_state(NAMESPACE, KEY)
                    state_version = current.version if current else 0
                granted.attempts += 1
                in_flight = True
                try:
                    state = store.write_state(NAMESPACE, KEY, state_version, tag, writer=name)
                    granted.states.append([state.version, tag])
                    state_version = state.version
                except ConflictError:
                    granted.conflicts += 1
                    state_version = None
        except ServerError as error:  # no answer, or a 5xx from a server on its way down
            if not failover:
                granted.failures.append(f"{type(error).__name__}: {error}")
                return
            # Refused connections never carried the write; anything else may have committed.
            granted.unknown += int(in_flight and not isinstance(error.__cause__, httpx.ConnectError))
            run_version = state_version = None
            time.sleep(0.01)
        except Exception as error:  # reported to the test, which fails on it
            granted.failures.append(f"{type(error).__name__}: {error}")
            return
        i += 1
        if pause:
            time.sleep(pause)


def remote(out: Path, urls: list[str]) -> dict[str, Any]:
    from omium.sdk.remote_store import RemoteStore

    threads = int(os.environ.get("THREADS", "2"))
    attempts = int(os.environ.get("ATTEMPTS", "0"))
    until = os.environ.get("UNTIL")
    token = os.environ["OMIUM_API_TOKEN"]
    stores = [[RemoteStore(url, token=token, timeout=10) for url in urls] for _ in range(threads)]
    results = [Granted() for _ in range(threads)]
    failover = until is not None

    def done(i: int) -> bool:
        return Path(until).exists() if until else i >= attempts

    print("ready", flush=True)
    sys.stdin.readline()
    started = time.monotonic()
    workers = [
        threading.Thread(
            target=attempt_cas,
            args=(stores[t], f"{out.stem}.{t}", results[t], done),
            kwargs={"failover": failover, "pause": float(os.environ.get("PAUSE", "0"))},
        )
        for t in range(threads)
    ]
    for thread in workers:
        thread.start()
    for thread in workers:
        thread.join()
    return _merged(results, time.monotonic() - started)


def embedded(out: Path) -> dict[str, Any]:
    from omium.warehouse.store import EmbeddedStore

    store = omium.init()
    assert isinstance(store, EmbeddedStore), type(store)
    holds_warehouse = store.warehouse is not None
    attempts = int(os.environ["ATTEMPTS"])
    print("ready", flush=True)
    sys.stdin.readline()
    started = time.monotonic()
    granted = Granted()
    attempt_cas([store], out.stem, granted, lambda i: i >= attempts)
    return _merged([granted], time.monotonic() - started) | {"warehouse": holds_warehouse}


def ship(out: Path) -> dict[str, Any]:
    from omium.sdk.sql.outbox import Outbox
    from omium.warehouse.store import EmbeddedStore

    store = omium.init()
    assert isinstance(store, EmbeddedStore) and store.warehouse is not None and store.shipper is not None
    store.shipper.drain()
    run = store.warehouse.query_rows(
        "SELECT max(version) AS v FROM omium_runs FINAL WHERE run_id = {r:String}", {"r": RUN_ID}
    )
    states = store.warehouse.query_rows(
        "SELECT count() AS n, max(version) AS v FROM omium_shared_state FINAL "
        "WHERE namespace = {n:String} AND key = {k:String}",
        {"n": NAMESPACE, "k": KEY},
    )
    return {
        "run_version": int(run[0]["v"]),
        "state_rows": int(states[0]["n"]),
        "state_version": int(states[0]["v"]),
        "backlog": Outbox(store).backlog(),
    }


def _merged(results: list[Granted], seconds: float) -> dict[str, Any]:
    return {
        "runs": [g for r in results for g in r.runs],
        "states": [g for r in results for g in r.states],
        "attempts": sum(r.attempts for r in results),
        "conflicts": sum(r.conflicts for r in results),
        "unknown": sum(r.unknown for r in results),
        "failures": [f for r in results for f in r.failures],
        "seconds": seconds,
    }


def main() -> None:
    mode, out = sys.argv[1], Path(sys.argv[2])
    if mode == "remote":
        result = remote(out, sys.argv[3:])
    elif mode == "embedded":
        result = embedded(out)
    else:
        result = ship(out)
    out.write_text(json.dumps(result))


if __name__ == "__main__":
    main()
