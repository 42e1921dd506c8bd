"""Editable agent configuration and forks: branch a run from a checkpoint with changes.

An agent's editable fields (``prompt``, ``constraints``, ``tools``) are declared with
``@agent(config=...)`` and read with :func:`agent_config`. :func:`fork` starts a new run that
shares the parent's recorded calls up to a checkpoint (by reference: values are content
addressed, nothing is copied) and overrides some of those fields; resuming the fork runs the
rest with the changes, so the branches can be compared.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import replace
from typing import Any

from omium.errors import ConfigError, NotFoundError
from omium.sdk.context import call_order, checkpoint_call_id, current, key_call_id, step_call_id
from omium.sdk.runs import AGENTS_ATTRIBUTE, INPUT_ATTRIBUTE, RollbackView, default_store, live_checkpoints
from omium.sdk.store import CheckpointStore, RunRecord

EDITABLE_FIELDS = ("prompt", "constraints", "tools")
# The recovery policy's names for the same fields (``allowed_edits: [tool_selection]``): an
# override may use either; it is stored under the agent's configuration name.
POLICY_NAMES = {"tool_selection": "tools"}


def _field(key: str) -> str:
    """``AGENT.FIELD`` with FIELD in the agent configuration's name; ConfigError if not editable."""
    agent, _, field_name = key.partition(".")
    field_name = POLICY_NAMES.get(field_name, field_name)
    if field_name not in EDITABLE_FIELDS:
        raise ConfigError(
            f"{key!r}: only prompt, constraints, tool_selection (or tools) of an agent may be edited"
        )
    return f"{agent}.{field_name}"


def agent_config(agent: str | None = None) -> dict[str, Any]:
    """The editable configuration of ``agent`` (default: the running one), with the run's overrides."""
    context = current()
    name = agent or context.agent
    merged = dict(context.agent_configs.get(name, {}))
    for key, value in context.overrides.items():
        owner, _, field_name = key.partition(".")
        if owner == name:
            merged[field_name] = value
    return merged


def parse_overrides(assignments: list[str]) -> dict[str, Any]:
    """``["terms_agent.prompt=APR MUST be 2.5%-8.5%"]`` -> ``{"terms_agent.prompt": "..."}``.

    Values that parse as JSON (lists, objects, numbers) are taken as JSON.
    """
    overrides: dict[str, Any] = {}
    for assignment in assignments:
        key, sep, raw = assignment.partition("=")
        agent, dot, _ = key.partition(".")
        if not sep or not dot or not agent:
            raise ConfigError(f"an override is AGENT.FIELD=VALUE, got {assignment!r}")
        key = _field(key)
        try:
            value: Any = json.loads(raw) if raw[:1] in "[{" or raw.replace(".", "", 1).isdigit() else raw
        except ValueError:
            value = raw
        overrides[key] = value
    return overrides


def fork(
    run_id: str,
    checkpoint: str,
    *,
    overrides: dict[str, Any] | None = None,
    new_run_id: str | None = None,
    store: CheckpointStore | None = None,
) -> RunRecord:
    """Branch run ``run_id`` at ``checkpoint`` into a new run with ``overrides``; resume it to run.

    Raises:
        NotFoundError: unknown run or checkpoint.
        ConfigError: an override names a field that is not editable, or an agent the run never
            ran (an override nothing reads would fork a run identical to its parent).
    """
    store = store or default_store()
    parent = store.get_run(run_id)
    overrides = {_field(key): value for key, value in (overrides or {}).items()}
    agents = {s.agent for s in store.steps(run_id) if s.agent}
    agents |= set(json.loads(parent.attributes.get(AGENTS_ATTRIBUTE, "[]") or "[]"))
    unknown = sorted({key.partition(".")[0] for key in overrides} - agents)
    if unknown and agents:
        raise ConfigError(
            f"run {run_id!r} has no agent {', '.join(map(repr, unknown))}; "
            f"its agents: {', '.join(sorted(agents))}"
        )
    marks = [c for c in live_checkpoints(store, parent) if c.name == checkpoint]
    if not marks:
        raise NotFoundError(f"run {run_id!r} has no checkpoint {checkpoint!r}")
    mark = marks[-1]
    inherited = json.loads(parent.attributes.get("overrides", "{}"))
    attributes = {"overrides": json.dumps(inherited | overrides), "forked_at": str(mark.step_index)}
    if INPUT_ATTRIBUTE in parent.attributes:
        attributes[INPUT_ATTRIBUTE] = parent.attributes[INPUT_ATTRIBUTE]
    branch = store.create_run(
        RunRecord(
            run_id=new_run_id or f"{run_id}-fork-{uuid.uuid4().hex[:8]}",
            workflow=parent.workflow,
            status="paused",
            parent_run_id=run_id,
            forked_from=checkpoint,
            attributes=attributes,
        )
    )
    boundary = call_order(checkpoint_call_id(mark))
    view = RollbackView.of(parent)
    for step in store.steps(run_id):
        if call_order(step_call_id(step)) < boundary and step.status == "completed" and view.live_step(step):
            store.record_step(replace(step, run_id=branch.run_id, fence=0))
    _copy_handoffs(store, run_id, branch.run_id, boundary)
    for kept in live_checkpoints(store, parent):
        if kept.seq <= mark.seq:
            store.add_checkpoint(
                replace(kept, run_id=branch.run_id, checkpoint_id=f"{branch.run_id}:{kept.seq}", fence=0)
            )
    return branch


def _rekey(key: str, parent: str, branch: str) -> str:
    return branch + key[len(parent) :] if key.startswith(f"{parent}:") else key


def _before(key: str, run_id: str, boundary: tuple[int, ...]) -> bool:
    """Whether the call with idempotency key ``key`` is one of ``run_id``'s before ``boundary``."""
    call_id = key_call_id(key, run_id)
    return bool(call_id) and call_order(call_id) < boundary


def _copy_handoffs(store: CheckpointStore, parent: str, branch: str, boundary: tuple[int, ...]) -> None:
    """The branch inherits the messages sent before the fork point; those received after it are
    unreceived in the branch (its agents receive them again)."""
    channels = {s.name for s in store.steps(parent) if s.kind in ("handoff_send", "handoff_receive")}
    for channel in sorted(channels):
        for message in store.handoffs(parent, channel):
            if not _before(message.send_key, parent, boundary):
                continue
            received = _before(message.receive_key, parent, boundary)
            store.append_handoff(
                replace(
                    message,
                    run_id=branch,
                    send_key=_rekey(message.send_key, parent, branch),
                    receive_key=_rekey(message.receive_key, parent, branch) if received else "",
                    status=message.status if received or message.status == "rejected" else "sent",
                    version=1,
                    fence=0,
                )
            )


__all__ = ["EDITABLE_FIELDS", "agent_config", "fork", "parse_overrides"]
