"""Failures from every source land in the five classes, with MAST codes where the evidence names one."""

from __future__ import annotations

from omium.models import taxonomy


def test_runtime_triggers_map_to_classes() -> None:
    assert taxonomy.from_trigger("policy_violation").failure_class == taxonomy.SPECIFICATION
    assert taxonomy.from_trigger("policy_violation").mast_code == "FM-1.1"
    assert taxonomy.from_trigger("stale_handoff").failure_class == taxonomy.STATE_SYNCHRONISATION
    assert taxonomy.from_trigger("handoff_rejected").failure_class == taxonomy.COMMUNICATION_PROTOCOL
    assert taxonomy.from_trigger("exception").failure_class == taxonomy.TOOL_INVOCATION
    # An approval gate pauses for a human; it is not a failure.
    assert taxonomy.from_trigger("high_value_operation").failure_class == taxonomy.NONE
    # An unknown trigger falls back to what its message says.
    assert taxonomy.from_trigger("custom", "the agent did not verify the total").mast_code == "FM-3.2"


def test_free_text_reasons() -> None:
    cases = {
        "The agent repeated the same search again and again": ("FM-1.3", taxonomy.SPECIFICATION),
        "It ignored the Verification_Expert's correction": ("FM-2.5", taxonomy.INTER_AGENT_MISALIGNMENT),
        "Misinterpreted the question as asking for the median": ("FM-2.2", taxonomy.INTER_AGENT_MISALIGNMENT),
        "The code called the wrong API endpoint": ("", taxonomy.TOOL_INVOCATION),
        "Read a stale copy of the order after another agent changed it": ("", taxonomy.STATE_SYNCHRONISATION),
        "The price provided is incorrect": ("FM-1.1", taxonomy.SPECIFICATION),
    }
    for reason, (code, cls) in cases.items():
        label = taxonomy.from_reason(reason)
        assert (label.mast_code, label.failure_class) == (code, cls), reason
        assert label.evidence.startswith("reason mentions")
    assert taxonomy.from_reason("").failure_class == taxonomy.UNKNOWN


def test_mast_codes_belong_to_the_five_classes() -> None:
    assert {cls for _, cls in taxonomy.MAST.values()} <= set(taxonomy.CLASSES)
    assert len(taxonomy.CLASSES) == 5
