"""One executor per run: leases, RunBusy and fencing, with real processes on one server.

* Two processes racing for the same run ids (50 trials): one executes each run, the other gets
  ``RunBusy`` naming the holder; every side effect happens once.
* A process paused (SIGSTOP) past its lease loses the run to another; when it continues, none of
  its writes land (the store refuses its fencing token), it stops, and no effect is doubled.
* In one process: threads racing, ``wait=True``, and a lease lost between calls.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

import omium
from omium.errors import FencedOut, RunBusy
from omium.sdk.context import current
from omium.sdk.store import MemoryStore
from tests.conftest import ServerProcess

CHILD = Path(__file__).with_name("lease_child.py")
ROOT = Path(__file__).resolve().parents[2]
TRIALS = 50


def _child(server: ServerProcess, ledger: Path, *args: str) -> subprocess.Popen[str]:
    env = os.environ | {"PYTHONPATH": str(ROOT), "OMIUM_HOME": str(ledger.parent / "home")}
    return subprocess.Popen(
        [sys.executable, str(CHILD), args[0], server.url, str(ledger), *args[1:]],
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _ledger(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_two_processes_racing_for_one_run_one_executes(server_process: ServerProcess, tmp_path: Path) -> None:
    server = server_process.start()
    ledger = tmp_path / "ledger.jsonl"
    children = [_child(server, ledger, "race") for _ in range(2)]
    outcomes: Counter[str] = Counter()
    try:
        for trial in range(TRIALS):
            for child in children:  # both start the same run at (nearly) the same moment
                assert child.stdin is not None
                child.stdin.write(f"race-{trial}\n")
                child.stdin.flush()
            answers = [child.stdout.readline().split()[0] for child in children if child.stdout is not None]
            outcomes.update(answers)
            # The second either found the run busy, or came after it had completed (answered from
            # the record): it never executed a step itself.
            assert "done" in answers, answers
    finally:
        for child in children:
            child.communicate(timeout=60)  # closes its input, reads the rest, waits
    applied = _ledger(ledger)
    keys = Counter(str(a["key"]) for a in applied)
    assert all(count == 1 for count in keys.values()), [k for k, c in keys.items() if c > 1][:5]
    assert len(keys) == TRIALS * 12
    per_run = Counter(str(a["key"]).split(":")[0] for a in applied)
    assert all(count == 12 for count in per_run.values())
    pids_per_run: dict[str, set[object]] = {}
    for a in applied:
        pids_per_run.setdefault(str(a["key"]).split(":")[0], set()).add(a["pid"])
    assert all(len(pids) == 1 for pids in pids_per_run.values()), "a run was executed by both"
    assert outcomes["busy"] > 0, outcomes  # the race really happened


def test_a_process_paused_past_its_lease_is_fenced_out(server_process: ServerProcess, tmp_path: Path) -> None:
    server = server_process.start()
    ledger = tmp_path / "ledger.jsonl"
    first = _child(server, ledger, "single", "paused-1", "1.0", "nowait")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and len(_ledger(ledger)) < 3:
        time.sleep(0.02)
    first.send_signal(signal.SIGSTOP)
    try:
        time.sleep(1.6)  # its lease (1 s) runs out while it is stopped
        second = _child(server, ledger, "single", "paused-1", "5.0", "wait")
        _, err = second.communicate(timeout=120)
        assert second.returncode == 0, err
    finally:
        first.send_signal(signal.SIGCONT)
    out, err = first.communicate(timeout=60)
    assert first.returncode == 4, (out, err)
    assert "lost" in out or "superseded" in out, out
    from omium.sdk.remote_store import RemoteStore

    store = RemoteStore(server.url, token="test-token")
    try:
        assert store.get_run("paused-1").status == "completed"
        steps = store.steps("paused-1")
        lease = store.lease("paused-1")
    finally:
        store.close()
    assert len(steps) == 12 and all(s.status == "completed" for s in steps)
    assert lease is not None and lease.fence == 2
    # Every record of a call the second process made carries its fence; the first one's writes
    # after the takeover were refused, so none carries fence 1 past the takeover point.
    first_pid, second_pid = first.pid, second.pid
    applied = _ledger(ledger)
    assert {a["i"] for a in applied} == set(range(12))
    by_index: dict[object, set[str]] = {}
    for a in applied:
        by_index.setdefault(a["i"], set()).add(str(a["key"]))
    # No distinct effect applied twice: a step repeated by the second process used the same key.
    assert all(len(keys) == 1 for keys in by_index.values()), by_index
    late = [
        a
        for a in applied
        if a["pid"] == first_pid and a["i"] > max(int(str(b["i"])) for b in applied if b["pid"] == second_pid)
    ]
    assert not late, "the fenced-out process went on after the takeover"
    assert {s.fence for s in steps} <= {1, 2}


def test_threads_racing_for_one_run_one_executes() -> None:
    store = MemoryStore()
    ran: Counter[str] = Counter()
    gate = threading.Barrier(4)

    @omium.step
    def work(i: int) -> int:
        ran[omium.idempotency_key()] += 1
        time.sleep(0.01)
        return i

    @omium.workflow(name="lease_threads")
    def flow() -> int:
        return sum(work(i) for i in range(5))

    outcomes: list[str] = []

    def race() -> None:
        gate.wait()
        try:
            omium.run(flow, run_id="t-race", store=store)
            outcomes.append("done")
        except RunBusy as busy:
            assert busy.holder and busy.lease_until > 0
            outcomes.append("busy")

    threads = [threading.Thread(target=race) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert outcomes.count("done") >= 1 and "busy" in outcomes
    assert all(count == 1 for count in ran.values()) and len(ran) == 5


def test_wait_takes_the_run_when_the_holder_finishes() -> None:
    store = MemoryStore()
    started = threading.Event()

    @omium.step
    def slow() -> str:
        started.set()
        time.sleep(0.3)
        return "x"

    @omium.workflow(name="lease_wait")
    def flow() -> str:
        return slow()

    holder = threading.Thread(target=lambda: omium.run(flow, run_id="w", store=store))
    holder.start()
    started.wait(10)
    with pytest.raises(RunBusy, match="expires"):
        omium.run(flow, run_id="w", store=store)
    assert omium.run(flow, run_id="w", store=store, wait=True) == "x"  # answered from the record
    holder.join()


def test_an_execution_that_lost_its_lease_stops_at_its_next_call() -> None:
    store = MemoryStore()
    done: list[int] = []

    @omium.step
    def work(i: int) -> int:
        done.append(i)
        if i == 1:  # meanwhile another execution takes the run over (as after this one's expiry)
            context = current()
            store.release_lease("lost", context.holder, context.fence)
            store.acquire_lease("lost", "someone-else", 30)
        return i

    @omium.workflow(name="lease_lost")
    def flow() -> int:
        return sum(work(i) for i in range(4))

    with pytest.raises(FencedOut):
        omium.run(flow, run_id="lost", store=store)
    assert done == [0, 1]  # step 1's record was refused; step 2 never ran
    assert [s.position for s in store.steps("lost")] == [0]


def test_a_run_held_by_a_process_that_died_on_this_host_is_free_at_once() -> None:
    import socket

    from omium.sdk.store import RunRecord

    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    store = MemoryStore()
    store.create_run(RunRecord("orphan", "flow"))
    store.acquire_lease("orphan", f"{socket.gethostname()}:{dead.stdout.strip()}:x", 60)
    alive = store.acquire_lease("orphan", f"{socket.gethostname()}:{os.getpid()}:y", 60)
    assert alive.fence == 2  # the dead process's lease did not have to run out
    with pytest.raises(RunBusy):  # a live process's lease does
        store.acquire_lease("orphan", "elsewhere:1:z", 60)


def test_the_lease_length_is_a_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    from omium.config import Settings
    from omium.errors import ConfigError
    from omium.sdk.lease import lease_seconds

    monkeypatch.setenv("OMIUM_RUN_LEASE_SECONDS", "2.5")
    assert lease_seconds() == 2.5 == Settings.from_env().run_lease_seconds
    assert lease_seconds(7) == 7
    monkeypatch.setenv("OMIUM_RUN_LEASE_SECONDS", "soon")
    with pytest.raises(ConfigError, match="OMIUM_RUN_LEASE_SECONDS"):
        lease_seconds()
    with pytest.raises(ConfigError, match="positive"):
        lease_seconds(0)
