"""The workflow the workers of benchmarks/control_plane.py run: three recorded steps, no I/O, so a
run's time is the control plane's (claim, lease, steps, finish)."""

from __future__ import annotations

from omium import step, workflow


@step
def add(total: int, value: int) -> int:
    return total + value


@workflow
def bench_flow(n: int) -> int:
    total = 0
    for value in range(3):
        total = add(total, n + value)
    return total
