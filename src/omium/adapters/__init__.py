"""Framework adapters: Omium beneath LangGraph, the OpenAI Agents SDK and AG2, each behind its own extra.

Every adapter gives an existing workflow Omium's checkpoints, traces, hand-off validation and
recovery without rewriting it; :mod:`omium.adapters.inspection` reads a workflow's structure for
``omium import``. :mod:`omium.adapters.langgraph` is a LangGraph checkpointer (``OmiumSaver``)
that keeps graph threads in Omium's store.
"""
