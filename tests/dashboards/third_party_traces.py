"""Third-party agents whose traces the console must show, run as a child process (instrumentations
patch libraries and set globals):

    python third_party_traces.py OTLP_URL OPENAI_URL

- an OpenInference-instrumented LangGraph graph (researcher -> writer, LangChain's fake chat model
  with usage), in session ``SESSION``;
- an OpenLLMetry-instrumented (``opentelemetry-instrumentation-openai``) agent calling the real
  ``openai`` client against the fake OpenAI server, with a tool call, in no session.

Both export with the official OTLP/HTTP exporter, and both mention customer ``CUSTOMER`` only in
the user's message, so a search that finds it has searched message text.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

CUSTOMER = "cust-4711"
SESSION = "support-thread-9"
QUESTION = f"Customer {CUSTOMER} cannot log in. What should we do?"


def _providers(name: str, otlp: str) -> Any:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "instrumentation"))
    from scenarios import providers  # the instrumentation tests' exporter set-up

    return providers(name, otlp)[0]


def langgraph(otlp: str) -> None:
    """OpenInference's LangChain instrumentor around a two-node LangGraph graph."""
    from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
    from langchain_core.messages import AIMessage, SystemMessage
    from langgraph.graph import END, START, MessagesState, StateGraph
    from openinference.instrumentation.langchain import LangChainInstrumentor

    tracer_provider = _providers("support-graph", otlp)
    LangChainInstrumentor().instrument(tracer_provider=tracer_provider)
    usage = {"input_tokens": 30, "output_tokens": 7, "total_tokens": 37}

    def model(text: str) -> GenericFakeChatModel:
        return GenericFakeChatModel(messages=iter([AIMessage(content=text, usage_metadata=usage)]))

    researcher_model = model("The account is locked after 5 failed attempts.")
    writer_model = model("Unlock the account and ask the customer to reset the password.")

    def researcher(state: MessagesState) -> dict[str, Any]:
        prompt = [SystemMessage("You research account problems."), *state["messages"]]
        return {"messages": [researcher_model.invoke(prompt)]}

    def writer(state: MessagesState) -> dict[str, Any]:
        return {"messages": [writer_model.invoke(state["messages"])]}

    graph = StateGraph(MessagesState)
    graph.add_node("researcher", researcher)
    graph.add_node("writer", writer)
    graph.add_edge(START, "researcher")
    graph.add_edge("researcher", "writer")
    graph.add_edge("writer", END)
    app: Any = graph.compile()
    app.invoke({"messages": [("user", QUESTION)]}, {"configurable": {"thread_id": SESSION}})
    tracer_provider.shutdown()


def openllmetry(otlp: str, base_url: str) -> None:
    """OpenLLMetry's OpenAI instrumentation inside an application's agent span (GenAI attributes)."""
    import openai
    from opentelemetry.instrumentation.openai import OpenAIInstrumentor

    tracer_provider = _providers("billing-agent", otlp)
    OpenAIInstrumentor().instrument(tracer_provider=tracer_provider)
    tools = [
        {
            "type": "function",
            "function": {
                "name": "lookup_invoice",
                "description": "Find a customer's latest invoice.",
                "parameters": {
                    "type": "object",
                    "properties": {"customer": {"type": "string"}},
                    "required": ["customer"],
                },
            },
        }
    ]
    client: Any = openai.OpenAI(base_url=base_url, api_key="test")  # untyped dicts, as apps pass them
    tracer = tracer_provider.get_tracer("billing-app")
    attributes = {"gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": "billing"}
    with tracer.start_as_current_span("invoke_agent billing", attributes=attributes):
        messages: list[dict[str, Any]] = [
            {"role": "system", "content": "You answer billing questions."},
            {"role": "user", "content": f"Why was {CUSTOMER} charged twice?"},
        ]
        first = client.chat.completions.create(model="gpt-4o-mini", messages=messages, tools=tools)
        call = first.choices[0].message.tool_calls[0]
        with tracer.start_as_current_span(
            "execute_tool lookup_invoice",
            attributes={
                "gen_ai.operation.name": "execute_tool",
                "gen_ai.tool.name": "lookup_invoice",
                "gen_ai.tool.call.arguments": call.function.arguments,
                "gen_ai.tool.call.result": '{"invoice": "INV-1", "charges": 2}',
            },
        ):
            pass
        messages += [
            first.choices[0].message.model_dump(exclude_none=True),
            {"role": "tool", "tool_call_id": call.id, "content": '{"invoice": "INV-1", "charges": 2}'},
        ]
        client.chat.completions.create(model="gpt-4o-mini", messages=messages, tools=tools)
    tracer_provider.shutdown()


if __name__ == "__main__":
    otlp_url, openai_url = sys.argv[1:3]
    langgraph(otlp_url)
    openllmetry(otlp_url, openai_url)
