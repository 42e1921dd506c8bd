"""LangGraph in benchmarks/checkpoint.py: a one-node graph looping over a ``messages`` list channel.

``BENCH_MODE``: ``sqlite`` (langgraph-checkpoint-sqlite's SqliteSaver on a file) or ``postgres``
(langgraph-checkpoint-postgres's PostgresSaver on a fresh database of the benchmark's server),
``durability="sync"``. The crash is an exception raised in step CRASH_AT; the graph is then
invoked again on the same thread (``None`` input: resume from its last checkpoint).
"""

from __future__ import annotations

import operator
import os
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated, Any, TypedDict

from _common import (
    CRASH_AT,
    MESSAGES,
    MODE,
    STEPS,
    TURNS,
    WORK,
    overhead,
    pg_bytes,
    pg_database,
    report,
    sqlite_bytes,
    unique,
)
from langgraph.graph import END, START, StateGraph

executed: list[int] = []
crash = {"at": -1}


class State(TypedDict):
    messages: Annotated[list[str], operator.add]
    n: int


def turn(state: State) -> dict[str, list[str]]:
    i = len(state["messages"])
    executed.append(i)
    if i == crash["at"]:
        crash["at"] = -1
        raise RuntimeError("crash")
    return {"messages": [MESSAGES[i]]}


def more(state: State) -> str:
    return "turn" if len(state["messages"]) < state["n"] else END


builder = StateGraph(State)
builder.add_node("turn", turn)
builder.add_edge(START, "turn")
builder.add_conditional_edges("turn", more)


@contextmanager
def saver(name: str) -> Iterator[tuple[Any, str]]:
    """A set-up checkpointer on a store of its own, and where that store is (file or URL)."""
    if MODE == "postgres":
        from langgraph.checkpoint.postgres import PostgresSaver

        url = pg_database(unique(f"langgraph_{name}"))
        with PostgresSaver.from_conn_string(url) as postgres:
            postgres.setup()
            yield postgres, url
        return
    from langgraph.checkpoint.sqlite import SqliteSaver

    path = os.path.join(WORK, f"{name}.db")
    connection = sqlite3.connect(path, check_same_thread=False)
    try:
        sqlite = SqliteSaver(connection)
        sqlite.setup()
        yield sqlite, path
    finally:
        connection.close()


def size(where: str) -> int:
    return pg_bytes(where) if MODE == "postgres" else sqlite_bytes(where)


def run(graph: Any, n: int, thread: str, inputs: bool = True) -> Any:
    config = {"configurable": {"thread_id": thread}, "recursion_limit": n + 10}
    return graph.invoke({"messages": [], "n": n} if inputs else None, config, durability="sync")


def main() -> None:
    with saver("overhead") as (checkpointer, _):
        graph = builder.compile(checkpointer=checkpointer)
        per_step = overhead(lambda r: run(graph, STEPS, f"o{r}"))
    with saver("bytes") as (checkpointer, where):
        before = size(where)
        run(builder.compile(checkpointer=checkpointer), TURNS, "bytes")
        stored = size(where) - before
    with saver("crash") as (checkpointer, _):
        graph = builder.compile(checkpointer=checkpointer)
        crash["at"] = CRASH_AT
        try:
            run(graph, STEPS, "crash")
        except RuntimeError:
            pass
        executed.clear()
        started = time.perf_counter()
        run(graph, STEPS, "crash", inputs=False)
        resume = time.perf_counter() - started
    postgres = MODE == "postgres"
    report(
        {
            "key": "langgraph-postgres" if postgres else "langgraph-sqlite",
            "system": f"LangGraph {'PostgresSaver' if postgres else 'SqliteSaver'} (sync)",
            "note": "crash: an exception at the step, resumed in the same process",
            "per_step_ms": per_step * 1e3,
            "bytes": stored,
            "resume_s": resume,
            "reexecuted": len([i for i in executed if i < CRASH_AT]),
        }
    )


if __name__ == "__main__":
    main()
