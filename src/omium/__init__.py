"""Omium: the reliability layer for multi-agent LLM systems.

Importing ``omium`` stays light: the warehouse engine, the server and the console are
imported only by the code paths that need them.
"""

from omium._version import __version__
from omium.config import Settings
from omium.errors import OmiumError

__all__ = ["OmiumError", "Settings", "__version__"]
