"""Bearer-token checks: reads are open on loopback, writes always need the token."""

from __future__ import annotations

import hmac

from starlette.requests import Request

from omium.config import LOOPBACK_HOSTS, Settings


def presented_token(request: Request) -> str | None:
    """The token in ``Authorization: Bearer …`` (or ``X-Omium-Token``), if any."""
    header = request.headers.get("authorization", "")
    if header.lower().startswith("bearer "):
        return header[7:].strip()
    return request.headers.get("x-omium-token")


def token_matches(settings: Settings, request: Request) -> bool:
    """True when the server has a token and the request carries it (constant-time compare)."""
    token = presented_token(request)
    return bool(settings.api_token and token and hmac.compare_digest(token, settings.api_token))


def read_allowed(settings: Settings, request: Request) -> bool:
    """Reads need the token only when the server is reachable beyond this machine."""
    if settings.host in LOOPBACK_HOSTS:
        return True
    return token_matches(settings, request)
