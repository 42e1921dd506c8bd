"""Catching a failure at the step where it happens: guards, detectors and high-value gates.

* :func:`guard` checks a post-condition in agent code (``guard(2.5 <= apr <= 8.5, "APR out of
  range")``); a failing guard raises :class:`GuardViolation` (trigger ``policy_violation``).
* A :class:`Detector` looks at every result of some kinds of calls (LLM calls by default) before
  it is recorded; a failing verdict fails the call with :class:`Detected` under the detector's
  trigger (a hallucination check is a detector with trigger ``hallucination_detected``).
* :func:`high_value` is a gate before an operation: above the policy's threshold it raises
  :class:`ApprovalRequired` until a reviewer approves it.

Guards and gates are recorded calls, so the position of a failure is known and a resumed run
does not ask twice for what was already approved or checked.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from omium.errors import ApprovalRequired, Detected, GuardViolation
from omium.sdk.calls import CallDefinition, invoke
from omium.sdk.context import current
from omium.sdk.store import RunRecord

APPROVALS_ATTRIBUTE = "approvals"  # JSON [gate key, ...]: the gates a reviewer approved
REJECTIONS_ATTRIBUTE = "rejections"  # JSON {gate key: reason}: the gates a reviewer rejected


@dataclass(frozen=True)
class Verdict:
    """A detector's finding: ``passed`` or not, with a message and evidence."""

    passed: bool
    message: str = ""
    evidence: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class CallView:
    """What a detector sees: the call's kind (``llm``, ``tool``, ``step``), name, agent, result."""

    kind: str
    name: str
    agent: str
    result: Any
    args: tuple[Any, ...] = ()


@dataclass(frozen=True)
class Detector:
    """A pluggable check on call results.

    ``check`` returns a :class:`Verdict`, or True/None (passed), or False/a message (failed).

    Example:
        >>> zero_apr = Detector(
        ...     "zero_apr", "hallucination_detected",
        ...     lambda call: "0% APR offered" if "0% APR" in str(call.result) else None,
        ... )
    """

    name: str
    trigger: str
    check: Callable[[CallView], Verdict | bool | str | None]
    kinds: tuple[str, ...] = ("llm",)

    def judge(self, call: CallView) -> Verdict:
        """Run the check and normalise its answer."""
        answer = self.check(call)
        if isinstance(answer, Verdict):
            return answer
        if answer is None or answer is True:
            return Verdict(True)
        return Verdict(False, answer if isinstance(answer, str) else f"{self.name} failed")


_registry: list[Detector] = []
_registry_lock = threading.Lock()


def register_detector(detector: Detector) -> Detector:
    """Apply ``detector`` to every run in this process (a detector with the same name is replaced)."""
    with _registry_lock:
        _registry[:] = [d for d in _registry if d.name != detector.name] + [detector]
    return detector


def unregister_detector(name: str) -> None:
    """Stop applying the detector called ``name``."""
    with _registry_lock:
        _registry[:] = [d for d in _registry if d.name != name]


def registered_detectors() -> list[Detector]:
    """The detectors applied to every run."""
    return list(_registry)


def screen(
    kind: str, name: str, agent: str, result: Any, args: tuple[Any, ...], extra: Iterable[Detector]
) -> None:
    """Run the detectors that apply to a ``kind`` call; raise :class:`Detected` on a failing verdict."""
    for detector in [*_registry, *extra]:
        if kind not in detector.kinds:
            continue
        verdict = detector.judge(CallView(kind, name, agent, result, args))
        if not verdict.passed:
            raise Detected(
                f"{detector.name}: {verdict.message}" if verdict.message else detector.name,
                trigger=detector.trigger,
                check=detector.name,
                evidence={"call": name, "agent": agent, **verdict.evidence},
            )


def guard(
    condition: bool,
    message: str,
    *,
    name: str = "guard",
    trigger: str = "policy_violation",
    evidence: dict[str, Any] | None = None,
) -> None:
    """A post-condition: if ``condition`` is false the run fails here with :class:`GuardViolation`.

    Example:
        >>> guard(2.5 <= terms["apr"] <= 8.5, f"APR {terms['apr']}% is outside 2.5%-8.5%",
        ...       name="apr_range", evidence={"apr": terms["apr"]})      # doctest: +SKIP
    """
    held = bool(condition)

    def check() -> bool:
        if not held:
            raise GuardViolation(message, trigger=trigger, check=name, evidence=evidence)
        return True

    invoke(CallDefinition(name, "guard", check), (), {})


@dataclass(frozen=True)
class Decision:
    """A reviewer's decision on a gate: ``approve`` or ``reject`` (with the reason).

    Decisions are recorded by :func:`omium.recovery.review.review` only; gates read them here.
    """

    decision: str
    reason: str = ""

    @property
    def approved(self) -> bool:
        """Whether the gate may pass."""
        return self.decision == "approve"


def gate_decision(run: RunRecord, gate: str) -> Decision | None:
    """The decision recorded on the gate ``gate`` (its key) of ``run``; None while undecided."""
    if gate in json.loads(run.attributes.get(APPROVALS_ATTRIBUTE, "[]")):
        return Decision("approve")
    rejections = json.loads(run.attributes.get(REJECTIONS_ATTRIBUTE, "{}"))
    if gate in rejections:
        return Decision("reject", str(rejections[gate]))
    return None


def high_value(amount: float, what: str, *, threshold: float | None = None) -> None:
    """A gate before an operation worth ``amount``: above the threshold (``threshold``, else the
    policy's ``high_value_operation``) the run waits for a reviewer's approval.

    Raises:
        ApprovalRequired: not approved yet (the supervisor pauses the run for review).
    """
    context = current()
    limit = threshold
    if limit is None and context.policy is not None:
        limit = context.policy.high_value_threshold

    def gate() -> bool:
        if limit is None or amount <= limit:
            return True
        key = current().call_key
        decided = gate_decision(context.store.get_run(context.run_id), key)
        if decided is not None and decided.approved:
            return True
        raise ApprovalRequired(
            f"{what}: {amount:,.2f} is above the approval threshold {limit:,.2f}",
            trigger="high_value_operation",
            check=what,
            evidence={"amount": amount, "threshold": limit, "operation": what, "gate": key},
        )

    invoke(CallDefinition(what, "gate", gate), (), {})


__all__ = [
    "APPROVALS_ATTRIBUTE",
    "REJECTIONS_ATTRIBUTE",
    "CallView",
    "Decision",
    "Detector",
    "Verdict",
    "gate_decision",
    "guard",
    "high_value",
    "register_detector",
    "registered_detectors",
    "screen",
    "unregister_detector",
]
