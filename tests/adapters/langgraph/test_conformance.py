"""LangGraph's own checkpointer conformance suite (``langgraph-checkpoint-conformance``), run as-is.

Each store kind gets a fresh saver per capability suite; every capability, base and extended,
must pass. ``pytest -s`` prints the suite's report.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from langgraph.checkpoint.conformance import checkpointer_test, validate
from langgraph.checkpoint.conformance.capabilities import ALL_CAPABILITIES, BASE_CAPABILITIES
from langgraph.checkpoint.conformance.report import CapabilityReport

from omium.adapters.langgraph import OmiumSaver
from tests.adapters.langgraph.conftest import StoreFactory


def summary(report: CapabilityReport) -> str:
    """One line per capability: passed/failed counts and the failures."""
    lines = [f"{report.checkpointer_name}: {report.conformance_level()}"]
    for name, result in sorted(report.results.items()):
        lines.append(f"  {name}: {result.tests_passed} passed, {result.tests_failed} failed")
        lines.extend(f"    {failure}" for failure in result.failures)
    return "\n".join(lines)


def test_conformance(store_factory: StoreFactory, request: pytest.FixtureRequest) -> None:
    kind = request.node.callspec.params["store_factory"]

    @checkpointer_test(name=f"OmiumSaver[{kind}]")
    async def omium_saver() -> AsyncIterator[OmiumSaver]:
        yield OmiumSaver(store_factory())

    report = asyncio.run(validate(omium_saver))
    report.print_report()
    print(summary(report))
    assert report.passed_all_base(), summary(report)
    for capability in ALL_CAPABILITIES:
        result = report.results[capability.value]
        assert result.detected, f"{capability.value} not implemented"
        assert result.passed is True and result.tests_failed == 0, summary(report)
    assert report.conformance_level() == "FULL", summary(report)
    assert {c.value for c in BASE_CAPABILITIES} <= set(report.results)
