"""omium.testing: the fake model and in-process runtime users test their workflows with."""

from __future__ import annotations

import doctest

import pytest

import omium
import omium.testing
from omium import workflow
from omium.sdk.llm import llm_call
from omium.testing import FakeLLM, runtime


def test_module_examples_run() -> None:
    assert doctest.testmod(omium.testing).failed == 0


@workflow
def terms(model: FakeLLM) -> str:
    answer = llm_call(
        model,
        [
            {"role": "system", "content": "APR MUST be 2.5%-8.5%"},
            {"role": "user", "content": "Offer terms for Jane"},
        ],
    )
    return answer.text


def test_llm_calls_are_recorded_traced_and_replayed() -> None:
    model = FakeLLM([TimeoutError("provider timeout"), "APR 4.9%, 36 months"])
    with runtime() as rt:
        with pytest.raises(TimeoutError):
            omium.run(terms, model, run_id="t1")
        assert omium.run(terms, model, run_id="t1") == "APR 4.9%, 36 months"
        assert len(model.calls) == 2
        # A third run of the same id is answered from the record: the model is not called.
        assert omium.run(terms, model, run_id="t1") == "APR 4.9%, 36 months"
        assert len(model.calls) == 2
        chat = [s for s in rt.spans.get_finished_spans() if s.name == "chat fake-model"]
        assert [s.status.status_code.name for s in chat] == ["ERROR", "UNSET"]
        attrs = chat[1].attributes
        assert attrs["gen_ai.provider.name"] == "omium.testing"
        assert attrs["gen_ai.usage.input_tokens"] == 8 and attrs["gen_ai.usage.output_tokens"] == 4
        assert "APR 4.9%" in attrs["gen_ai.output.messages"]
        assert "2.5%-8.5%" in attrs["gen_ai.input.messages"]
        assert [s.kind for s in rt.store.steps("t1")] == ["llm"]


def test_fake_llm_scripts() -> None:
    echo = FakeLLM(lambda messages: messages[-1]["content"].upper())
    assert echo.complete([{"role": "user", "content": "hi"}]).text == "HI"
    done = FakeLLM(["one"])
    done.complete([])
    with pytest.raises(AssertionError, match="ran out"):
        done.complete([])


def test_runtime_restores_what_was_configured() -> None:
    from omium.sdk import runs

    before = runs._default_store
    with runtime() as rt:
        assert runs._default_store is rt.store
    assert runs._default_store is before
