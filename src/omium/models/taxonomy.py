"""The failure taxonomy: the five classes users care about, and MAST codes where one is known.

Labels come from different places — the runtime's own triggers (a guard violation, a stale or
rejected hand-off, a tool exception), human reviews, and the free-text reasons of imported ground
truth — and all of them land in one vocabulary here, so a classifier can learn from every source
and the console and Grafana count failures alike.

MAST (the Multi-Agent System failure Taxonomy, Cemri et al. 2025) codes are kept where the
evidence names one: FM-1.x specification issues, FM-2.x inter-agent misalignment, FM-3.x task
verification. Verification failures (FM-3.x) count as specification failures here: the output did
not meet the task's specification and nobody caught it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

SPECIFICATION = "specification"
INTER_AGENT_MISALIGNMENT = "inter_agent_misalignment"
STATE_SYNCHRONISATION = "state_synchronisation"
TOOL_INVOCATION = "tool_invocation"
COMMUNICATION_PROTOCOL = "communication_protocol"
UNKNOWN = "unknown"
NONE = "none"

CLASSES = (
    SPECIFICATION,
    INTER_AGENT_MISALIGNMENT,
    STATE_SYNCHRONISATION,
    TOOL_INVOCATION,
    COMMUNICATION_PROTOCOL,
)

MAST = {
    "FM-1.1": ("disobey task specification", SPECIFICATION),
    "FM-1.2": ("disobey role specification", SPECIFICATION),
    "FM-1.3": ("step repetition", SPECIFICATION),
    "FM-1.4": ("loss of conversation history", SPECIFICATION),
    "FM-1.5": ("unaware of termination conditions", SPECIFICATION),
    "FM-2.1": ("conversation reset", INTER_AGENT_MISALIGNMENT),
    "FM-2.2": ("fail to ask for clarification", INTER_AGENT_MISALIGNMENT),
    "FM-2.3": ("task derailment", INTER_AGENT_MISALIGNMENT),
    "FM-2.4": ("information withholding", INTER_AGENT_MISALIGNMENT),
    "FM-2.5": ("ignored other agent's input", INTER_AGENT_MISALIGNMENT),
    "FM-2.6": ("reasoning-action mismatch", INTER_AGENT_MISALIGNMENT),
    "FM-3.1": ("premature termination", SPECIFICATION),
    "FM-3.2": ("no or incomplete verification", SPECIFICATION),
    "FM-3.3": ("incorrect verification", SPECIFICATION),
}

# Runtime triggers (the recovery policy's vocabulary) and the class and MAST code they imply.
TRIGGERS = {
    "policy_violation": (SPECIFICATION, "FM-1.1"),
    "hallucination_detected": (SPECIFICATION, "FM-1.1"),
    "stale_handoff": (STATE_SYNCHRONISATION, ""),
    "conflict": (STATE_SYNCHRONISATION, ""),
    "handoff_rejected": (COMMUNICATION_PROTOCOL, ""),
    "schema_violation": (COMMUNICATION_PROTOCOL, ""),
    "tool_error": (TOOL_INVOCATION, ""),
    "exception": (TOOL_INVOCATION, ""),
}

# Approval gates pause a run for a human; they are not failures of the agents.
NOT_FAILURES = frozenset({"high_value_operation"})

# Free-text reasons (imported ground truth, reviewers' notes) -> MAST code, first match wins. The
# order puts the specific before the general: "failed to verify" is verification, not a tool error,
# and "ignored the Verification_Expert" is ignoring another agent, whatever that agent is called.
_REASONS: tuple[tuple[re.Pattern[str], str, str], ...] = tuple(
    (re.compile(pattern, re.I), code, cls)
    for pattern, code, cls in (
        (r"stale|out[- ]of[- ]date|outdated|conflict|race|overwr", "", STATE_SYNCHRONISATION),
        (r"schema|format(ted)? (wrong|incorrect)|malformed|protocol|parse", "", COMMUNICATION_PROTOCOL),
        (r"ignor|overlook|disregard|did not (use|consider)", "FM-2.5", INTER_AGENT_MISALIGNMENT),
        (r"verif|double[- ]check|validat|did not check|didn't check", "FM-3.2", SPECIFICATION),
        (r"prematur|too early|stopp?ed before|terminat", "FM-3.1", SPECIFICATION),
        (r"repeat|loop|again and again|redundant", "FM-1.3", SPECIFICATION),
        (r"clarif|ambigu|misunderst|misinterpret|misread", "FM-2.2", INTER_AGENT_MISALIGNMENT),
        (r"derail|off[- ]topic|irrelevant|deviat", "FM-2.3", INTER_AGENT_MISALIGNMENT),
        (r"withh[oe]ld|did not (share|provide|pass)|omit", "FM-2.4", INTER_AGENT_MISALIGNMENT),
        (
            r"tool|api\b|search|brows|code (error|fail)|execution|exitcode|url|website|web page|"
            r"function call|wrong (function|argument)",
            "",
            TOOL_INVOCATION,
        ),
        (r"hallucin|fabricat|made up|unsupported|assum", "FM-1.1", SPECIFICATION),
        (
            r"incorrect|wrong|error|mistake|miscalculat|inaccura|fail|not (correct|accurate)|instead of",
            "FM-1.1",
            SPECIFICATION,
        ),
    )
)


@dataclass(frozen=True)
class Label:
    """A failure in the taxonomy: its class, a MAST code where known, and why it was put there."""

    failure_class: str
    mast_code: str
    evidence: str


def from_trigger(trigger: str, message: str = "") -> Label:
    """The label a runtime trigger implies (``none`` for approval gates)."""
    if trigger in NOT_FAILURES:
        return Label(NONE, "", f"{trigger}: an approval gate, not a failure")
    failure_class, code = TRIGGERS.get(trigger, (UNKNOWN, ""))
    if failure_class == UNKNOWN and message:
        return from_reason(message)
    return Label(failure_class, code, f"trigger {trigger}" + (f": {message}" if message else ""))


def from_reason(reason: str) -> Label:
    """The label a free-text reason implies (``unknown`` when no rule matches)."""
    for pattern, code, failure_class in _REASONS:
        match = pattern.search(reason)
        if match:
            return Label(failure_class, code, f"reason mentions {match.group(0)!r}")
    return Label(UNKNOWN, "", "no rule matched the reason")


__all__ = [
    "CLASSES",
    "COMMUNICATION_PROTOCOL",
    "INTER_AGENT_MISALIGNMENT",
    "MAST",
    "NONE",
    "SPECIFICATION",
    "STATE_SYNCHRONISATION",
    "TOOL_INVOCATION",
    "TRIGGERS",
    "UNKNOWN",
    "Label",
    "from_reason",
    "from_trigger",
]
