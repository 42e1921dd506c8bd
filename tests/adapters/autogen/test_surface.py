"""The AG2 adapter's public surface is deliberate, and its docstring examples run."""

from __future__ import annotations

import doctest

import omium.adapters.autogen as adapter
from omium.adapters import handoffs, review
from omium.adapters.autogen import termination, testing


def test_public_names() -> None:
    assert sorted(adapter.__all__) == sorted(
        [
            "HandoffCheck",
            "OmiumMiddleware",
            "OmiumStopTarget",
            "OmiumStopped",
            "Outcome",
            "ReviewGate",
            "Team",
            "Verdict",
            "instrument",
            "is_stop",
            "stop_reason",
            "stop_transition",
            "transcript",
            "with_stop",
        ]
    )
    for name in adapter.__all__:
        assert hasattr(adapter, name)


def test_docstring_examples_run() -> None:
    for module in (handoffs, review, termination, testing):
        assert doctest.testmod(module).failed == 0, module.__name__
