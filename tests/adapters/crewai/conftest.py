"""Fixtures of the CrewAI adapter tests.

CrewAI pins versions of shared dependencies that conflict with the OpenAI Agents SDK, so it lives
in an environment of its own (``.venv-crewai``, made by the README's test command). In the main
environment these tests are not collected. CrewAI is kept offline and out of the real home
directory: no telemetry, no tracing prompt, a temporary ``HOME`` — set before it is imported.
"""

from __future__ import annotations

import importlib.util
import os
import tempfile
from collections.abc import Iterator

import pytest

if importlib.util.find_spec("crewai") is None:
    collect_ignore_glob = ["test_*.py"]
else:
    os.environ.update(
        CREWAI_DISABLE_TELEMETRY="true",
        CREWAI_TRACING_ENABLED="false",
        CREWAI_TESTING="true",
    )
    os.environ.setdefault("OMIUM_TEST_CREWAI_HOME", tempfile.mkdtemp(prefix="crewai-home-"))
    os.environ["HOME"] = os.environ["OMIUM_TEST_CREWAI_HOME"]

from omium.testing import Runtime, runtime


@pytest.fixture
def rt() -> Iterator[Runtime]:
    """An in-memory store and span exporter, made Omium's defaults for the test."""
    with runtime() as env:
        yield env
