"""Stopping a conversation cleanly: stop messages and the termination condition that acts on them.

When Omium must stop a conversation — a hand-off was rejected, a review gate is waiting for a
person, a turn failed inside an AG2 network — it does not raise inside AG2's middleware. An
exception there is caught by the network's turn handler, which posts no reply: the message is
silently dropped and the channel waits for a speaker that never speaks (the hang the intervention
handler of ``autogen-agentchat`` is known for). Instead the turn ends with a *stop message*, and:

* in an AG2 network workflow, a transition condition (:class:`OmiumStopped`, added to the graph by
  :func:`with_stop` or :func:`stop_transition`) sees it and terminates the channel with the reason
  as its close reason;
* in sequential chats, every later turn of the run answers the same stop message without calling
  the model, and :func:`is_stop` tells code that wants to break out early (AG2's analogue of
  ``is_termination_msg``).

:meth:`omium.adapters.autogen.Team.run` then records the outcome on the Omium run.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, ClassVar

from ag2.events import ModelMessage, ModelResponse
from ag2.network.envelope import EV_PACKET, EV_TEXT, Envelope
from ag2.network.transitions import (
    Transition,
    TransitionDecision,
    TransitionGraph,
    register_condition,
    register_target,
)

if TYPE_CHECKING:
    from ag2.network.adapters.workflow import WorkflowState

STOP_PREFIX = "[omium:stop]"
# A stop transition is checked before every rule of the graph.
STOP_PRIORITY = -1_000_000


def stop_message(kind: str, reason: str) -> str:
    """The text of a stop message: ``[omium:stop] KIND: REASON``."""
    return f"{STOP_PREFIX} {kind}: {reason}"


def stop_response(kind: str, reason: str) -> ModelResponse:
    """A reply that ends the turn with a stop message (no model call)."""
    return ModelResponse(ModelMessage(stop_message(kind, reason)), finish_reason="omium_stop")


def stop_reason(message: Any) -> str | None:
    """The reason of a stop message (``KIND: REASON``), or None if ``message`` is not one.

    ``message`` may be text, an AG2 reply (anything with ``body`` or ``content``) or a network
    envelope (its packet body or text).
    """
    text: Any = message
    if isinstance(message, Envelope):
        data = message.event_data or {}
        text = data.get("body") if message.event_type == EV_PACKET else data.get("text")
    elif not isinstance(message, str):
        text = getattr(message, "body", None)
        if text is None:
            text = getattr(message, "content", None)
    if isinstance(text, str) and text.startswith(STOP_PREFIX):
        return text[len(STOP_PREFIX) :].strip()
    return None


def is_stop(message: Any) -> bool:
    """Whether ``message`` is an Omium stop message (AG2's ``is_termination_msg``, for Omium stops)."""
    return stop_reason(message) is not None


@dataclass(slots=True)
class OmiumStopped:
    """A transition condition: the envelope just accepted is an Omium stop message."""

    name: ClassVar[str] = "omium_stopped"

    def evaluate(self, state: WorkflowState, envelope: Envelope) -> bool:
        """True for a stop message (a packet or a text envelope)."""
        return envelope.event_type in (EV_PACKET, EV_TEXT) and stop_reason(envelope) is not None


@dataclass(slots=True)
class OmiumStopTarget:
    """A transition target: end the channel with the stop message's reason as the close reason."""

    name: ClassVar[str] = "omium_stop"

    def resolve(self, state: WorkflowState, envelope: Envelope) -> TransitionDecision:
        """Terminate (no next speaker)."""
        return TransitionDecision(
            next_speaker=None, close_reason=f"omium: {stop_reason(envelope) or 'stopped'}"
        )


def stop_transition() -> Transition:
    """The transition that terminates a workflow channel on an Omium stop message.

    Registers its condition and target with AG2's transition registry (graphs are stored as data
    and rebuilt by name), so call it — or :func:`with_stop` — in every process that runs the graph.
    """
    register_condition(OmiumStopped)
    register_target(OmiumStopTarget)
    return Transition(when=OmiumStopped(), then=OmiumStopTarget(), priority=STOP_PRIORITY)


def with_stop(graph: TransitionGraph) -> TransitionGraph:
    """``graph`` with :func:`stop_transition` checked before its own rules.

    Example:
        >>> from ag2.network import TransitionGraph
        >>> graph = with_stop(TransitionGraph.sequence(["user", "planner", "coder", "reviewer"]))
        >>> graph.transitions[0].then.name
        'omium_stop'
    """
    rules = [t for t in graph.transitions if not isinstance(t.when, OmiumStopped)]
    return replace(graph, transitions=[stop_transition(), *rules])


__all__ = [
    "STOP_PREFIX",
    "OmiumStopTarget",
    "OmiumStopped",
    "is_stop",
    "stop_message",
    "stop_reason",
    "stop_response",
    "stop_transition",
    "with_stop",
]
