"""The checkpoint store through the Omium server's control API (``/v1/store/{method}``).

A refusal keeps its kind across HTTP: 404 is :class:`NotFoundError`, 409 a
:class:`ConflictError`, or by the body's ``code`` a :class:`RunBusy` (with ``holder`` and
``lease_until``) or a :class:`FencedOut`.
"""

from __future__ import annotations

import base64
import socket
from collections.abc import Sequence
from typing import Any

import httpx

from omium.errors import (
    AuthError,
    ConflictError,
    FencedOut,
    NotFoundError,
    RunBusy,
    ServerError,
    ServerUnavailable,
)
from omium.sdk.store import (
    CheckpointRecord,
    CheckpointStore,
    CommandRecord,
    EventRecord,
    HandoffRecord,
    RunLease,
    RunRecord,
    StateVersion,
    StepRecord,
)


class RemoteStore(CheckpointStore):
    """A :class:`CheckpointStore` served by an Omium server (writes need its API token)."""

    def __init__(self, server_url: str, *, token: str | None = None, timeout: float = 30.0) -> None:
        self._url = server_url.rstrip("/")
        headers = {"authorization": f"Bearer {token}"} if token else {}
        # TCP_NODELAY: a step is one small request; it must not wait for delayed ACKs.
        transport = httpx.HTTPTransport(socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)])
        self._http = httpx.Client(base_url=self._url, headers=headers, timeout=timeout, transport=transport)

    @property
    def url(self) -> str:
        """The server's base URL."""
        return self._url

    def _call(self, method: str, **args: Any) -> Any:
        try:
            response = self._http.post(f"/v1/store/{method}", json={"args": args})
        except httpx.TransportError as exc:
            raise ServerUnavailable(f"no Omium server answered at {self._url}: {exc}") from exc
        if response.status_code == 200:
            return response.json()["result"]
        body = _error_body(response)
        message = str(body.get("error", response.text)) if response.content else response.reason_phrase
        if response.status_code == 404:
            raise NotFoundError(message)
        if response.status_code == 409:
            raise _conflict(message, body)
        if response.status_code == 401:
            raise AuthError(message, 401)
        raise ServerError(f"{response.status_code}: {message}", response.status_code)

    def put_blob(self, data: bytes) -> str:
        return str(self._call("put_blob", data=base64.b64encode(data).decode()))

    def get_blob(self, digest: str) -> bytes:
        return base64.b64decode(self._call("get_blob", digest=digest))

    def get_blobs(self, digests: Sequence[str]) -> dict[str, bytes]:
        found = self._call("get_blobs", digests=list(dict.fromkeys(digests)))
        return {d: base64.b64decode(data) for d, data in found.items()}

    def create_run(self, run: RunRecord) -> RunRecord:
        return RunRecord(**self._call("create_run", run=run.__dict__))

    def get_run(self, run_id: str) -> RunRecord:
        return RunRecord(**self._call("get_run", run_id=run_id))

    def update_run(
        self,
        run_id: str,
        expected_version: int,
        *,
        status: str,
        error: str = "",
        attributes: dict[str, str] | None = None,
        fence: int = 0,
    ) -> RunRecord:
        return RunRecord(
            **self._call(
                "update_run",
                run_id=run_id,
                expected_version=expected_version,
                status=status,
                error=error,
                attributes=attributes,
                fence=fence,
            )
        )

    def list_runs(self, status: str | None = None, limit: int = 100) -> list[RunRecord]:
        return [RunRecord(**r) for r in self._call("list_runs", status=status, limit=limit)]

    def record_step(self, step: StepRecord) -> None:
        self._call("record_step", step=step.__dict__)

    def steps(self, run_id: str) -> list[StepRecord]:
        return [StepRecord(**s) for s in self._call("steps", run_id=run_id)]

    def add_checkpoint(self, checkpoint: CheckpointRecord) -> None:
        self._call("add_checkpoint", checkpoint=checkpoint.__dict__)

    def checkpoints(self, run_id: str) -> list[CheckpointRecord]:
        return [CheckpointRecord(**c) for c in self._call("checkpoints", run_id=run_id)]

    def append_handoff(self, message: HandoffRecord) -> bool:
        return bool(self._call("append_handoff", message=message.__dict__))

    def handoffs(self, run_id: str, channel: str) -> list[HandoffRecord]:
        return [HandoffRecord(**m) for m in self._call("handoffs", run_id=run_id, channel=channel)]

    def set_handoff_status(
        self,
        run_id: str,
        channel: str,
        seq: int,
        status: str,
        reason: str = "",
        receive_key: str = "",
        *,
        fence: int = 0,
    ) -> HandoffRecord:
        return HandoffRecord(
            **self._call(
                "set_handoff_status",
                run_id=run_id,
                channel=channel,
                seq=seq,
                status=status,
                reason=reason,
                receive_key=receive_key,
                fence=fence,
            )
        )

    def read_state(self, namespace: str, key: str) -> StateVersion | None:
        found = self._call("read_state", namespace=namespace, key=key)
        return StateVersion(**found) if found else None

    def write_state(
        self,
        namespace: str,
        key: str,
        expected_version: int,
        value_hash: str,
        *,
        writer: str = "",
        run_id: str = "",
        fence: int = 0,
    ) -> StateVersion:
        return StateVersion(
            **self._call(
                "write_state",
                namespace=namespace,
                key=key,
                expected_version=expected_version,
                value_hash=value_hash,
                writer=writer,
                run_id=run_id,
                fence=fence,
            )
        )

    def acquire_lease(self, run_id: str, holder: str, lease_seconds: float) -> RunLease:
        return RunLease(
            **self._call("acquire_lease", run_id=run_id, holder=holder, lease_seconds=float(lease_seconds))
        )

    def renew_lease(self, run_id: str, holder: str, fence: int, lease_seconds: float) -> RunLease:
        return RunLease(
            **self._call(
                "renew_lease", run_id=run_id, holder=holder, fence=fence, lease_seconds=float(lease_seconds)
            )
        )

    def release_lease(self, run_id: str, holder: str, fence: int) -> None:
        self._call("release_lease", run_id=run_id, holder=holder, fence=fence)

    def lease(self, run_id: str) -> RunLease | None:
        found = self._call("lease", run_id=run_id)
        return RunLease(**found) if found else None

    def request_stop(self, run_id: str, fence: int, request: str, by: str) -> RunLease | None:
        found = self._call("request_stop", run_id=run_id, fence=fence, request=request, by=by)
        return RunLease(**found) if found else None

    def record_event(self, event: EventRecord) -> None:
        self._call("record_event", event=event.__dict__)

    def events(self, run_id: str = "", limit: int = 10_000) -> list[EventRecord]:
        return [EventRecord(**e) for e in self._call("events", run_id=run_id, limit=limit)]

    def enqueue_command(self, command: CommandRecord) -> CommandRecord:
        return CommandRecord(**self._call("enqueue_command", command=command.__dict__))

    def commands(self, run_id: str = "", status: str = "") -> list[CommandRecord]:
        return [CommandRecord(**c) for c in self._call("commands", run_id=run_id, status=status)]

    def claim_command(
        self, worker: str, lease_seconds: float, kinds: list[str] | None = None
    ) -> CommandRecord | None:
        found = self._call("claim_command", worker=worker, lease_seconds=lease_seconds, kinds=kinds)
        return CommandRecord(**found) if found else None

    def renew_command(self, command_id: str, worker: str, lease_seconds: float) -> CommandRecord:
        return CommandRecord(
            **self._call("renew_command", command_id=command_id, worker=worker, lease_seconds=lease_seconds)
        )

    def finish_command(self, command_id: str, worker: str, status: str, result: str = "") -> CommandRecord:
        return CommandRecord(
            **self._call("finish_command", command_id=command_id, worker=worker, status=status, result=result)
        )

    def close(self) -> None:
        self._http.close()


def _error_body(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _conflict(message: str, body: dict[str, Any]) -> ConflictError:
    """The 409's own error: the server names it in ``code``."""
    code = body.get("code")
    if code == "run_busy":
        holder, until = body.get("holder"), body.get("lease_until")
        return RunBusy(
            message,
            holder=holder if isinstance(holder, str) else "",
            lease_until=until if isinstance(until, int) else 0,
        )
    if code == "fenced_out":
        return FencedOut(message)
    return ConflictError(message)


__all__ = ["RemoteStore"]
