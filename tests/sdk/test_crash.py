"""kill -9 at random points of real workflow processes: after resume, every side effect happened
exactly once and the results equal a crash-free run."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration
WORKER = Path(__file__).with_name("crash_worker.py")
TRIALS = int(os.environ.get("OMIUM_CRASH_TRIALS", "100"))
# Enough work that the kills land in the middle of it (recording a call costs ~0.1 ms).
RUNS = 300


def _start(
    home: Path, ledger: Path, results: Path, runs: int, mode: str = "sequential"
) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, str(WORKER), str(home), str(ledger), str(runs), str(results), mode],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).resolve().parents[2],
    )


def _expected(runs: int) -> dict[str, dict[str, object]]:
    out = {}
    for index in range(runs):
        customer = f"customer-{index}"
        score = 600 + sum(map(ord, customer)) % 250
        offer = f"offer:{customer}:{score}"
        out[customer] = {
            "kyc": f"kyc:{customer}",
            "score": score,
            "offer": offer,
            "fee": f"fee:{customer}",
            "sent": f"email:{customer}:{offer}",
        }
    return out


@pytest.mark.parametrize(
    ("mode", "trials", "runs", "calls"),
    [
        ("sequential", TRIALS, RUNS, ["0", "1", "2", "3", "4"]),
        # Two tools in flight at once, in two threads: their call ids are their threads' places.
        ("concurrent", max(TRIALS // 3, 10), RUNS // 3, ["0.0", "1.0", "2", "3", "4"]),
    ],
)
def test_kill_9_at_random_points_applies_every_effect_once(
    tmp_path: Path, mode: str, trials: int, runs: int, calls: list[str]
) -> None:
    rng = random.Random(2026)
    ledger, results = tmp_path / "ledger.jsonl", tmp_path / "results.json"
    kills = 0
    while kills < trials:
        proc = _start(tmp_path, ledger, results, runs, mode)
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "ready", proc.stderr.read() if proc.stderr else ""
        time.sleep(rng.uniform(0.0, 0.25))
        if proc.poll() is not None:
            proc.communicate()  # its pipes closed
            break  # finished before the kill: every run is done
        proc.kill()
        proc.wait(30)
        proc.stdout.close()
        if proc.stderr:
            proc.stderr.close()
        kills += 1
    # A last, undisturbed process finishes what is left (and answers completed runs from the record).
    proc = _start(tmp_path, ledger, results, runs, mode)
    _, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err
    assert kills >= min(trials, 10)
    assert json.loads(results.read_text()) == _expected(runs)
    entries = [json.loads(line) for line in ledger.read_text().splitlines()]
    keys = [entry["key"] for entry in entries]
    assert len(keys) == len(set(keys)), "a side effect was applied twice"
    assert sorted(keys) == sorted(f"run-{i}:{c}" for i in range(runs) for c in calls)
    calls = (tmp_path / "ledger.calls").read_text().split()
    # Crashes between an effect and its record made some calls run again; the keys kept them single.
    assert len(calls) >= len(keys)
    if kills >= 50:
        assert len(calls) > len(keys), "no kill landed between an effect and its record"
