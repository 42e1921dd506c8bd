"""Omium: the reliability layer for multi-agent LLM systems.

Importing ``omium`` stays light: the warehouse engine, the server and the console are
imported only by the code paths that need them.

Example:
    >>> from omium import workflow, tool, Checkpoint     # doctest: +SKIP
"""

from omium._version import __version__
from omium.config import Settings
from omium.errors import OmiumError
from omium.sdk.calls import step, tool
from omium.sdk.checkpoint import Checkpoint, Transaction
from omium.sdk.context import idempotency_key
from omium.sdk.retry import RetryPolicy
from omium.sdk.runs import agent, arun, init, run, workflow

__all__ = [
    "Checkpoint",
    "OmiumError",
    "RetryPolicy",
    "Settings",
    "Transaction",
    "__version__",
    "agent",
    "arun",
    "idempotency_key",
    "init",
    "run",
    "step",
    "tool",
    "workflow",
]
