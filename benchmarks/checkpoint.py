"""Checkpoint benchmark: durable per-step overhead, bytes stored and resume after a crash.

One command, all systems in one run on this machine (peers install into .bench/ once):

    python benchmarks/checkpoint.py            # 100-step overhead, 500-turn bytes, crash at 90
    python benchmarks/checkpoint.py --quick

The workflow's state is an accumulating message history: each step adds a 1 KB message.
* Omium: a @workflow of @step calls on the default embedded store (chdb warehouse behind a local
  write-ahead journal); each step returns its new message, the history is the sum of recorded
  results (stored once each). A step is durable when its journal line is written.
* LangGraph + langgraph-checkpoint-sqlite: a one-node graph looping N times over a
  ``messages`` list channel, SqliteSaver, ``durability="sync"``.
* DBOS on SQLite: a workflow of N ``@DBOS.step`` calls, each returning its new message.
Per-step overhead = (durable run - the same loop without durability) / steps; median of the
repeats. Bytes stored = on-disk size after the 500-turn run (chdb parts / SQLite file).
* Omium's remote store: the same workflow against ``omium serve`` in another process.
Resume: the run fails at step 90 and is resumed, and we count steps below 90 that ran again. DBOS
resumes the way it is built to: the process exits at step 90 and a new process's ``DBOS.launch()``
recovers the workflow (its resume time includes that launch).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _harness import BENCH_DIR, peer_python

COMMON = """
import json, os, statistics, sys, time
N, TURNS, REPEATS, CRASH_AT, WORK = (int(x) for x in sys.argv[1:6])
MESSAGE = "m" * 1024
def bare(n):
    history = []
    for i in range(n):
        history.append(MESSAGE + str(i))
    return len(history)
def du(path):
    total = 0
    for root, _, files in os.walk(path):
        total += sum(os.path.getsize(os.path.join(root, f)) for f in files)
    return total
def overhead(durable):
    rows = []
    for r in range(REPEATS):
        t = time.perf_counter(); bare(N); b = time.perf_counter() - t
        t = time.perf_counter(); durable(r); d = time.perf_counter() - t
        rows.append((d - b) / N)
    return statistics.median(rows)
"""

OMIUM = (
    COMMON
    + """
import omium
from omium import step, workflow
from omium.config import Settings
from omium.sdk import tracing
from omium.warehouse.store import embedded_store
home = sys.argv[6]
# The default store of a script with no server: embedded warehouse behind the local journal.
store = embedded_store(Settings.from_env().with_(home=__import__("pathlib").Path(home), database="bench"))
omium.init(store=store, tracer_provider=None); tracing.configure(None)
wh = store.backing.warehouse
executed = []
crash = {"at": -1}
@step
def turn(i):
    executed.append(i)
    if i == crash["at"]:
        crash["at"] = -1
        raise RuntimeError("crash")
    return MESSAGE + str(i)
@workflow
def conversation(n):
    history = []
    for i in range(n):
        history.append(turn(i))
    return len(history)
per_step = overhead(lambda r: omium.run(conversation, N, run_id=f"o{r}"))
store.flush()
wh.command("TRUNCATE TABLE omium_steps"); wh.command("TRUNCATE TABLE omium_state_blobs"); wh.command("TRUNCATE TABLE omium_runs")
omium.run(conversation, TURNS, run_id="bytes")
store.flush()
wh.command("OPTIMIZE TABLE omium_state_blobs FINAL"); wh.command("OPTIMIZE TABLE omium_steps FINAL")
stored = wh.scalar("SELECT sum(bytes_on_disk) FROM system.parts WHERE database = 'bench' AND active AND table LIKE 'omium_%'")
def crash_and_resume(run_id):
    # Fail at CRASH_AT, resume: (seconds to resume, completed steps executed again).
    crash["at"] = CRASH_AT
    try:
        omium.run(conversation, N, run_id=run_id)
    except RuntimeError:
        pass
    executed.clear()
    t = time.perf_counter(); omium.run(conversation, N, run_id=run_id); resume = time.perf_counter() - t
    return resume, len([i for i in executed if i < CRASH_AT])
resume, again = crash_and_resume("crash")
print(json.dumps({"system": "Omium (embedded warehouse + journal)", "per_step_ms": per_step * 1e3, "bytes": stored,
                  "resume_s": resume, "reexecuted": again}))
store.close()

# The remote store: the same workflow against `omium serve` (a separate process) over its control API.
import socket, subprocess, httpx
from omium.sdk.remote_store import RemoteStore
with socket.socket() as sock:
    sock.bind(("127.0.0.1", 0)); port = sock.getsockname()[1]
server_home = os.path.join(home, "server")
env = {**os.environ, "OMIUM_HOME": server_home, "OMIUM_HTTP_PORT": str(port), "OMIUM_GRPC_PORT": "-1",
       "OMIUM_API_TOKEN": "bench-token", "OMIUM_DATABASE": "bench"}
server = subprocess.Popen([sys.executable, "-m", "omium.cli.main", "serve"], env=env,
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
url = f"http://127.0.0.1:{port}"
deadline = time.monotonic() + 120
while True:
    try:
        if httpx.get(f"{url}/v1/health", timeout=1).status_code == 200:
            break
    except httpx.HTTPError:
        pass
    if time.monotonic() > deadline or server.poll() is not None:
        raise SystemExit("omium serve did not start")
    time.sleep(0.2)
try:
    remote = RemoteStore(url, token="bench-token")
    omium.init(store=remote, tracer_provider=None); tracing.configure(None)
    per_step = overhead(lambda r: omium.run(conversation, N, run_id=f"ro{r}"))
    resume, again = crash_and_resume("rcrash")
    print(json.dumps({"system": "Omium (remote store, omium serve)", "per_step_ms": per_step * 1e3, "bytes": None,
                      "resume_s": resume, "reexecuted": again}))
    remote.close()
finally:
    server.terminate(); server.wait(30)
"""
)

LANGGRAPH = (
    COMMON
    + """
import operator, sqlite3
from typing import Annotated, TypedDict
from langgraph.graph import StateGraph, START, END
from langgraph.checkpoint.sqlite import SqliteSaver
home = sys.argv[6]
executed = []
crash = {"at": -1}
class State(TypedDict):
    messages: Annotated[list, operator.add]
    n: int
def turn(state):
    i = len(state["messages"])
    executed.append(i)
    if i == crash["at"]:
        crash["at"] = -1
        raise RuntimeError("crash")
    return {"messages": [MESSAGE + str(i)]}
def more(state):
    return "turn" if len(state["messages"]) < state["n"] else END
builder = StateGraph(State)
builder.add_node("turn", turn)
builder.add_edge(START, "turn")
builder.add_conditional_edges("turn", more)
def saver(name):
    return SqliteSaver(sqlite3.connect(os.path.join(home, name), check_same_thread=False))
def run(graph, n, thread, inputs=True):
    config = {"configurable": {"thread_id": thread}, "recursion_limit": n + 10}
    return graph.invoke({"messages": [], "n": n} if inputs else None, config, durability="sync")
overhead_graph = builder.compile(checkpointer=saver("overhead.db"))
per_step = overhead(lambda r: run(overhead_graph, N, f"o{r}"))
bytes_graph = builder.compile(checkpointer=saver("bytes.db"))
run(bytes_graph, TURNS, "bytes")
stored = os.path.getsize(os.path.join(home, "bytes.db")) + sum(os.path.getsize(os.path.join(home, f)) for f in os.listdir(home) if f.startswith("bytes.db-"))
crash_graph = builder.compile(checkpointer=saver("crash.db"))
crash["at"] = CRASH_AT
try:
    run(crash_graph, N, "crash")
except RuntimeError:
    pass
executed.clear()
t = time.perf_counter(); run(crash_graph, N, "crash", inputs=False); resume = time.perf_counter() - t
print(json.dumps({"system": "LangGraph SqliteSaver (sync)", "per_step_ms": per_step * 1e3, "bytes": stored,
                  "resume_s": resume, "reexecuted": len([i for i in executed if i < CRASH_AT])}))
"""
)

DBOS = (
    COMMON
    + """
import subprocess
from dbos import DBOS, DBOSConfig, SetWorkflowID
home = sys.argv[6]
PHASE = os.environ.get("BENCH_PHASE", "main")
# The crash run gets its own database: a real crash (the process exits at step CRASH_AT), then a
# new process whose DBOS.launch() recovers the pending workflow.
db = os.path.join(home, "crash.sqlite" if PHASE != "main" else "dbos.sqlite")
DBOS(config={"name": "bench", "system_database_url": f"sqlite:///{db}"})
executed = []
@DBOS.step()
def turn(i):
    executed.append(i)
    if PHASE == "crash" and i == CRASH_AT:
        os._exit(9)
    return MESSAGE + str(i)
@DBOS.workflow()
def conversation(n):
    history = []
    for i in range(n):
        history.append(turn(i))
    return len(history)
def run(n, wid):
    with SetWorkflowID(wid):
        return conversation(n)
if PHASE == "crash":
    DBOS.launch()
    run(N, "crash")
    sys.exit(0)  # not reached
if PHASE == "resume":
    t = time.perf_counter()
    DBOS.launch()  # recovers the workflow the crash left pending
    DBOS.retrieve_workflow("crash").get_result()
    resume = time.perf_counter() - t
    print(json.dumps({"resume_s": resume, "reexecuted": len([i for i in executed if i < CRASH_AT])}))
    DBOS.destroy()
    sys.exit(0)
DBOS.launch()
per_step = overhead(lambda r: run(N, f"o{r}"))
size_before = du(home)
run(TURNS, "bytes")
stored = du(home) - size_before
DBOS.destroy()
crashed = subprocess.run([sys.executable, *sys.argv], env={**os.environ, "BENCH_PHASE": "crash"})
assert crashed.returncode == 9, crashed.returncode
resumed = subprocess.run([sys.executable, *sys.argv], env={**os.environ, "BENCH_PHASE": "resume"},
                         capture_output=True, text=True, check=True)
recovery = json.loads(resumed.stdout.strip().splitlines()[-1])
print(json.dumps({"system": "DBOS (SQLite)", "per_step_ms": per_step * 1e3, "bytes": stored, **recovery}))
"""
)


def run_peer(
    python: Path, code: str, args: argparse.Namespace, work: Path, src: str | None = None
) -> list[dict[str, object]]:
    """Run one system's script; each JSON line it prints is one row. ``src``: run Omium from that
    source tree instead of this one (``--baseline``); its rows are named "baseline ..."."""
    script = work / "peer.py"
    script.write_text(textwrap.dedent(code))
    result = subprocess.run(
        [
            str(python),
            str(script),
            str(args.steps),
            str(args.turns),
            str(args.repeats),
            str(args.crash_at),
            "0",
            str(work),
        ],
        capture_output=True,
        text=True,
        timeout=3600,
        env=os.environ | ({"PYTHONPATH": str(Path(src).resolve())} if src else {}),
    )
    if result.returncode != 0:
        raise RuntimeError(f"{python} failed:\\n{result.stderr[-3000:]}")
    rows = [json.loads(line) for line in result.stdout.strip().splitlines() if line.startswith("{")]
    for row in rows if src else []:
        row["system"] = f"baseline {row['system']}"
    return rows


def _medians(rows: list[dict[str, object]]) -> list[dict[str, object]]:
    """One row per system: the median of each number over the rounds, in first-seen order."""
    import statistics

    grouped: dict[str, list[dict[str, object]]] = {}
    for row in rows:
        grouped.setdefault(str(row["system"]), []).append(row)
    out = []
    for group in grouped.values():
        merged = dict(group[0])
        for key, value in group[0].items():
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                merged[key] = statistics.median(float(r[key]) for r in group)  # type: ignore[arg-type]
        out.append(merged)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--turns", type=int, default=500)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--crash-at", type=int, default=90)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--baseline", help="another Omium source tree (its src/) to run beside this one")
    parser.add_argument("--rounds", type=int, default=1, help="runs of each Omium tree (alternating)")
    parser.add_argument("--skip-peers", action="store_true", help="Omium only (with --baseline)")
    args = parser.parse_args()
    if args.quick:
        args.steps, args.turns, args.repeats, args.crash_at = 30, 60, 2, 20
    BENCH_DIR.mkdir(exist_ok=True)
    omiums: list[tuple[str, Path, str, str | None]] = [("omium", Path(sys.executable), OMIUM, None)]
    if args.baseline:
        omiums.append(("omium baseline", Path(sys.executable), OMIUM, args.baseline))
    peers: list[tuple[str, Path, str, str | None]] = []
    for round_ in range(args.rounds):
        peers += omiums if round_ % 2 == 0 else omiums[::-1]
    if not args.skip_peers:
        peers += [
            ("langgraph", peer_python("langgraph", "langgraph langgraph-checkpoint-sqlite"), LANGGRAPH, None),
            ("dbos", peer_python("dbos", "dbos"), DBOS, None),
        ]
    results = []
    for name, python, code, src in peers:
        with tempfile.TemporaryDirectory(dir=BENCH_DIR) as tmp:
            print(f"running {name}...", flush=True)
            results.extend(run_peer(python, code, args, Path(tmp), src))
    if args.rounds > 1 or args.baseline:
        results = _medians(results)
    print()
    print(
        f"{args.steps}-step workflow, 1 KB per step; bytes after {args.turns} turns; crash at {args.crash_at}"
    )
    print("system | per-step overhead ms (median) | bytes stored | resume s | completed steps re-executed")
    for row in results:
        resume = "n/a" if row["resume_s"] is None else f"{row['resume_s']:.3f}"
        stored = "(server's warehouse)" if row["bytes"] is None else f"{row['bytes']:,}"
        print(f"{row['system']} | {row['per_step_ms']:.2f} | {stored} | {resume} | {row['reexecuted']}")
    by_system = {
        str(row["system"]).split(" (")[0] + (" remote" if "remote" in str(row["system"]) else ""): row
        for row in results
    }
    if args.baseline:
        for kind in ("Omium", "Omium remote"):
            new, old = by_system[kind], by_system[f"baseline {kind}"]
            ratio = float(new["per_step_ms"]) / float(old["per_step_ms"])  # type: ignore[arg-type]
            print(f"{kind} per-step overhead, this tree / baseline (median of {args.rounds}): {ratio:.3f}x")
    if args.skip_peers:
        (BENCH_DIR / "checkpoint.json").write_text(json.dumps(results, indent=2))
        return
    omium, remote, langgraph = (
        by_system["Omium"],
        by_system["Omium remote"],
        by_system["LangGraph SqliteSaver"],
    )
    base = float(langgraph["per_step_ms"])  # type: ignore[arg-type]
    print(
        f"\nper-step overhead vs SqliteSaver: in-process {float(omium['per_step_ms']) / base:.2f}x, "  # type: ignore[arg-type]
        f"remote {float(remote['per_step_ms']) / base:.2f}x; "  # type: ignore[arg-type]
        f"bytes at {args.turns} turns: {int(omium['bytes']) / int(langgraph['bytes']):.4f}x"
    )  # type: ignore[call-overload]
    (BENCH_DIR / "checkpoint.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
