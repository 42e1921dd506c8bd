"""Omium: the reliability layer for multi-agent LLM systems.

Importing ``omium`` stays light: the warehouse engine, the server and the console are
imported only by the code paths that need them.

Example:
    >>> from omium import workflow, tool, Checkpoint     # doctest: +SKIP
"""

from omium._version import __version__
from omium.config import Settings
from omium.errors import OmiumError
from omium.sdk.branching import agent_config, fork
from omium.sdk.calls import step, tool
from omium.sdk.checkpoint import Checkpoint, Transaction
from omium.sdk.concurrency import ThreadPoolExecutor, spawn, to_thread
from omium.sdk.consensus import Consensus
from omium.sdk.context import idempotency_key
from omium.sdk.llm import llm_call
from omium.sdk.replay import replay
from omium.sdk.retry import RetryPolicy
from omium.sdk.runs import agent, arun, init, rollback, run, workflow
from omium.sdk.state import SharedState

__all__ = [
    "Checkpoint",
    "Consensus",
    "OmiumError",
    "RetryPolicy",
    "Settings",
    "SharedState",
    "ThreadPoolExecutor",
    "Transaction",
    "__version__",
    "agent",
    "agent_config",
    "arun",
    "fork",
    "idempotency_key",
    "init",
    "llm_call",
    "replay",
    "rollback",
    "run",
    "spawn",
    "step",
    "to_thread",
    "tool",
    "workflow",
]
