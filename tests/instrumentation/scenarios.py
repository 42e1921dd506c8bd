"""What a user's application does, one scenario per instrumentation package, run as a child process
(instrumentations patch libraries and set globals; some live in environments of their own).

    python scenarios.py SCENARIO OTLP_URL OPENAI_URL

Each exports its spans (and logs, where the package sends events) with the official OTLP HTTP
exporters to ``OTLP_URL`` and calls the fake OpenAI server at ``OPENAI_URL`` with the real
``openai`` client. It imports only what its own environment has (not omium).
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from typing import Any

SESSION, USER = "sess-1", "user-1"
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "lookup",
            "description": "Look a fact up.",
            "parameters": {"type": "object", "properties": {"query": {"type": "string"}}, "required": ["query"]},
        },
    }
]


def providers(name: str, otlp: str, logs: bool = False, tracer_provider_class: Any = None) -> tuple[Any, Any]:
    """A tracer provider (and a logger provider) exporting to Omium, span by span."""
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor

    resource = Resource.create({"service.name": name})
    tracer_provider = (tracer_provider_class or TracerProvider)(resource=resource)
    tracer_provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(endpoint=f"{otlp}/v1/traces")))
    logger_provider = None
    if logs:
        from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
        from opentelemetry.sdk._logs import LoggerProvider
        from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor

        logger_provider = LoggerProvider(resource=resource)
        logger_provider.add_log_record_processor(SimpleLogRecordProcessor(OTLPLogExporter(endpoint=f"{otlp}/v1/logs")))
    return tracer_provider, logger_provider


def openai_calls(client: Any, user: str | None = None) -> None:
    """A tool-using chat (two calls), a streamed chat, embeddings, and a model nobody prices."""
    extra = {"user": user} if user else {}
    messages: list[dict[str, Any]] = [
        {"role": "system", "content": "You are Omium's test agent."},
        {"role": "user", "content": "What is the answer?"},
    ]
    first = client.chat.completions.create(model="gpt-4o-mini", messages=messages, tools=TOOLS, **extra)
    call = first.choices[0].message.tool_calls[0]
    messages += [
        first.choices[0].message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": call.id, "content": "lookup result: 42"},
    ]
    client.chat.completions.create(model="gpt-4o-mini", messages=messages, tools=TOOLS, **extra)
    stream = client.chat.completions.create(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": "Stream it."}],
        stream=True,
        stream_options={"include_usage": True},
    )
    for _ in stream:
        pass
    client.embeddings.create(model="text-embedding-3-small", input=["omium"])
    client.chat.completions.create(model="omium-unknown-model", messages=[{"role": "user", "content": "hi"}])


def app_agent_span(tracer_provider: Any, name: str = "researcher") -> Any:
    """The span an application opens around its agent's work (GenAI attributes, set by hand)."""
    tracer = tracer_provider.get_tracer("app")
    return tracer.start_as_current_span(
        f"invoke_agent {name}",
        attributes={
            "gen_ai.operation.name": "invoke_agent",
            "gen_ai.agent.name": name,
            "gen_ai.conversation.id": SESSION,
            "enduser.id": USER,
        },
    )


def openinference_openai(otlp: str, base_url: str) -> None:
    import openai
    from openinference.instrumentation import TracerProvider as OITracerProvider
    from openinference.instrumentation import using_session, using_user
    from openinference.instrumentation.openai import OpenAIInstrumentor

    # OpenInference's own tracer provider gives the decorators users put around their agents.
    tracer_provider, _ = providers("openinference-openai", otlp, tracer_provider_class=OITracerProvider)
    OpenAIInstrumentor().instrument(tracer_provider=tracer_provider)
    tracer = tracer_provider.get_tracer("app")

    @tracer.agent
    def researcher() -> None:
        openai_calls(openai.OpenAI(base_url=base_url, api_key="test"))

    with using_session(SESSION), using_user(USER):
        researcher()
    tracer_provider.shutdown()


def openinference_langchain(otlp: str, base_url: str) -> None:
    from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
    from langchain_core.messages import AIMessage
    from langgraph.graph import END, START, MessagesState, StateGraph
    from openinference.instrumentation import using_user
    from openinference.instrumentation.langchain import LangChainInstrumentor

    tracer_provider, _ = providers("openinference-langchain", otlp)
    LangChainInstrumentor().instrument(tracer_provider=tracer_provider)
    usage = {"input_tokens": 30, "output_tokens": 7, "total_tokens": 37}

    def model(text: str) -> GenericFakeChatModel:
        return GenericFakeChatModel(messages=iter([AIMessage(content=text, usage_metadata=usage)]))

    researcher_model, writer_model = model("Found: 42."), model("Report: the answer is 42.")

    def researcher(state: MessagesState) -> dict[str, Any]:
        return {"messages": [researcher_model.invoke(state["messages"])]}

    def writer(state: MessagesState) -> dict[str, Any]:
        return {"messages": [writer_model.invoke(state["messages"])]}

    graph = StateGraph(MessagesState)
    graph.add_node("researcher", researcher)
    graph.add_node("writer", writer)
    graph.add_edge(START, "researcher")
    graph.add_edge("researcher", "writer")
    graph.add_edge("writer", END)
    with using_user(USER):
        graph.compile().invoke(
            {"messages": [("user", "What is the answer?")]}, {"configurable": {"thread_id": SESSION}}
        )
    tracer_provider.shutdown()


def openai_agents(otlp: str, base_url: str, instrumentor: Any, name: str) -> None:
    """A triage agent of the OpenAI Agents SDK hands off to a billing agent that uses a tool."""
    from agents import Agent, OpenAIChatCompletionsModel, Runner, function_tool, set_trace_processors
    from openai import AsyncOpenAI
    from openinference.instrumentation import using_session, using_user

    tracer_provider, _ = providers(name, otlp)
    set_trace_processors([])  # nothing to OpenAI's own trace backend
    instrumentor.instrument(tracer_provider=tracer_provider)
    client = AsyncOpenAI(base_url=base_url, api_key="test")

    @function_tool
    def lookup(query: str) -> str:
        """Look a fact up."""
        return "lookup result: 42"

    billing = Agent(
        name="Billing",
        instructions="Answer billing questions.",
        tools=[lookup],
        model=OpenAIChatCompletionsModel(model="gpt-4o-mini", openai_client=client),
    )
    triage = Agent(
        name="Triage",
        instructions="Route the question.",
        handoffs=[billing],
        model=OpenAIChatCompletionsModel(model="gpt-4o-mini", openai_client=client),
    )
    # OpenInference's context managers set session and user on every span (the other instrumentor
    # ignores them: its spans carry neither).
    with using_session(SESSION), using_user(USER):
        result = asyncio.run(Runner.run(triage, "Why was I charged twice?"))
    assert result.final_output, result
    tracer_provider.shutdown()


def openinference_openai_agents(otlp: str, base_url: str) -> None:
    from openinference.instrumentation.openai_agents import OpenAIAgentsInstrumentor

    openai_agents(otlp, base_url, OpenAIAgentsInstrumentor(), "openinference-openai-agents")


def openllmetry_openai_agents(otlp: str, base_url: str) -> None:
    from opentelemetry.instrumentation.openai_agents import OpenAIAgentsInstrumentor

    openai_agents(otlp, base_url, OpenAIAgentsInstrumentor(), "openllmetry-openai-agents")


def openllmetry_openai(otlp: str, base_url: str) -> None:
    """opentelemetry-instrumentation-openai on its own (current or legacy release)."""
    import openai
    from opentelemetry.instrumentation.openai import OpenAIInstrumentor

    tracer_provider, _ = providers("openllmetry-openai", otlp)
    OpenAIInstrumentor().instrument(tracer_provider=tracer_provider)
    with app_agent_span(tracer_provider):
        openai_calls(openai.OpenAI(base_url=base_url, api_key="test"), user=USER)
    tracer_provider.shutdown()


def openllmetry_openai_events(otlp: str, base_url: str) -> None:
    """opentelemetry-instrumentation-openai with ``use_attributes=False``: content as GenAI events."""
    import openai
    from opentelemetry.instrumentation.openai import OpenAIInstrumentor

    tracer_provider, logger_provider = providers("openllmetry-openai-events", otlp, logs=True)
    OpenAIInstrumentor(use_attributes=False).instrument(
        tracer_provider=tracer_provider, logger_provider=logger_provider
    )
    with app_agent_span(tracer_provider):
        openai_calls(openai.OpenAI(base_url=base_url, api_key="test"), user=USER)
    tracer_provider.shutdown()
    logger_provider.shutdown()


def traceloop_sdk(otlp: str, base_url: str) -> None:
    import openai
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from traceloop.sdk import Traceloop
    from traceloop.sdk.decorators import agent, tool, workflow
    from traceloop.sdk.instruments import Instruments

    Traceloop.init(
        app_name="traceloop-sdk",
        exporter=OTLPSpanExporter(endpoint=f"{otlp}/v1/traces"),
        disable_batch=True,
        telemetry_enabled=False,
        instruments={Instruments.OPENAI},
        resource_attributes={"service.name": "traceloop-sdk"},
    )
    Traceloop.set_association_properties({"session_id": SESSION, "user_id": USER})
    client = openai.OpenAI(base_url=base_url, api_key="test")

    @tool(name="lookup")
    def lookup(query: str) -> str:
        return "lookup result: 42"

    @agent(name="researcher")
    def researcher() -> str:
        messages: list[dict[str, Any]] = [{"role": "user", "content": "What is the answer?"}]
        first = client.chat.completions.create(model="gpt-4o-mini", messages=messages, tools=TOOLS)
        call = first.choices[0].message.tool_calls[0]
        result = lookup(**json.loads(call.function.arguments))
        messages += [first.choices[0].message.model_dump(exclude_none=True),
                     {"role": "tool", "tool_call_id": call.id, "content": result}]
        return str(client.chat.completions.create(model="gpt-4o-mini", messages=messages).choices[0].message.content)

    @workflow(name="support")
    def support() -> str:
        return researcher()

    support()  # disable_batch: every span is exported as it ends


def otel_openai_v2(otlp: str, base_url: str) -> None:
    """opentelemetry-instrumentation-openai-v2, in the mode its environment selects (events by default)."""
    import openai
    from opentelemetry.instrumentation.openai_v2 import OpenAIInstrumentor

    tracer_provider, logger_provider = providers("openai-v2", otlp, logs=True)
    OpenAIInstrumentor().instrument(tracer_provider=tracer_provider, logger_provider=logger_provider)
    with app_agent_span(tracer_provider):
        openai_calls(openai.OpenAI(base_url=base_url, api_key="test"))
    tracer_provider.shutdown()
    logger_provider.shutdown()


SCENARIOS = {
    "openinference-openai": openinference_openai,
    "openinference-langchain": openinference_langchain,
    "openinference-openai-agents": openinference_openai_agents,
    "openllmetry-openai": openllmetry_openai,
    "openllmetry-openai-agents": openllmetry_openai_agents,
    "openllmetry-openai-events": openllmetry_openai_events,
    "traceloop-sdk": traceloop_sdk,
    "openai-v2": otel_openai_v2,
}

if __name__ == "__main__":
    scenario, otlp_url, openai_url = sys.argv[1:4]
    os.environ.setdefault("OPENAI_API_KEY", "test")
    SCENARIOS[scenario](otlp_url, openai_url)
