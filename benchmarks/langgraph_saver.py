"""LangGraph checkpointer benchmark: OmiumSaver against LangGraph's SqliteSaver on one chat graph.

One command (each system runs in a process of its own):

    python benchmarks/langgraph_saver.py            # 100-step invokes (3 rounds x 5), 500 turns
    python benchmarks/langgraph_saver.py --quick    # smoke run: 30 steps (1 x 2), 60 turns

The graph is a chat: a ``messages`` channel (``add_messages``) and a ``respond`` node that adds
an assistant message (about 700 bytes of unique, not very compressible text) and loops while the
history is shorter than ``n``. Systems:

* no checkpointer: the baseline;
* OmiumSaver on the embedded warehouse: ``omium.init()``'s default store (chdb behind the local
  write-ahead journal), in a fresh OMIUM_HOME;
* OmiumSaver on ``MemoryStore``;
* LangGraph's ``SqliteSaver`` (langgraph-checkpoint-sqlite) on a file. It runs in this venv when
  installed there, else in ``.bench/langgraph-venv`` (made on first use).

Per-step overhead: one invoke of N super-steps (the history grows to N messages), durability
"sync"; median time per super-step with the checkpointer minus the median without, over
interleaved rounds (each system once a round, so a busy machine weighs on all alike) of R timed
invokes each. Bytes: one thread of T turns (a ~300-byte user message and a ~700-byte reply
each), in a process and a store of its own: the SQLite file with its WAL;
the warehouse's parts on disk after merges (and their uncompressed size); for MemoryStore the
bytes of its blobs plus its records as JSON. Turn latency: median wall time of a turn over the T
turns (it includes reading the thread back). Goal, the product's: overhead <= SqliteSaver's and
bytes <= 1/10 of its. Results: .bench/langgraph_saver.json.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Annotated, Any, TypedDict

from langchain_core.messages import AIMessage, AnyMessage, HumanMessage
from langgraph.graph import END, START, StateGraph
from langgraph.graph.message import add_messages

HERE = Path(__file__).resolve().parent
SYSTEMS = ["none", "omium-embedded", "omium-memory", "sqlite"]
NAMES = {
    "none": "no checkpointer",
    "omium-embedded": "OmiumSaver (embedded warehouse + journal)",
    "omium-memory": "OmiumSaver (MemoryStore)",
    "sqlite": "LangGraph SqliteSaver",
}


# --- the workload (runs in the child, which imports omium only for Omium's systems)
def texts(count: int, size: int, seed: int) -> list[str]:
    """Unique chat-like texts: random words, so compression does not do the work."""
    rng = random.Random(seed)
    vocabulary = [
        "".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(2, 10)))
        for _ in range(5000)
    ]
    out = []
    for i in range(count):
        words = [f"#{i}"]
        while sum(len(w) + 1 for w in words) < size:
            words.append(rng.choice(vocabulary))
        out.append(" ".join(words))
    return out


class Chat(TypedDict):
    messages: Annotated[list[AnyMessage], add_messages]
    n: int


def build(checkpointer: Any, replies: list[str]) -> Any:
    counter = iter(range(10**9))

    def respond(state: Chat) -> dict[str, Any]:
        i = next(counter)
        return {"messages": [AIMessage(replies[i % len(replies)], id=f"ai-{i}")]}

    def more(state: Chat) -> str:
        return "respond" if len(state["messages"]) < state["n"] else END

    builder = StateGraph(Chat)
    builder.add_node("respond", respond)
    builder.add_edge(START, "respond")
    builder.add_conditional_edges("respond", more)
    return builder.compile(checkpointer=checkpointer)


def checkpointer_of(system: str, work: Path) -> tuple[Any, Any]:
    """(checkpointer, what to measure bytes with) of a system."""
    if system == "none":
        return None, None
    if system == "sqlite":
        import sqlite3

        from langgraph.checkpoint.sqlite import SqliteSaver

        return SqliteSaver(sqlite3.connect(work / "bench.db", check_same_thread=False)), work
    from omium.adapters.langgraph import OmiumSaver

    if system == "omium-memory":
        from omium.sdk.store import MemoryStore

        store = MemoryStore()
        return OmiumSaver(store), store
    from omium.config import Settings
    from omium.warehouse.store import embedded_store

    store = embedded_store(Settings.from_env().with_(home=work, database="bench"))
    return OmiumSaver(store), store


def stored_bytes(system: str, handle: Any) -> dict[str, int]:
    if system == "sqlite":
        files = [p for p in handle.iterdir() if p.name.startswith("bench.db")]
        return {"bytes": sum(p.stat().st_size for p in files)}
    if system == "omium-memory":
        records = [*handle._checkpoints.values(), *handle._steps.values(), *handle._runs.values()]
        blobs = sum(len(b) for b in handle._blobs.values())
        return {"bytes": blobs + sum(len(json.dumps(r.__dict__)) for r in records), "blob_bytes": blobs}
    handle.flush()
    wh = handle.backing.warehouse
    for table in ("omium_state_blobs", "omium_checkpoints", "omium_steps", "omium_runs"):
        wh.command(f"OPTIMIZE TABLE {table} FINAL")
    parts = "FROM system.parts WHERE database = 'bench' AND active AND table LIKE 'omium_%'"
    return {
        "bytes": int(wh.scalar(f"SELECT sum(bytes_on_disk) {parts}")),
        "uncompressed_bytes": int(wh.scalar(f"SELECT sum(data_uncompressed_bytes) {parts}")),
        "blob_bytes": int(wh.scalar("SELECT sum(size) FROM omium_state_blobs FINAL")),
    }


def child(args: argparse.Namespace) -> None:
    work = Path(args.work)
    replies = texts(max(args.steps, args.turns) + 10, 700, seed=1)
    questions = texts(args.turns, 300, seed=2)
    checkpointer, handle = checkpointer_of(args.system, work)
    graph = build(checkpointer, replies)
    sync = {"durability": "sync"} if checkpointer is not None else {}
    limit = {"recursion_limit": args.steps + 10}
    result: dict[str, Any] = {"system": args.system}
    if args.part == "steps":  # one invoke of `steps` super-steps, timed whole
        runs = []
        for r in range(args.repeats + 1):  # the first is a warm-up
            config = {"configurable": {"thread_id": f"steps-{r}"}, **limit}
            started = time.perf_counter()
            graph.invoke({"messages": [HumanMessage(questions[0])], "n": args.steps}, config, **sync)
            runs.append((time.perf_counter() - started) / args.steps)
            if r == 0 and args.system == "omium-embedded":
                handle.flush()  # the warehouse's first inserts (a one-time ~0.5 s) are warm-up too
        result["per_step_ms"] = [s * 1e3 for s in runs[1:]]
    # Bytes (in a process and a store of their own): a thread of `turns` turns, measured after.
    elif checkpointer is None:  # the baseline carries the history itself
        history: list[Any] = []
        turn_s = []
        for t in range(args.turns):
            started = time.perf_counter()
            out = graph.invoke({"messages": [*history, HumanMessage(questions[t])], "n": 0}, limit)
            turn_s.append(time.perf_counter() - started)
            history = out["messages"]
    else:
        config = {"configurable": {"thread_id": "chat"}, **limit}
        turn_s = []
        for t in range(args.turns):
            started = time.perf_counter()
            graph.invoke({"messages": [HumanMessage(questions[t])], "n": 0}, config, **sync)
            turn_s.append(time.perf_counter() - started)
        assert len(graph.get_state(config).values["messages"]) == 2 * args.turns
        result.update(stored_bytes(args.system, handle))
    if args.part == "turns":
        result["turn_ms"] = statistics.median(turn_s) * 1e3
        result["last_turns_ms"] = statistics.median(turn_s[-max(1, args.turns // 10) :]) * 1e3
    if args.system == "omium-embedded":
        handle.close()
    print(json.dumps(result))


# --- the parent: one process per system, then the table and the JSON
def sqlite_python() -> Path:
    try:
        import langgraph.checkpoint.sqlite  # noqa: F401

        return Path(sys.executable)
    except ImportError:
        sys.path.insert(0, str(HERE))
        from _harness import peer_python

        return peer_python("langgraph", "langgraph langgraph-checkpoint-sqlite")


def run_part(system: str, part: str, args: argparse.Namespace, bench_dir: Path) -> dict[str, Any]:
    """One part of one system in a fresh process and a fresh store."""
    python = sqlite_python() if system == "sqlite" else Path(sys.executable)
    with tempfile.TemporaryDirectory(dir=bench_dir) as work:
        argv = [str(python), __file__, "--system", system, "--part", part, "--work", work]
        argv += ["--steps", str(args.steps), "--turns", str(args.turns), "--repeats", str(args.repeats)]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=7200, env=os.environ)
        if done.returncode != 0:
            raise RuntimeError(f"{system} ({part}) failed:\n{done.stderr[-3000:]}")
        return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--turns", type=int, default=500)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds of the per-step part")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--system", choices=SYSTEMS, help=argparse.SUPPRESS)
    parser.add_argument("--part", choices=["steps", "turns"], help=argparse.SUPPRESS)
    parser.add_argument("--work", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.system:
        child(args)
        return
    if args.quick:
        args.steps, args.turns, args.repeats, args.rounds = 30, 60, 2, 1

    sys.path.insert(0, str(HERE))
    from _harness import BENCH_DIR

    BENCH_DIR.mkdir(exist_ok=True)
    # The per-step part in interleaved rounds (a busy machine then weighs on every system alike),
    # the turns part once.
    rows: dict[str, dict[str, Any]] = {system: {"per_step_ms": []} for system in SYSTEMS}
    for round_ in range(args.rounds):
        for system in SYSTEMS:
            print(f"per-step round {round_ + 1}/{args.rounds}: {NAMES[system]}...", flush=True)
            rows[system]["per_step_ms"] += run_part(system, "steps", args, BENCH_DIR)["per_step_ms"]
    for system in SYSTEMS:
        print(f"{args.turns} turns: {NAMES[system]}...", flush=True)
        rows[system].update(run_part(system, "turns", args, BENCH_DIR))
    base = rows.pop("none")
    base_step = statistics.median(base["per_step_ms"])
    for row in rows.values():
        row["per_step_median_ms"] = statistics.median(row["per_step_ms"])
        row["overhead_ms"] = row["per_step_median_ms"] - base_step
    sqlite = rows["sqlite"]
    print(
        f"\n{args.steps}-step invoke (overhead: median of {args.rounds} x {args.repeats}); "
        f"{args.turns}-turn chat thread (bytes, turn latency)"
    )
    print("system | per-step overhead ms | bytes stored | uncompressed | turn ms (median / last 10%)")
    print(
        f"{NAMES['none']} | (baseline {base_step:.3f} ms/step) | - | - | {base['turn_ms']:.2f} / {base['last_turns_ms']:.2f}"
    )
    for system, row in rows.items():
        raw = row.get("uncompressed_bytes", row["bytes"])
        print(
            f"{NAMES[system]} | {row['overhead_ms']:.3f} | {row['bytes']:,} | {raw:,} | "
            f"{row['turn_ms']:.2f} / {row['last_turns_ms']:.2f}"
        )
    ratios = {}
    for system in ("omium-embedded", "omium-memory"):
        row = rows[system]
        ratios[system] = {
            "overhead_vs_sqlite": row["overhead_ms"] / sqlite["overhead_ms"],
            "bytes_vs_sqlite": row["bytes"] / sqlite["bytes"],
            "uncompressed_bytes_vs_sqlite": row.get("uncompressed_bytes", row["bytes"]) / sqlite["bytes"],
        }
        print(
            f"{NAMES[system]} vs SqliteSaver: overhead {ratios[system]['overhead_vs_sqlite']:.2f}x "
            f"(goal <= 1), bytes {ratios[system]['bytes_vs_sqlite']:.4f}x (goal <= 0.1), "
            f"uncompressed {ratios[system]['uncompressed_bytes_vs_sqlite']:.4f}x"
        )
    out = {
        "steps": args.steps,
        "turns": args.turns,
        "repeats": args.repeats,
        "rounds": args.rounds,
        "baseline": base,
        "systems": rows,
        "ratios": ratios,
    }
    (BENCH_DIR / "langgraph_saver.json").write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
