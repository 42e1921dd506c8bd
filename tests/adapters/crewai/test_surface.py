"""The CrewAI adapter's public names exist and its docstring examples run."""

from __future__ import annotations

import doctest

import omium.adapters.crewai as adapter
from omium.adapters.crewai import guardrails, testing


def test_public_names_exist() -> None:
    assert set(adapter.__all__) >= {
        "instrument",
        "OmiumCrew",
        "Outcome",
        "HandoffCheck",
        "ReviewGate",
        "guardrail",
    }
    for name in adapter.__all__:
        assert hasattr(adapter, name)


def test_docstring_examples_run() -> None:
    for module in (guardrails, testing):
        assert doctest.testmod(module).failed == 0, module.__name__
