"""What the adapters' records of framework work (an AG2 turn, a CrewAI task) share: the
identity of the recorded call that stands for it (see :mod:`omium.sdk.recording`)."""

from __future__ import annotations

from omium.sdk.recording import Call


class OnCall:
    """A piece of framework work recorded as ``self.call``; its id, slot and key are the call's."""

    call: Call

    @property
    def call_id(self) -> str:
        """Its call id in the run."""
        return self.call.call_id

    @property
    def position(self) -> int:
        """The slot it is stored under."""
        return self.call.position

    @property
    def key(self) -> str:
        """Its idempotency key."""
        return self.call.key

    @property
    def replayed(self) -> bool:
        """Whether the recording answers it (it does not run again)."""
        return self.call.replayed


__all__ = ["OnCall"]
