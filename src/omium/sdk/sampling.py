"""Which sample a model call should draw: the recorded one, or a fresh one asked for on purpose.

A run's recording holds one sample of every model call. Counterfactual verification
(:mod:`omium.recovery.counterfactual`) asks "had this one call drawn another sample, would the run
still fail?": it re-executes a fork of the run with that call marked as a re-sample, every other
call drawing as it did (same inputs, same seed). :func:`sample_number` tells a model adapter which
it is: ``0`` for the sample the run would draw anyway, ``n >= 1`` for the n-th re-sample of the
call executing now. A provider adapter can pass it on as a sampling seed; a scripted model whose
fault is injected into one call's recorded sample (:mod:`omium.models.fault_team`) draws the
fault on sample 0 only.

The mark is a ContextVar, so concurrent verifications in threads or tasks never see each other's.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass

from omium.sdk.context import key_call_id, maybe_current


@dataclass(frozen=True)
class Resample:
    """One call of one run to draw a fresh sample of: ``sample`` (>= 1) at ``call_id``."""

    run_id: str
    call_id: str
    sample: int = 1


_resample: ContextVar[Resample | None] = ContextVar("omium_resample", default=None)


def sample_number() -> int:
    """The sample the model call executing now should draw: 0 for the usual one, n >= 1 when a
    counterfactual re-execution asks for a fresh n-th sample of exactly this call."""
    wanted = _resample.get()
    context = maybe_current()
    if wanted is None or context is None or context.run_id != wanted.run_id:
        return 0
    return wanted.sample if key_call_id(context.call_key, context.run_id) == wanted.call_id else 0


@contextmanager
def resampling(run_id: str, call_id: str, sample: int = 1) -> Iterator[Resample]:
    """While inside, the call ``call_id`` of run ``run_id`` draws sample ``sample`` (>= 1)."""
    if sample < 1:
        raise ValueError(f"a re-sample is numbered from 1, not {sample}")
    mark = Resample(run_id, call_id, sample)
    token = _resample.set(mark)
    try:
        yield mark
    finally:
        _resample.reset(token)


__all__ = ["Resample", "resampling", "sample_number"]
