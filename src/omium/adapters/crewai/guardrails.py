"""Omium guards as CrewAI task guardrails.

:func:`guardrail` turns a check on a task's output into a CrewAI guardrail. CrewAI keeps its own
behaviour — a failing guardrail sends its message back to the agent, which tries again, up to the
task's ``guardrail_max_retries`` — and Omium records every verdict on the task's span. When CrewAI
gives up, the run fails with a :class:`~omium.errors.GuardViolation` under the guard's trigger
(``policy_violation`` by default), so the run's recovery policy handles it like any Omium guard:
roll back, pause for review, retry.
"""

# No `from __future__ import annotations` here: CrewAI checks a guardrail's return annotation at
# runtime and needs the real `tuple[bool, Any]`, not its string.

from collections.abc import Callable
from typing import Any

from crewai.tasks.task_output import TaskOutput

from omium.adapters.crewai.crew import note_guardrail
from omium.sdk.guards import Verdict

# A check's answer: True/None (holds), False or a message (fails), or an Omium Verdict.
Check = Callable[[TaskOutput], Verdict | bool | str | None]


# What guardrail() returns: a function, since CrewAI reads its source (a callable object will not do).
Guardrail = Callable[[TaskOutput], tuple[bool, Any]]


def _verdict(check: Check, name: str, output: TaskOutput) -> tuple[bool, str]:
    try:
        answer = check(output)
    except Exception as error:  # a broken check fails the output; it does not crash the crew
        answer = f"{name} raised {type(error).__name__}: {error}"
    if isinstance(answer, Verdict):
        return answer.passed, answer.message or f"{name} failed"
    if answer is None or answer is True:
        return True, ""
    return False, answer if isinstance(answer, str) else f"{name} failed"


def guardrail(check: Check, *, name: str | None = None, trigger: str = "policy_violation") -> Guardrail:
    """A CrewAI task guardrail (a function of the ``TaskOutput``) from an Omium-style check.

    Args:
        check: judges a task's output: True/None when it holds, False or a message when it does
            not (the message goes back to the agent), or a :class:`omium.sdk.guards.Verdict`.
        name: the guard's name in the run's records (default: the check's ``__name__``).
        trigger: the recovery-policy trigger of a run whose guardrail gave up.

    Example:
        >>> import re
        >>> def apr_in_range(output):
        ...     found = re.search(r"APR (\\d+(?:\\.\\d+)?)%", output.raw)
        ...     if found is None or not 2.5 <= float(found.group(1)) <= 8.5:
        ...         return "the offer must state an APR between 2.5% and 8.5%"
        >>> check = guardrail(apr_in_range)
        >>> check(TaskOutput(description="terms", raw="APR 0%", agent="terms"))
        (False, 'the offer must state an APR between 2.5% and 8.5%')
        >>> check(TaskOutput(description="terms", raw="APR 6.9%", agent="terms"))[0]
        True
    """
    chosen = name or str(getattr(check, "__name__", "guardrail"))

    def omium_guardrail(output: TaskOutput) -> tuple[bool, Any]:
        passed, message = _verdict(check, chosen, output)
        note_guardrail(chosen, trigger, passed, message)
        return (True, output) if passed else (False, message)

    omium_guardrail.__name__ = omium_guardrail.__qualname__ = chosen  # CrewAI names guardrails by it
    return omium_guardrail


__all__ = ["Check", "Guardrail", "guardrail"]
