"""The adapter's public surface is deliberate: this fails when it drifts."""

import omium.adapters.openai_agents as adapter


def test_public_names() -> None:
    assert sorted(adapter.__all__) == [
        "DurableModel",
        "DurableModelProvider",
        "OmiumRunHooks",
        "OmiumTracingProcessor",
        "PendingCall",
        "agent_workflow",
        "approve",
        "durable",
        "durable_run_config",
        "durable_tool",
        "handoff_validator",
        "instrument",
        "pending_approval",
        "reject",
        "uninstrument",
        "validated_handoff",
    ]
    for name in adapter.__all__:
        assert getattr(adapter, name).__doc__, name
