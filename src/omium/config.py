"""Typed settings read from ``OMIUM_*`` environment variables.

Settings are read when an entry point or factory asks for them (``Settings.from_env()``),
never at import time, so tests and embedding applications can pass their own.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from urllib.parse import urlparse

from omium.errors import ConfigError

DEFAULT_SERVER_URL = "http://127.0.0.1:4318"
DEFAULT_DATABASE = "omium"
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})


def _int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be an integer, got {raw!r}") from None


def _bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    lowered = raw.strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off"}:
        return False
    raise ConfigError(f"{name} must be a boolean (1/0/true/false), got {raw!r}")


def _url(env: Mapping[str, str], name: str, default: str | None, schemes: set[str]) -> str | None:
    raw = env.get(name) or default
    if raw is None:
        return None
    parsed = urlparse(raw)
    if parsed.scheme not in schemes or not (parsed.netloc or parsed.path):
        allowed = ", ".join(sorted(f"{s}://" for s in schemes))
        raise ConfigError(f"{name} must be a URL starting with {allowed}; got {raw!r}")
    return raw.rstrip("/")


def _token_file(home: Path) -> str | None:
    """The token a local server left for local clients (see ``omium.collector.server``)."""
    try:
        return (home / "api-token").read_text().strip() or None
    except OSError:
        return None


@dataclass(frozen=True)
class Settings:
    """Omium's settings.

    Attributes:
        home: ``OMIUM_HOME``, where the embedded warehouse and local state live (default ``./.omium``).
        server_url: ``OMIUM_SERVER_URL``, the Omium server's HTTP address.
        clickhouse_url: ``OMIUM_CLICKHOUSE_URL``; unset means the embedded chdb warehouse.
        api_token: ``OMIUM_API_TOKEN``, required for writes through the SQL API and whenever
            the server binds beyond loopback.
        database: ``OMIUM_DATABASE``, the ClickHouse database holding Omium's tables.
        host: ``OMIUM_HOST``, the address the server binds (loopback unless configured).
        http_port: ``OMIUM_HTTP_PORT``, OTLP/HTTP, control and SQL API (4318).
        grpc_port: ``OMIUM_GRPC_PORT``, OTLP/gRPC (4317); -1 disables gRPC.
        Port 0 (HTTP or gRPC) picks a free port.
        console_port: ``OMIUM_CONSOLE_PORT`` (8501).
        dagster_port: ``OMIUM_DAGSTER_PORT`` (3000).
        max_pending_spans: ``OMIUM_MAX_PENDING_SPANS``, spans accepted but not yet durable before
            the collector answers 503 (bounds memory under overload).
        max_body_bytes: ``OMIUM_MAX_BODY_BYTES``, cap on a decompressed OTLP body (64 MiB).
        fsync: ``OMIUM_FSYNC``, fsync every insert (survives power loss, not only process death).
    """

    home: Path = field(default_factory=lambda: Path(".omium"))
    server_url: str = DEFAULT_SERVER_URL
    clickhouse_url: str | None = None
    api_token: str | None = None
    database: str = DEFAULT_DATABASE
    host: str = "127.0.0.1"
    http_port: int = 4318
    grpc_port: int = 4317
    console_port: int = 8501
    dagster_port: int = 3000
    max_pending_spans: int = 200_000
    max_body_bytes: int = 64 * 1024 * 1024
    fsync: bool = False

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Read settings from ``env`` (default: ``os.environ``), validating each value."""
        env = os.environ if env is None else env
        database = env.get("OMIUM_DATABASE") or DEFAULT_DATABASE
        if not database.replace("_", "").isalnum():
            raise ConfigError(f"OMIUM_DATABASE must be letters, digits and '_', got {database!r}")
        settings = cls(
            home=Path(env.get("OMIUM_HOME") or ".omium"),
            server_url=_url(env, "OMIUM_SERVER_URL", DEFAULT_SERVER_URL, {"http", "https"}) or "",
            clickhouse_url=_url(env, "OMIUM_CLICKHOUSE_URL", None, {"http", "https", "clickhouse", "chdb"}),
            api_token=env.get("OMIUM_API_TOKEN") or _token_file(Path(env.get("OMIUM_HOME") or ".omium")),
            database=database,
            host=env.get("OMIUM_HOST") or "127.0.0.1",
            http_port=_int(env, "OMIUM_HTTP_PORT", 4318),
            grpc_port=_int(env, "OMIUM_GRPC_PORT", 4317),
            console_port=_int(env, "OMIUM_CONSOLE_PORT", 8501),
            dagster_port=_int(env, "OMIUM_DAGSTER_PORT", 3000),
            max_pending_spans=_int(env, "OMIUM_MAX_PENDING_SPANS", 200_000),
            max_body_bytes=_int(env, "OMIUM_MAX_BODY_BYTES", 64 * 1024 * 1024),
            fsync=_bool(env, "OMIUM_FSYNC", False),
        )
        return settings

    def with_(self, **changes: object) -> Settings:
        """Return a copy with ``changes`` applied (settings are immutable)."""
        return replace(self, **changes)  # type: ignore[arg-type]

    @property
    def warehouse_path(self) -> Path:
        """Directory of the embedded chdb warehouse."""
        return self.home / "warehouse"

    @property
    def token_path(self) -> Path:
        """Where a local server leaves the API token it generated."""
        return self.home / "api-token"

    @property
    def embedded(self) -> bool:
        """True when no ClickHouse server is configured (chdb in the server process)."""
        return self.clickhouse_url is None or self.clickhouse_url.startswith("chdb:")

    def check_bind(self) -> None:
        """Refuse to expose an unauthenticated server beyond loopback."""
        if self.host not in LOOPBACK_HOSTS and not self.api_token:
            raise ConfigError(
                f"OMIUM_HOST={self.host!r} exposes the server beyond this machine; "
                "set OMIUM_API_TOKEN so that writes and queries need a token"
            )


__all__ = ["DEFAULT_DATABASE", "DEFAULT_SERVER_URL", "Settings"]
