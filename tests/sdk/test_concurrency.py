"""Concurrent agents in one run: asyncio.gather, TaskGroup, nested gathers, thread pools and
hand-offs between agents running at once, under random delays.

For every interleaving: each call is recorded once, under the agent that made it; idempotency
keys are distinct; a run interrupted at a random call and resumed re-executes no completed call
(whatever order the tasks finish in this time); a verification replay reports "identical".
"""

from __future__ import annotations

import asyncio
import random
import threading
import time
from collections import Counter
from typing import Any

import pytest

import omium
from omium.errors import OutsideRunError
from omium.sdk.concurrency import ThreadPoolExecutor, spawn, to_thread
from omium.sdk.consensus import Consensus
from omium.sdk.context import UnsupportedConcurrency
from omium.sdk.store import MemoryStore

SEEDS = range(200)


class Crash(BaseException):
    """Stands for the process dying at a call (a BaseException: nothing catches it)."""


class World:
    """Side effects keyed by idempotency key, random delays, and an optional crash point."""

    def __init__(self, seed: int, crash_at: int | None = None) -> None:
        self.rng = random.Random(seed)
        self.effects: Counter[str] = Counter()
        self.by_name: dict[str, str] = {}
        self.calls = 0
        self.crash_at = crash_at
        self.dead = False  # after the crash nothing else happens, as in a killed process
        self.lock = threading.Lock()

    def delay(self) -> float:
        with self.lock:
            return self.rng.random() * 0.002

    def effect(self, name: str) -> str:
        key = omium.idempotency_key()
        with self.lock:
            self.calls += 1
            if self.dead or (self.crash_at is not None and self.calls == self.crash_at):
                self.dead = True
                raise Crash(name)
            self.effects[key] += 1
            self.by_name[name] = key
        return name


WORLD = World(0)


@omium.step
async def fetch(name: str) -> str:
    await asyncio.sleep(WORLD.delay())
    return WORLD.effect(name)


@omium.step
def fetch_sync(name: str) -> str:
    time.sleep(WORLD.delay())
    return WORLD.effect(name)


@omium.agent
async def researcher() -> str:
    return await fetch("research")


@omium.agent
async def writer() -> str:
    await asyncio.sleep(WORLD.delay())
    return await fetch("write")


@omium.workflow(name="concurrency_snippet")
async def snippet() -> list[str]:
    return list(await asyncio.gather(researcher(), writer()))


@omium.agent
async def worker(index: int, depth: int) -> list[str]:
    """An agent that makes calls, and at depth > 0 runs two sub-agents at once (nested gathers)."""
    out = [await fetch(f"w{index}-d{depth}-a")]
    if depth:
        parts = await asyncio.gather(worker(index * 2, depth - 1), worker(index * 2 + 1, depth - 1))
        out += [x for part in parts for x in part]
    out.append(await fetch(f"w{index}-d{depth}-b"))
    return out


@omium.workflow(name="concurrency_nested")
async def nested() -> list[str]:
    return await worker(1, 2)


@omium.workflow(name="concurrency_taskgroup")
async def taskgroup(width: int) -> list[str]:
    async with asyncio.TaskGroup() as group:
        tasks = [group.create_task(fetch(f"tg{i}")) for i in range(width)]
    first = [t.result() for t in tasks]
    return [*first, await fetch("after")]


@omium.agent
def threaded(index: int) -> list[str]:
    return [fetch_sync(f"t{index}-a"), fetch_sync(f"t{index}-b")]


@omium.workflow(name="concurrency_threads")
def threads(width: int) -> list[str]:
    with ThreadPoolExecutor(max_workers=4) as pool:
        futures = [pool.submit(threaded, i) for i in range(width)]
        results = [x for f in futures for x in f.result()]
    return [*results, fetch_sync("joined")]


def _ring_agent(index: int, count: int) -> Any:
    @omium.agent(name=f"agent{index}")
    async def ring() -> str:
        consensus = Consensus(timeout=10, poll_interval=0.001)
        seen = await fetch(f"ring{index}-work")
        if index:
            seen = await consensus.receive(f"agent{index - 1}")
        await asyncio.sleep(WORLD.delay())
        if index < count - 1:
            await consensus.broadcast(f"agent{index + 1}", f"{seen}>{index}")
        return str(seen)

    return ring


@omium.workflow(name="concurrency_handoffs")
async def handoffs(count: int) -> list[str]:
    return list(await asyncio.gather(*(_ring_agent(i, count)() for i in range(count))))


def _run(flow: Any, store: MemoryStore, run_id: str, *args: Any) -> Any:
    return omium.run(flow, *args, run_id=run_id, store=store)


def _is_crash(error: BaseException) -> bool:
    if isinstance(error, BaseExceptionGroup):
        return all(_is_crash(e) for e in error.exceptions)
    return isinstance(error, Crash)


def _check_recording(store: MemoryStore, run_id: str, world: World) -> None:
    steps = [s for s in store.steps(run_id) if s.status == "completed"]
    keys = [s.idempotency_key for s in steps]
    assert len(keys) == len(set(keys)), "two calls shared an idempotency key"
    assert len({s.call_id for s in steps}) == len(steps)
    assert all(count == 1 for count in world.effects.values()), world.effects


def test_the_issue_snippet_records_each_call_once_under_its_agent() -> None:
    for seed in SEEDS:
        global WORLD
        WORLD = World(seed)
        store = MemoryStore()
        assert _run(snippet, store, f"s{seed}") == ["research", "write"]
        steps = {s.name: s for s in store.steps(f"s{seed}")}
        fetched = sorted(
            (s.agent, s.idempotency_key) for s in store.steps(f"s{seed}") if s.name.endswith("fetch")
        )
        assert len(fetched) == 2, steps
        by_key = {key: name for name, key in WORLD.by_name.items()}
        agents = {by_key[key]: agent for agent, key in fetched}
        assert agents == {"research": "researcher", "write": "writer"}
        assert WORLD.by_name["research"] != WORLD.by_name["write"]
        _check_recording(store, f"s{seed}", WORLD)
        assert omium.replay(snippet, run_id=f"s{seed}", store=store).identical


@pytest.mark.parametrize(
    ("flow", "args", "effects"),
    [
        (snippet, (), 2),
        (nested, (), 14),
        (taskgroup, (5,), 6),
        (threads, (5,), 11),
        (handoffs, (2,), 2),
        (handoffs, (5,), 5),
        (handoffs, (8,), 8),
    ],
    ids=["gather", "nested-gathers", "taskgroup", "thread-pool", "handoffs-2", "handoffs-5", "handoffs-8"],
)
def test_interrupted_at_a_random_call_and_resumed_nothing_completed_runs_again(
    flow: Any, args: tuple[Any, ...], effects: int
) -> None:
    global WORLD
    for seed in SEEDS:
        crash_at = random.Random(seed).randint(1, effects)
        store = MemoryStore()
        run_id = f"{flow.__name__}-{seed}"
        WORLD = World(seed, crash_at=crash_at)
        with pytest.raises(BaseException) as crashed:
            _run(flow, store, run_id, *args)
        assert _is_crash(crashed.value), crashed.value
        done_before = dict(WORLD.effects)
        # The resumed execution sees other delays: tasks finish in another order.
        resumed = World(seed + 10_000)
        resumed.effects.update(done_before)
        WORLD = resumed
        _run(flow, store, run_id, *args)
        _check_recording(store, run_id, WORLD)
        completed = [s for s in store.steps(run_id) if s.status == "completed" and s.kind == "step"]
        assert len(completed) == len(WORLD.effects) == effects
        report = omium.replay(flow, *args, run_id=run_id, store=store)
        assert report.identical, report.divergence


def test_calls_of_one_agent_are_attributed_to_it_in_every_task() -> None:
    global WORLD
    WORLD = World(7)
    store = MemoryStore()
    _run(nested, store, "attrib")
    assert {s.agent for s in store.steps("attrib")} == {"worker"}
    ids = sorted((s.call_id for s in store.steps("attrib")), key=lambda c: tuple(map(int, c.split("."))))
    assert len(ids) == 14 and ids[0] == "0"


def test_a_thread_that_copies_the_run_context_by_hand_gets_a_clear_error() -> None:
    @omium.workflow(name="concurrency_bare_to_thread")
    async def bare() -> list[str]:
        # The thread shares the workflow task's place in the run (asyncio.to_thread copies it).
        return [await asyncio.to_thread(fetch_sync, "x"), await fetch("y")]

    with pytest.raises(UnsupportedConcurrency, match=r"omium\.spawn"):
        omium.run(bare, run_id="bare", store=MemoryStore())


def test_a_bare_thread_does_not_carry_the_run() -> None:
    errors: list[BaseException] = []

    @omium.workflow(name="concurrency_bare_thread")
    def bare() -> None:
        def body() -> None:
            try:
                fetch_sync("x")
            except BaseException as error:
                errors.append(error)

        thread = threading.Thread(target=body)
        thread.start()
        thread.join()

    omium.run(bare, run_id="bare-thread", store=MemoryStore())
    assert len(errors) == 1 and isinstance(errors[0], OutsideRunError)
    assert "omium.spawn" in str(errors[0])


def test_to_thread_inside_gathered_tasks_is_deterministic() -> None:
    """Each task of a gather has its own place, which the thread it hands work to adopts."""
    global WORLD
    WORLD = World(5)

    @omium.workflow(name="concurrency_gathered_to_thread")
    async def gathered() -> list[str]:
        return list(
            await asyncio.gather(asyncio.to_thread(fetch_sync, "x"), asyncio.to_thread(fetch_sync, "y"))
        )

    store = MemoryStore()
    assert omium.run(gathered, run_id="gt", store=store) == ["x", "y"]
    assert {s.call_id for s in store.steps("gt")} == {"0.0", "1.0"}
    assert omium.replay(gathered, run_id="gt", store=store).identical


def test_spawn_and_to_thread_record_under_their_own_ids() -> None:
    global WORLD
    WORLD = World(3)

    @omium.workflow(name="concurrency_spawn")
    async def spawned() -> list[str]:
        future = spawn(fetch_sync, "spawned")
        other = await to_thread(fetch_sync, "to_thread")
        return [future.result(), other]

    store = MemoryStore()
    assert omium.run(spawned, run_id="sp", store=store) == ["spawned", "to_thread"]
    ids = {s.call_id for s in store.steps("sp")}
    assert ids == {"0.0", "1.0"}
    assert omium.run(spawned, run_id="sp", store=store) == ["spawned", "to_thread"]
    assert omium.replay(spawned, run_id="sp", store=store).identical


def test_a_run_started_inside_a_task_of_another_gives_the_task_its_place_back() -> None:
    global WORLD
    WORLD = World(11)

    @omium.workflow(name="concurrency_inner")
    def inner() -> str:
        return fetch_sync("inner")

    @omium.agent
    async def outer_agent(store: MemoryStore) -> list[str]:
        first = await fetch("before")
        nested = omium.run(inner, run_id="inner-run", store=store)  # another run, in this task
        return [first, nested, await fetch("after")]

    @omium.workflow(name="concurrency_outer")
    async def outer(store: MemoryStore) -> list[list[str]]:
        return list(await asyncio.gather(outer_agent(store), outer_agent(store)))

    store = MemoryStore()
    omium.run(outer, store, run_id="outer-run", store=store)
    ids = sorted(s.call_id for s in store.steps("outer-run"))
    assert ids == ["0.0", "0.1", "1.0", "1.1"]  # each task kept its own place around the nested run
    assert [s.call_id for s in store.steps("inner-run")] == ["0"]


def test_threads_started_inside_a_step_are_part_of_it() -> None:
    keys: list[str] = []

    @omium.step
    def fan_out() -> int:
        with ThreadPoolExecutor(max_workers=2) as pool:
            keys.extend(pool.map(lambda _: omium.idempotency_key(), range(3)))
        return len(keys)

    @omium.workflow(name="concurrency_step_threads")
    def flow() -> int:
        return fan_out()

    store = MemoryStore()
    assert omium.run(flow, run_id="fan", store=store) == 3
    assert keys == ["fan:0"] * 3
    assert [s.call_id for s in store.steps("fan")] == ["0"]
