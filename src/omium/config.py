"""Typed settings read from ``OMIUM_*`` environment variables.

Settings are read when an entry point or factory asks for them (``Settings.from_env()``),
never at import time, so tests and embedding applications can pass their own.
"""

from __future__ import annotations

import logging
import os
import re
import stat
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TypedDict
from urllib.parse import urlparse

from omium.errors import ConfigError

DEFAULT_SERVER_URL = "http://127.0.0.1:4318"
DEFAULT_DATABASE = "omium"
# The control databases Omium runs on (SQLAlchemy URL schemes, with or without a driver name).
CONTROL_SCHEMES = {"sqlite", "postgresql", "postgres", "postgresql+psycopg", "postgresql+psycopg2"}
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
# The LLM-judge attribution methods (omium.models.judge.METHODS; config imports no models).
JUDGE_METHODS = ("all_at_once", "step_by_step", "binary_search")


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


def _float(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a number, got {raw!r}") from None
    if not value > 0:
        raise ConfigError(f"{name} must be positive, got {raw!r}")
    return value


class _JudgeSettings(TypedDict):
    judge_url: str | None
    judge_model: str
    judge_key: str | None
    judge_method: str
    judge_timeout: float


def _judge(env: Mapping[str, str]) -> _JudgeSettings:
    """The ``OMIUM_JUDGE_*`` settings: all defaults (no judge) unless ``OMIUM_JUDGE_URL`` is set."""
    url = _url(env, "OMIUM_JUDGE_URL", None, {"http", "https"})
    method = (env.get("OMIUM_JUDGE_METHOD") or "all_at_once").strip().lower()
    if method not in JUDGE_METHODS:
        raise ConfigError(f"OMIUM_JUDGE_METHOD must be one of {', '.join(JUDGE_METHODS)}; got {method!r}")
    model = (env.get("OMIUM_JUDGE_MODEL") or "").strip()
    if url is not None and not model:
        raise ConfigError("OMIUM_JUDGE_MODEL must name the judge's model when OMIUM_JUDGE_URL is set")
    return {
        "judge_url": url,
        "judge_model": model,
        "judge_key": env.get("OMIUM_JUDGE_KEY") or None,
        "judge_method": method,
        "judge_timeout": _float(env, "OMIUM_JUDGE_TIMEOUT_SECONDS", 60.0),
    }


def run_lease_seconds(env: Mapping[str, str] | None = None) -> float:
    """``OMIUM_RUN_LEASE_SECONDS`` (30): how long a run's lease lasts unless renewed. Read alone,
    cheaply, each time a run starts (no token file is read for it)."""
    return _float(os.environ if env is None else env, "OMIUM_RUN_LEASE_SECONDS", 30.0)


def _names(env: Mapping[str, str], name: str) -> tuple[str, ...]:
    return tuple(part.strip().lower() for part in (env.get(name) or "").split(",") if part.strip())


# What a token may look like: `secrets.token_urlsafe` output or an operator's printable secret.
_TOKEN = re.compile(r"^[\x21-\x7e]{16,512}$")


def read_token_file(path: Path) -> str | None:
    """The token a local server left at ``path`` for local clients, if the file holds one.

    A missing, unreadable, empty or garbled file (someone overwrote it) counts as no token, so a
    server regenerates it instead of failing to start.
    """
    try:
        text = path.read_bytes()[:1024].decode("ascii").strip()
    except (OSError, UnicodeDecodeError):
        return None
    return text if _TOKEN.match(text) else None


def ensure_home(home: Path) -> Path:
    """Create ``$OMIUM_HOME`` readable by this user only (0700), and tighten an existing one:
    it holds the API token, runs, prompts and customer data.

    Directories that are plainly shared are left as they are: one with the sticky bit (``/tmp``),
    the user's home directory, and the working directory.
    """
    home.mkdir(mode=0o700, parents=True, exist_ok=True)
    try:
        info = home.stat()
        resolved = home.resolve()
        plain = (Path.home().resolve(), Path.cwd().resolve())
        shared = bool(info.st_mode & stat.S_ISVTX) or resolved in plain
        if not shared and info.st_uid == os.getuid() and info.st_mode & 0o077:
            home.chmod(0o700)
    except (OSError, RuntimeError) as exc:
        # Not fatal (a read-only mount, say), but the operator must know the data is not private.
        logging.getLogger(__name__).warning("could not make %s private (0700): %s", home, exc)
    return home


@dataclass(frozen=True)
class Settings:
    """Omium's settings.

    Attributes:
        home: ``OMIUM_HOME``, where the embedded warehouse and local state live (default ``./.omium``).
        server_url: ``OMIUM_SERVER_URL``, the Omium server's HTTP address.
        clickhouse_url: ``OMIUM_CLICKHOUSE_URL``; unset means the embedded chdb warehouse.
        control_url: ``OMIUM_CONTROL_URL``, the control database (runs, leases, recorded calls,
            shared state, hand-offs, commands): ``postgresql://...`` in production; unset means
            the SQLite file ``$OMIUM_HOME/control.db`` (see :attr:`control_database`).
        api_token: ``OMIUM_API_TOKEN``: every API call but health and loopback OTLP ingest needs
            it. Unset, a local server generates one into ``$OMIUM_HOME/api-token`` (0600), which
            local clients read (then ``api_token_from_file`` is true).
        api_token_from_file: the token came from ``$OMIUM_HOME/api-token``, not from the operator;
            such a token never allows binding beyond loopback.
        ingest_token: ``OMIUM_INGEST_TOKEN``: when set, OTLP ingest needs it (or the API token);
            beyond loopback, ingest needs one of them anyway.
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
        max_pending_bytes: ``OMIUM_MAX_PENDING_BYTES``, bytes of accepted OTLP not yet durable
            before the collector answers 503 (256 MiB).
        max_api_body_bytes: ``OMIUM_MAX_API_BODY_BYTES``, cap on an API request body (16 MiB).
        max_connections: ``OMIUM_MAX_CONNECTIONS``, open HTTP connections; more are closed at once.
        max_requests: ``OMIUM_MAX_REQUESTS``, HTTP requests in progress before 503 + Retry-After
            (health checks are never refused).
        header_timeout: ``OMIUM_HEADER_TIMEOUT_SECONDS``, time a client has to send a request's
            line and headers (10 s); idle or trickling sockets are closed after it.
        body_timeout: ``OMIUM_BODY_TIMEOUT_SECONDS``, time a client has to send a request's body
            once its headers arrived (60 s).
        shutdown_seconds: ``OMIUM_SHUTDOWN_SECONDS``, grace given to requests in progress on SIGTERM.
        run_lease_seconds: ``OMIUM_RUN_LEASE_SECONDS``, how long a run's lease lasts unless renewed.
        allowed_hosts: ``OMIUM_ALLOWED_HOSTS`` (comma-separated): ``Host`` names accepted besides
            loopback names on a loopback server (a defence against DNS rebinding).
        allowed_origins: ``OMIUM_ALLOWED_ORIGINS`` (comma-separated): browser origins allowed to
            make state-changing calls; by default none (a request with an ``Origin`` is refused).
        judge_url: ``OMIUM_JUDGE_URL``, an OpenAI-compatible chat-completions provider's base URL
            (``https://api.openai.com/v1``); set, the root-cause pipeline also asks that LLM
            judge about each failed run without a runtime chain. Unset (the default): no judge.
        judge_model: ``OMIUM_JUDGE_MODEL``, the model to ask (required with ``OMIUM_JUDGE_URL``).
        judge_key: ``OMIUM_JUDGE_KEY``, the provider's API key (a bearer token); optional, as a
            local server may need none.
        judge_method: ``OMIUM_JUDGE_METHOD``: ``all_at_once`` (default), ``step_by_step`` or
            ``binary_search``.
        judge_timeout: ``OMIUM_JUDGE_TIMEOUT_SECONDS``, how long one judge answer may take (60 s).
    """

    home: Path = field(default_factory=lambda: Path(".omium"))
    server_url: str = DEFAULT_SERVER_URL
    clickhouse_url: str | None = None
    control_url: str | None = None
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
    api_token_from_file: bool = False
    ingest_token: str | None = None
    max_pending_bytes: int = 256 * 1024 * 1024
    max_api_body_bytes: int = 16 * 1024 * 1024
    max_connections: int = 512
    max_requests: int = 256
    header_timeout: float = 10.0
    body_timeout: float = 60.0
    shutdown_seconds: float = 5.0
    run_lease_seconds: float = 30.0
    allowed_hosts: tuple[str, ...] = ()
    allowed_origins: tuple[str, ...] = ()
    judge_url: str | None = None
    judge_model: str = ""
    judge_key: str | None = field(default=None, repr=False)
    judge_method: str = "all_at_once"
    judge_timeout: float = 60.0

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Read settings from ``env`` (default: ``os.environ``), validating each value."""
        env = os.environ if env is None else env
        database = env.get("OMIUM_DATABASE") or DEFAULT_DATABASE
        if not database.replace("_", "").isalnum():
            raise ConfigError(f"OMIUM_DATABASE must be letters, digits and '_', got {database!r}")
        home = Path(env.get("OMIUM_HOME") or ".omium")
        file_token = None if env.get("OMIUM_API_TOKEN") else read_token_file(home / "api-token")
        settings = cls(
            home=home,
            server_url=_url(env, "OMIUM_SERVER_URL", DEFAULT_SERVER_URL, {"http", "https"}) or "",
            clickhouse_url=_url(env, "OMIUM_CLICKHOUSE_URL", None, {"http", "https", "clickhouse", "chdb"}),
            control_url=_url(env, "OMIUM_CONTROL_URL", None, CONTROL_SCHEMES),
            api_token=env.get("OMIUM_API_TOKEN") or file_token,
            api_token_from_file=file_token is not None,
            ingest_token=env.get("OMIUM_INGEST_TOKEN") or None,
            database=database,
            host=env.get("OMIUM_HOST") or "127.0.0.1",
            http_port=_int(env, "OMIUM_HTTP_PORT", 4318),
            grpc_port=_int(env, "OMIUM_GRPC_PORT", 4317),
            console_port=_int(env, "OMIUM_CONSOLE_PORT", 8501),
            dagster_port=_int(env, "OMIUM_DAGSTER_PORT", 3000),
            max_pending_spans=_int(env, "OMIUM_MAX_PENDING_SPANS", 200_000),
            max_body_bytes=_int(env, "OMIUM_MAX_BODY_BYTES", 64 * 1024 * 1024),
            fsync=_bool(env, "OMIUM_FSYNC", False),
            max_pending_bytes=_int(env, "OMIUM_MAX_PENDING_BYTES", 256 * 1024 * 1024),
            max_api_body_bytes=_int(env, "OMIUM_MAX_API_BODY_BYTES", 16 * 1024 * 1024),
            max_connections=_int(env, "OMIUM_MAX_CONNECTIONS", 512),
            max_requests=_int(env, "OMIUM_MAX_REQUESTS", 256),
            header_timeout=_float(env, "OMIUM_HEADER_TIMEOUT_SECONDS", 10.0),
            body_timeout=_float(env, "OMIUM_BODY_TIMEOUT_SECONDS", 60.0),
            shutdown_seconds=_float(env, "OMIUM_SHUTDOWN_SECONDS", 5.0),
            run_lease_seconds=run_lease_seconds(env),
            allowed_hosts=_names(env, "OMIUM_ALLOWED_HOSTS"),
            allowed_origins=_names(env, "OMIUM_ALLOWED_ORIGINS"),
            **_judge(env),
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
    def control_database(self) -> str:
        """The control database's URL: ``OMIUM_CONTROL_URL``, else SQLite in ``$OMIUM_HOME``."""
        if self.control_url:
            return self.control_url
        return f"sqlite:///{(self.home / 'control.db').resolve()}"

    @property
    def token_path(self) -> Path:
        """Where a local server leaves the API token it generated."""
        return self.home / "api-token"

    @property
    def embedded(self) -> bool:
        """True when no ClickHouse server is configured (chdb in the server process)."""
        return self.clickhouse_url is None or self.clickhouse_url.startswith("chdb:")

    @property
    def loopback(self) -> bool:
        """True when the server binds this machine's loopback interface only."""
        return self.host in LOOPBACK_HOSTS

    def check_bind(self) -> None:
        """Refuse to expose a server beyond loopback unless the operator chose its token.

        A token generated into (or read from) ``$OMIUM_HOME/api-token`` does not count: exposing
        the server must be a decision, not a side effect of an earlier local run.
        """
        if not self.loopback and (not self.api_token or self.api_token_from_file):
            raise ConfigError(
                f"OMIUM_HOST={self.host!r} exposes the server beyond this machine; "
                "set OMIUM_API_TOKEN (and, for OTLP ingest, OMIUM_INGEST_TOKEN if agents should "
                "not hold the API token) so that every call needs a token"
            )


__all__ = ["DEFAULT_DATABASE", "DEFAULT_SERVER_URL", "Settings", "ensure_home", "read_token_file"]
