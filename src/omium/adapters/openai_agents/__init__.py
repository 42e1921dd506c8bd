"""Omium beneath the OpenAI Agents SDK: traces, checkpoints, validated hand-offs, review and resume.

A team with an Agents SDK workflow keeps its agents, tools and hand-offs as they are:

* :func:`instrument` registers :class:`OmiumTracingProcessor`, which turns the SDK's traces into
  OpenTelemetry spans (``invoke_agent``, ``chat``, ``execute_tool``, hand-offs) through Omium's
  tracer, so they land in ``otel_traces`` with ``omium.run_id`` — and switches off the SDK's
  default exporter to OpenAI.
* :func:`agent_workflow` makes an agent graph an Omium workflow: model calls and function tools
  become recorded calls (:func:`durable`), :class:`OmiumRunHooks` checkpoints every step, and a
  crashed run resumes (same run id) without repeating finished tool or model calls.
* :func:`validated_handoff` / :func:`handoff_validator` validate hand-offs against a pydantic
  schema and Omium constraints through Omium's consensus log; a rejected hand-off stops the run
  with the reason recorded.
* Tools with ``needs_approval`` pause the run at a review gate that keeps the SDK's ``RunState``
  in Omium's store; :func:`approve` / :func:`reject` decide, re-running the run resumes it.

Everything works offline: tests use ``agents.testing.ScriptedModel``.
"""

from omium.adapters.openai_agents.durable import (
    DurableModel,
    DurableModelProvider,
    durable,
    durable_run_config,
    durable_tool,
)
from omium.adapters.openai_agents.handoffs import handoff_validator, validated_handoff
from omium.adapters.openai_agents.hooks import OmiumRunHooks
from omium.adapters.openai_agents.review import PendingCall, approve, pending_approval, reject
from omium.adapters.openai_agents.tracing import OmiumTracingProcessor, instrument, uninstrument
from omium.adapters.openai_agents.workflow import agent_workflow

__all__ = [
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
