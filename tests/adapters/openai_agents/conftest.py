"""Offline Agents SDK runs: Omium's processor replaces the SDK's (so nothing is exported to OpenAI)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from omium.adapters.openai_agents import OmiumTracingProcessor, instrument, uninstrument
from omium.testing import Runtime, runtime
from tests.adapters.openai_agents import flows


@pytest.fixture(autouse=True)
def processor() -> Iterator[OmiumTracingProcessor]:
    """Omium's tracing processor, the only one registered with the SDK."""
    installed = instrument()
    yield installed
    uninstrument()


@pytest.fixture
def rt() -> Iterator[Runtime]:
    """An in-memory store and span exporter; the example's tool counts reset."""
    flows.executed.clear()
    with runtime() as test_runtime:
        yield test_runtime
