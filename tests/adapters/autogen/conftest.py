"""Fixtures of the AG2 adapter tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from omium.testing import Runtime, runtime


@pytest.fixture
def rt() -> Iterator[Runtime]:
    """An in-memory store and span exporter, made Omium's defaults for the test."""
    with runtime() as env:
        yield env
