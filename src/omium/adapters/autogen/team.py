"""``instrument()`` a set of AG2 agents, then ``Team.run`` their conversation as a durable Omium run.

The conversation stays the team's own code — sequential ``Agent.ask`` chats, or an AG2 network
with a workflow channel. :meth:`Team.run` runs it as an Omium run (or resumes the run with that id):
turns are traced, recorded and checkpointed by the agents' middleware; finished turns of a resumed
run come from the record; a rejected hand-off or a review gate stops the conversation cleanly, and
the run records why.
"""

from __future__ import annotations

import logging
import uuid
import weakref
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any

from ag2 import Agent
from opentelemetry import context as otel_context

from omium.adapters import review, stops
from omium.adapters.autogen.middleware import OmiumMiddleware
from omium.adapters.autogen.session import Session, Sessions, Stop
from omium.adapters.handoffs import HandoffCheck
from omium.adapters.review import ReviewGate
from omium.errors import ApprovalRequired, HandoffRejected
from omium.sdk import llm, runs
from omium.sdk.context import RunContext, current, maybe_current
from omium.sdk.store import CheckpointStore

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Outcome:
    """How :meth:`Team.run` ended.

    ``status`` is ``completed`` (``result`` is the conversation's return value), ``rejected`` (a
    hand-off was rejected: ``reason`` says which and why; the run is stored as failed with that
    error) or ``paused`` (a review gate waits for a person; the run is stored as paused). The
    counts are of this execution: turns that ran, turns answered from the record, model calls.
    """

    run_id: str
    status: str
    result: Any = None
    reason: str = ""
    executed: int = 0
    replayed: int = 0
    model_calls: int = 0


class Team:
    """AG2 agents under Omium (made by :func:`instrument`)."""

    def __init__(
        self,
        agents: list[Agent[Any]],
        *,
        run_id: str | None = None,
        store: CheckpointStore | None = None,
        name: str | None = None,
        handoffs: Iterable[HandoffCheck] = (),
        reviews: Iterable[ReviewGate] = (),
        capture_content: bool | None = None,
    ) -> None:
        self.agents = agents
        self.run_id = run_id
        self.store = store
        self.name = name
        self.handoffs = list(handoffs)
        self.reviews = list(reviews)
        self._capture_content = capture_content
        self._active: list[Session] = []  # runs this team is executing now
        # The team's conversation in each execution of a run it takes part in.
        self._sessions = Sessions(name or "+".join(a.name for a in agents))

    @property
    def capture_content(self) -> bool:
        """Whether spans carry message and tool content (default: as ``omium.sdk.llm.CAPTURE_CONTENT``)."""
        return llm.CAPTURE_CONTENT if self._capture_content is None else self._capture_content

    # --- what the middleware asks
    def session_for_turn(self) -> Session | None:
        """The session a turn taken now belongs to (None: outside any run, the turn is not recorded)."""
        context = maybe_current()
        if context is not None:
            return self._sessions.of(context)
        if len(self._active) == 1:  # a turn AG2 runs in a task of its own (a network's handler)
            return self._active[0]
        if self._active:
            logger.warning(
                "an AG2 turn outside any run context while %d runs are active: not recorded",
                len(self._active),
            )
        return None

    def checks_for(self, agent: str) -> list[HandoffCheck]:
        """The hand-off checks on ``agent``'s replies (all must accept a reply)."""
        return [c for c in self.handoffs if c.sender == agent]

    def gate_for(self, agent: str, occurrence: int) -> ReviewGate | None:
        """The review gate before ``agent``'s turn number ``occurrence``, if any."""
        return next((g for g in self.reviews if g.applies(agent, occurrence)), None)

    # --- running a conversation
    async def run(
        self,
        conversation: Callable[..., Awaitable[Any]],
        *args: Any,
        run_id: str | None = None,
        store: CheckpointStore | None = None,
        **kwargs: Any,
    ) -> Outcome:
        """Run ``conversation(*args, **kwargs)`` as an Omium run, or resume run ``run_id``.

        ``conversation`` is an async function that drives the agents (its arguments are recorded
        with the run, for resuming it later). A run paused at a review gate must be approved
        first (``omium review RUN --approve``).

        Raises:
            ConflictError: the run is paused awaiting review, or was rejected in review.
            Exception: whatever the conversation raised (the run is stored as failed); a turn
                that failed inside an AG2 network is raised here once the channel has stopped.
        """
        store = store or self.store or runs.default_store()
        run_id = run_id or self.run_id or uuid.uuid4().hex
        review.refuse_unreviewed(store, run_id)
        holder: list[Session] = []
        flow = self._workflow(conversation, self.name, holder)
        try:
            result = await runs.arun(flow, *args, run_id=run_id, store=store, **kwargs)
        except (HandoffRejected, ApprovalRequired) as error:
            stop = holder[0].stop if holder else None
            status = stops.settle(store, run_id, error, stop, {"turn": stop.turn} if stop else {})
            if status is None or stop is None:
                raise
            return self._outcome(run_id, status, holder, reason=stop.reason)
        return self._outcome(run_id, "completed", holder, result=result)

    def workflow(self, conversation: Callable[..., Awaitable[Any]], *, name: str | None = None) -> Any:
        """``conversation`` as an Omium ``@workflow``, registered under ``name`` (default: the team's
        name, else the function's), so that ``omium worker`` and :func:`omium.recovery.resume` can
        resume its runs — after ``omium review RUN --approve``, say.

        A stopped conversation raises at the run level, once it has wound down: a rejected
        hand-off raises :class:`~omium.errors.HandoffRejected` (a recovery policy's
        ``handoff_rejected`` trigger), a review gate :class:`~omium.errors.ApprovalRequired`.
        :meth:`run` turns those into an :class:`Outcome` and stores a gated run as paused.
        """
        return self._workflow(conversation, name or self.name, [])

    def _workflow(
        self, conversation: Callable[..., Awaitable[Any]], name: str | None, holder: list[Session]
    ) -> Any:
        async def body(*args: Any, **kwargs: Any) -> Any:
            session = self._bind(current())
            holder.append(session)
            try:
                result = await conversation(*args, **kwargs)
            except Exception as error:
                if session.stop is not None:  # the conversation broke because Omium stopped it
                    raise _stop_error(session.stop) from error
                raise
            finally:
                self._unbind(session)
            if session.stop is not None:
                raise _stop_error(session.stop)
            return result

        chosen = name or str(getattr(conversation, "__qualname__", "conversation"))
        body.__qualname__ = body.__name__ = chosen
        return runs.workflow(body, name=chosen)

    def _bind(self, context: RunContext) -> Session:
        session = self._sessions.of(context)
        session.otel_context = otel_context.get_current()  # the run's span, for turns in AG2's tasks
        self._active.append(session)
        return session

    def _unbind(self, session: Session) -> None:
        self._active.remove(session)

    @staticmethod
    def _outcome(
        run_id: str, status: str, holder: list[Session], *, result: Any = None, reason: str = ""
    ) -> Outcome:
        session = holder[0] if holder else None
        return Outcome(
            run_id=run_id,
            status=status,
            result=result,
            reason=reason,
            executed=session.executed if session else 0,
            replayed=session.replayed if session else 0,
            model_calls=session.model_calls if session else 0,
        )


def _stop_error(stop: Stop) -> BaseException:
    """What the run raises once a stopped conversation has wound down."""
    if stop.error is not None:
        return stop.error
    return ApprovalRequired(
        f"{stop.evidence.get('gate_name', 'review')}: awaiting approval before {stop.agent}'s turn "
        f"{stop.turn}",
        trigger=review.TRIGGER,
        check=str(stop.evidence.get("gate_name", "")),
        evidence=dict(stop.evidence),
    )


def _agents(targets: Any) -> list[Agent[Any]]:
    """Agents from an agent, an AG2 network client (``.agent``) or an iterable of either."""
    if isinstance(targets, Agent) or hasattr(targets, "agent"):
        targets = [targets]
    found: list[Agent[Any]] = []
    for target in targets:
        agent = target if isinstance(target, Agent) else getattr(target, "agent", None)
        if not isinstance(agent, Agent):
            raise TypeError(
                f"instrument() takes AG2 agents (or network clients), not {type(target).__name__}"
            )
        found.append(agent)
    names = [a.name for a in found]
    if len(set(names)) != len(names):
        raise ValueError(f"agent names must be unique within a team (turns are recorded by name): {names}")
    return found


# The middleware installed on each agent (AG2 has no way to remove one, so it is re-pointed instead).
_installed: weakref.WeakKeyDictionary[Agent[Any], OmiumMiddleware] = weakref.WeakKeyDictionary()


def instrument(
    agents: Any,
    *,
    run_id: str | None = None,
    store: CheckpointStore | None = None,
    name: str | None = None,
    handoffs: Iterable[HandoffCheck] = (),
    reviews: Iterable[ReviewGate] = (),
    capture_content: bool | None = None,
) -> Team:
    """Put AG2 agents under Omium: their turns are traced, checkpointed, validated and resumable.

    Installs :class:`~omium.adapters.autogen.middleware.OmiumMiddleware` as each agent's
    outermost middleware (once: instrumenting an agent again moves it to the new team) and
    returns the :class:`Team` whose :meth:`~Team.run` runs their conversation durably.

    Args:
        agents: an AG2 ``Agent``, an AG2 network ``AgentClient``, or an iterable of them.
        run_id: the default run id of :meth:`Team.run` (default: a new one per run).
        store: where runs are stored (default: the store ``omium.init`` chose).
        name: the workflow name runs are recorded under (default: the conversation function's).
        handoffs: checks on what agents hand to the next agent.
        reviews: review gates that pause the conversation for a person's approval.
        capture_content: whether spans carry message and tool content (default: Omium's setting).

    Example::

        team = instrument([planner, coder, reviewer], handoffs=[HandoffCheck("planner", schema=Plan)])
        outcome = await team.run(conversation, "write fib", run_id="fib-1")
    """
    found = _agents(agents)
    team = Team(
        found,
        run_id=run_id,
        store=store,
        name=name,
        handoffs=handoffs,
        reviews=reviews,
        capture_content=capture_content,
    )
    known = {a.name for a in found}
    for check in team.handoffs:
        if check.sender not in known:
            raise ValueError(f"hand-off check on {check.sender!r}, which is not one of the team's agents")
    for gate in team.reviews:
        if gate.before not in known:
            raise ValueError(f"review gate before {gate.before!r}, which is not one of the team's agents")
    for agent in found:
        installed = _installed.get(agent)
        if installed is not None:  # instrumented before: the agent now belongs to this team
            installed.team = team
            continue
        installed = _installed[agent] = OmiumMiddleware(team, agent.name)
        agent.insert_middleware(installed)
    return team


__all__ = ["Outcome", "Team", "instrument"]
