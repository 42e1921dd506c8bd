"""The checkpoint store through the Omium server's control API (``/v1/store/{method}``)."""

from __future__ import annotations

import base64
import socket
from collections.abc import Sequence
from typing import Any

import httpx

from omium.errors import AuthError, ConflictError, NotFoundError, ServerError, ServerUnavailable
from omium.sdk.store import (
    CheckpointRecord,
    CheckpointStore,
    CommandRecord,
    EventRecord,
    HandoffRecord,
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
        message = response.json().get("error", response.text) if response.content else response.reason_phrase
        if response.status_code == 404:
            raise NotFoundError(message)
        if response.status_code == 409:
            raise ConflictError(message)
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
    ) -> RunRecord:
        return RunRecord(
            **self._call(
                "update_run",
                run_id=run_id,
                expected_version=expected_version,
                status=status,
                error=error,
                attributes=attributes,
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
        self, run_id: str, channel: str, seq: int, status: str, reason: str = "", receive_key: str = ""
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
            )
        )

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


__all__ = ["RemoteStore"]
