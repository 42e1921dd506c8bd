"""``OmiumTracer``: GenAI spans of a LangGraph run, from langchain-core's callback hooks.

Pass it in the run's config and every invoke becomes one trace::

    graph.invoke(inputs, {"configurable": {"thread_id": "t1"}, "callbacks": [OmiumTracer(saver)]})

=============================  ==============================================================
callback                        span
=============================  ==============================================================
the graph's own chain           ``invoke_workflow {graph}`` (``gen_ai.workflow.name``)
a node's chain                  ``invoke_agent {node}`` (``gen_ai.agent.name`` = node), under
                                the workflow span (or its parent graph's node, for subgraphs)
``on_chat_model_start``         ``chat {model}``: ``gen_ai.request.model``, provider, and
/ ``on_llm_end``                ``gen_ai.usage.*`` tokens, under the node that called it
``on_tool_start`` / end         ``execute_tool {tool}`` (``gen_ai.tool.name``, call id)
=============================  ==============================================================

Every span carries ``omium.run_id`` (the thread's run, ``langgraph:<thread_id>``) and, inside a
node, ``omium.step_index`` = ``langgraph_step``. A failure sets status Error and ``error.type``.
An ``interrupt()`` is not a failure: the node's span gets an ``omium.interrupt`` event and, when
the run stops there, the workflow span gets ``omium.paused`` with the checkpoint id it stopped at
(and a run resumed with ``Command(resume=...)`` gets ``omium.resumed``); with ``events=True``
(the default) the same are Omium audit events ``paused``/``resumed`` of the thread's run, except
for review gates, which record their own (``paused``, ``reviewed``, ``resumed``).

Callbacks of parallel nodes arrive from several threads: spans are started with explicit parents
(never made current), so they nest by LangGraph's run tree, not by whichever thread ran them.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.messages import BaseMessage
from langchain_core.outputs import LLMResult
from langgraph.errors import GraphBubbleUp, GraphInterrupt
from langgraph.types import Command
from opentelemetry import trace
from opentelemetry.trace import Span, Status, StatusCode

from omium import semconv
from omium.adapters.langgraph._gates import GATE
from omium.adapters.langgraph._thread import run_id_of
from omium.sdk import tracing
from omium.sdk.store import CheckpointStore

HIDDEN = "langsmith:hidden"  # LangGraph's tag for its internal runnables (writers, branches)


@dataclass
class _Open:
    """A LangChain run Omium follows: its span (None for runs that get none) and where spans under it go."""

    span: Span | None
    parent: Span | None  # the span its children nest under
    node: tuple[str, Any] | None = None  # (node, step) of a node span
    thread_id: Any = None
    root: bool = False
    top: _Open | None = None  # the workflow's run (itself for the workflow)
    interrupts: list[Any] | None = None  # on the workflow's run: the interrupt values of its nodes


class OmiumTracer(BaseCallbackHandler):
    """LangChain callbacks that turn a LangGraph run into GenAI spans under one workflow span.

    Args:
        saver: the graph's checkpointer; with it, interrupts and resumes name their checkpoint
            and are recorded as audit events in its store.
        graph_name: the workflow name (default: the graph's chain name, ``LangGraph`` unless
            ``builder.compile(name=...)``).
        store: where audit events go (default: the saver's store).
        events: record ``paused``/``resumed`` audit events (needs a store).
    """

    raise_error = False  # a tracing failure must never fail the graph
    run_inline = True

    def __init__(
        self,
        saver: Any = None,
        *,
        graph_name: str | None = None,
        store: CheckpointStore | None = None,
        events: bool = True,
    ) -> None:
        self.saver = saver
        self.graph_name = graph_name
        self.store = store if store is not None else getattr(saver, "store", None)
        self.events = events
        self._open: dict[UUID, _Open] = {}
        self._lock = threading.Lock()

    # --- chains: the graph and its nodes
    def on_chain_start(
        self,
        serialized: dict[str, Any] | None,
        inputs: Any,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        tags: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        """The graph's chain opens the workflow span; a node's chain an agent span."""
        metadata = metadata or {}
        name = kwargs.get("name") or (serialized or {}).get("name") or ""
        parent = self._get(parent_run_id)
        if parent is None and parent_run_id is None:
            thread_id = metadata.get("thread_id")
            workflow = self.graph_name or name or "langgraph"
            span = self._start(
                f"invoke_workflow {workflow}",
                None,
                {
                    semconv.GEN_AI_OPERATION_NAME: "invoke_workflow",
                    semconv.GEN_AI_WORKFLOW_NAME: workflow,
                    semconv.GEN_AI_CONVERSATION_ID: None if thread_id is None else str(thread_id),
                    semconv.OMIUM_RUN_ID: None if thread_id is None else run_id_of(thread_id),
                },
            )
            opened = _Open(span, span, thread_id=thread_id, root=True)
            opened.top, opened.interrupts = opened, []
            if isinstance(inputs, Command):
                # a review gate's decision is recorded by the gate (reviewed, then resumed)
                decided = isinstance(inputs.resume, Mapping) and "decision" in inputs.resume
                reason = "resumed with Command(resume=...)"
                self._paused_or_resumed(opened, "resumed", "omium.resumed", reason, audit=not decided)
            self._put(run_id, opened)
            return
        if parent is None:
            return  # under a run this handler did not see start: nothing to nest under
        node, step = metadata.get("langgraph_node"), metadata.get("langgraph_step")
        is_node = (
            node is not None
            and name == node
            and HIDDEN not in (tags or [])
            and parent.node != (node, step)  # not the node's own inner runnable of that name
        )
        if not is_node:
            self._put(run_id, _Open(None, parent.parent, parent.node, parent.thread_id, top=parent.top))
            return
        span = self._start(
            f"invoke_agent {node}",
            parent.parent,
            {
                semconv.GEN_AI_OPERATION_NAME: "invoke_agent",
                semconv.GEN_AI_AGENT_NAME: node,
                "graph.node.id": node,
                "langgraph.checkpoint_ns": metadata.get("langgraph_checkpoint_ns"),
                **self._run_attributes(parent.thread_id, step),
            },
        )
        self._put(run_id, _Open(span, span, (str(node), step), parent.thread_id, top=parent.top))

    def on_chain_end(self, outputs: Any, *, run_id: UUID, **kwargs: Any) -> None:
        """Close the chain's span; a graph that stopped at an interrupt is recorded as paused."""
        opened = self._pop(run_id)
        if opened is None or opened.span is None:
            return
        if opened.root and opened.interrupts:
            reason = "; ".join(map(str, opened.interrupts))
            gates_only = all(isinstance(v, Mapping) and v.get(GATE) for v in opened.interrupts)
            self._paused_or_resumed(
                opened, "paused", "omium.paused", f"interrupted: {reason}"[:500], audit=not gates_only
            )
        opened.span.end()

    def on_chain_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        """Close the chain's span as an error (an interrupt is an event, not an error)."""
        opened = self._pop(run_id)
        if opened is None or opened.span is None:
            return
        if isinstance(error, GraphInterrupt):
            found = error.args[0] if error.args and isinstance(error.args[0], (list, tuple)) else []
            values = [getattr(i, "value", i) for i in found] or ["interrupt"]
            opened.span.add_event("omium.interrupt", {"omium.interrupt.values": [str(v) for v in values]})
            if opened.top is not None and opened.top.interrupts is not None and not opened.root:
                with self._lock:
                    opened.top.interrupts.extend(values)
        elif isinstance(error, GraphBubbleUp):  # e.g. a Command to the parent graph: control flow
            pass
        else:
            _fail(opened.span, error)
        opened.span.end()

    # --- chat models
    def on_chat_model_start(
        self,
        serialized: dict[str, Any] | None,
        messages: list[list[BaseMessage]],
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        metadata: dict[str, Any] | None = None,
        invocation_params: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        """A model call: ``chat {model}`` under the node that made it."""
        self._model_start(serialized, run_id, parent_run_id, metadata, invocation_params or {}, "chat")

    def on_llm_start(
        self,
        serialized: dict[str, Any] | None,
        prompts: list[str],
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        metadata: dict[str, Any] | None = None,
        invocation_params: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        """A completion model call: ``text_completion {model}``."""
        self._model_start(
            serialized, run_id, parent_run_id, metadata, invocation_params or {}, "text_completion"
        )

    def _model_start(
        self,
        serialized: dict[str, Any] | None,
        run_id: UUID,
        parent_run_id: UUID | None,
        metadata: dict[str, Any] | None,
        params: dict[str, Any],
        operation: str,
    ) -> None:
        parent = self._get(parent_run_id)
        if parent is None:
            return
        metadata = metadata or {}
        model = (
            params.get("model")
            or params.get("model_name")
            or metadata.get("ls_model_name")
            or (serialized or {}).get("name")
            or params.get("_type")
            or "unknown"
        )
        span = self._start(
            f"{operation} {model}",
            parent.parent,
            {
                semconv.GEN_AI_OPERATION_NAME: operation,
                semconv.GEN_AI_REQUEST_MODEL: str(model),
                semconv.GEN_AI_PROVIDER_NAME: metadata.get("ls_provider"),
                semconv.GEN_AI_AGENT_NAME: parent.node[0] if parent.node else None,
                **self._run_attributes(parent.thread_id, metadata.get("langgraph_step")),
            },
        )
        self._put(run_id, _Open(span, span, parent.node, parent.thread_id))

    def on_llm_end(self, response: LLMResult, *, run_id: UUID, **kwargs: Any) -> None:
        """Token usage and the response model, then close."""
        opened = self._pop(run_id)
        if opened is None or opened.span is None:
            return
        usage = _usage(response)
        for key, value in usage.items():
            opened.span.set_attribute(key, value)
        model = (response.llm_output or {}).get("model_name") or (response.llm_output or {}).get("model")
        if model:
            opened.span.set_attribute(semconv.GEN_AI_RESPONSE_MODEL, str(model))
        opened.span.end()

    def on_llm_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        """A failed model call."""
        self._end_failed(run_id, error)

    # --- tools
    def on_tool_start(
        self,
        serialized: dict[str, Any] | None,
        input_str: str,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        metadata: dict[str, Any] | None = None,
        inputs: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        """A tool call: ``execute_tool {tool}`` under the node that made it."""
        parent = self._get(parent_run_id)
        if parent is None:
            return
        metadata = metadata or {}
        tool = kwargs.get("name") or (serialized or {}).get("name") or "tool"
        span = self._start(
            f"execute_tool {tool}",
            parent.parent,
            {
                semconv.GEN_AI_OPERATION_NAME: "execute_tool",
                semconv.GEN_AI_TOOL_NAME: tool,
                semconv.GEN_AI_TOOL_CALL_ID: kwargs.get("tool_call_id"),
                semconv.GEN_AI_AGENT_NAME: parent.node[0] if parent.node else None,
                **self._run_attributes(parent.thread_id, metadata.get("langgraph_step")),
            },
        )
        self._put(run_id, _Open(span, span, parent.node, parent.thread_id))

    def on_tool_end(self, output: Any, *, run_id: UUID, **kwargs: Any) -> None:
        """Close the tool's span."""
        opened = self._pop(run_id)
        if opened is not None and opened.span is not None:
            call_id = getattr(output, "tool_call_id", None)
            if call_id:
                opened.span.set_attribute(semconv.GEN_AI_TOOL_CALL_ID, str(call_id))
            if getattr(output, "status", None) == "error":  # a ToolMessage reporting a handled error
                opened.span.set_status(Status(StatusCode.ERROR, str(getattr(output, "content", ""))[:500]))
                opened.span.set_attribute(semconv.ERROR_TYPE, "ToolError")
            opened.span.end()

    def on_tool_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        """A failed tool call."""
        self._end_failed(run_id, error)

    # --- helpers
    def _run_attributes(self, thread_id: Any, step: Any) -> dict[str, Any]:
        return {
            semconv.OMIUM_RUN_ID: None if thread_id is None else run_id_of(thread_id),
            semconv.OMIUM_STEP_INDEX: step if isinstance(step, int) else None,
        }

    def _start(self, name: str, parent: Span | None, attributes: dict[str, Any]) -> Span:
        clean = {k: v for k, v in attributes.items() if v is not None and v != ""}
        context = trace.set_span_in_context(parent) if parent is not None else None
        return tracing.tracer().start_span(name, context=context, attributes=clean)

    def _end_failed(self, run_id: UUID, error: BaseException) -> None:
        opened = self._pop(run_id)
        if opened is not None and opened.span is not None:
            _fail(opened.span, error)
            opened.span.end()

    def _paused_or_resumed(self, opened: _Open, kind: str, event: str, reason: str, *, audit: bool) -> None:
        """Name the thread's current checkpoint on the workflow span and in the audit trail."""
        checkpoint_id = self._latest_checkpoint(opened.thread_id)
        assert opened.span is not None
        opened.span.add_event(event, {semconv.OMIUM_CHECKPOINT: checkpoint_id})
        if audit and self.events and self.store is not None and opened.thread_id is not None:
            from omium.recovery.audit import record

            record(
                self.store,
                run_id_of(opened.thread_id),
                kind,
                actor="langgraph",
                reason=reason,
                checkpoint=checkpoint_id,
            )

    def _latest_checkpoint(self, thread_id: Any) -> str:
        if self.saver is None or thread_id is None:
            return ""
        found = self.saver.get_tuple({"configurable": {"thread_id": thread_id, "checkpoint_ns": ""}})
        return "" if found is None else str(found.config["configurable"]["checkpoint_id"])

    def _get(self, run_id: UUID | None) -> _Open | None:
        if run_id is None:
            return None
        with self._lock:
            return self._open.get(run_id)

    def _put(self, run_id: UUID, opened: _Open) -> None:
        with self._lock:
            self._open[run_id] = opened

    def _pop(self, run_id: UUID) -> _Open | None:
        with self._lock:
            return self._open.pop(run_id, None)


def _fail(span: Span, error: BaseException) -> None:
    span.record_exception(error)
    span.set_status(Status(StatusCode.ERROR, str(error)[:500]))
    span.set_attribute(semconv.ERROR_TYPE, type(error).__qualname__)


def _usage(response: LLMResult) -> dict[str, int]:
    """Input/output tokens: the messages' ``usage_metadata``, else the provider's ``token_usage``."""
    tokens_in = tokens_out = 0
    found = False
    for generations in response.generations:
        for generation in generations:
            usage = getattr(getattr(generation, "message", None), "usage_metadata", None)
            if usage:
                found = True
                tokens_in += int(usage.get("input_tokens", 0))
                tokens_out += int(usage.get("output_tokens", 0))
    if not found:
        usage = (response.llm_output or {}).get("token_usage") or {}
        if not usage:
            return {}
        tokens_in = int(usage.get("prompt_tokens", usage.get("input_tokens", 0)))
        tokens_out = int(usage.get("completion_tokens", usage.get("output_tokens", 0)))
    return {semconv.GEN_AI_USAGE_INPUT_TOKENS: tokens_in, semconv.GEN_AI_USAGE_OUTPUT_TOKENS: tokens_out}


__all__ = ["OmiumTracer"]
