"""The conformance suite every checkpoint-store backend runs (subclass and provide ``store``)."""

from __future__ import annotations

import threading
import time

import pytest

from omium.errors import ConflictError, FencedOut, NotFoundError, RunBusy
from omium.sdk.serde import digest, dumps
from omium.sdk.store import (
    CheckpointRecord,
    CheckpointStore,
    HandoffRecord,
    RunLease,
    RunRecord,
    StepRecord,
    now_us,
)


class StoreConformance:
    """Behaviour a :class:`CheckpointStore` must have, whatever keeps its data."""

    def test_blobs_are_content_addressed(self, store: CheckpointStore) -> None:
        value = dumps({"history": ["hello"] * 10})
        key = store.put_blob(value)
        assert key == digest(value)
        assert store.put_blob(value) == key
        assert store.get_blob(key) == value
        raw = bytes(range(256))
        assert store.get_blob(store.put_blob(raw)) == raw

    def test_unknown_blob(self, store: CheckpointStore) -> None:
        with pytest.raises(NotFoundError):
            store.get_blob("0" * 64)

    def test_many_blobs_are_read_at_once(self, store: CheckpointStore) -> None:
        values = [dumps({"message": i}) for i in range(50)] + [bytes(range(256))]
        keys = [store.put_blob(v) for v in values]
        assert store.get_blobs([*keys, keys[0]]) == dict(zip(keys, values, strict=True))
        assert store.get_blobs([]) == {}
        with pytest.raises(NotFoundError):
            store.get_blobs([keys[0], "0" * 64])

    def test_runs_are_created_once(self, store: CheckpointStore) -> None:
        run = store.create_run(RunRecord("r1", "onboarding", attributes={"customer": "jane"}))
        loaded = store.get_run("r1")
        assert (loaded.workflow, loaded.status, loaded.version) == ("onboarding", "running", 1)
        assert loaded.attributes == {"customer": "jane"}
        assert loaded.started_at == run.started_at
        with pytest.raises(ConflictError):
            store.create_run(RunRecord("r1", "other"))
        with pytest.raises(NotFoundError):
            store.get_run("nope")

    def test_status_is_compare_and_set(self, store: CheckpointStore) -> None:
        store.create_run(RunRecord("r2", "wf"))
        paused = store.update_run("r2", 1, status="paused", error="APR 0.0% outside 2.5%-8.5%")
        assert (paused.status, paused.version) == ("paused", 2)
        with pytest.raises(ConflictError):
            store.update_run("r2", 1, status="completed")
        assert store.get_run("r2").status == "paused"
        assert store.get_run("r2").error.startswith("APR")
        with pytest.raises(NotFoundError):
            store.update_run("nope", 1, status="paused")

    def test_concurrent_writers_never_lose_an_update(self, store: CheckpointStore) -> None:
        store.create_run(RunRecord("race", "wf"))
        wins: list[int] = []
        lock = threading.Lock()

        def writer(n: int) -> None:
            for _ in range(5):
                while True:
                    current = store.get_run("race")
                    try:
                        store.update_run("race", current.version, status="running", error=f"w{n}")
                    except ConflictError:
                        continue
                    with lock:
                        wins.append(n)
                    break

        threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert len(wins) == 20
        assert store.get_run("race").version == 21

    def test_list_runs(self, store: CheckpointStore) -> None:
        for i in range(3):
            store.create_run(RunRecord(f"l{i}", "wf", started_at=1_000 + i))
        store.update_run("l1", 1, status="failed")
        assert [r.run_id for r in store.list_runs()] == ["l2", "l1", "l0"]
        assert [r.run_id for r in store.list_runs(status="failed")] == ["l1"]
        assert len(store.list_runs(limit=2)) == 2

    def test_steps_keep_the_latest_attempt(self, store: CheckpointStore) -> None:
        store.record_step(StepRecord("s", 0, "tool", "lookup", "completed", output_hash="a"))
        store.record_step(StepRecord("s", 1, "llm", "chat", "failed", error="timeout", attempt=1))
        store.record_step(StepRecord("s", 1, "llm", "chat", "completed", output_hash="b", attempt=2))
        store.record_step(StepRecord("s", 0, "tool", "lookup", "completed", output_hash="a"))  # again
        steps = store.steps("s")
        assert [(s.position, s.status, s.attempt, s.output_hash) for s in steps] == [
            (0, "completed", 1, "a"),
            (1, "completed", 2, "b"),
        ]
        assert store.steps("other") == []

    def test_checkpoints(self, store: CheckpointStore) -> None:
        store.create_run(RunRecord("c", "wf"))
        for seq, name in enumerate(["kyc_done", "score_done", "kyc_done"]):
            store.add_checkpoint(CheckpointRecord("c", seq, name, step_index=seq * 2, state_hash=f"h{seq}"))
        assert [c.name for c in store.checkpoints("c")] == ["kyc_done", "score_done", "kyc_done"]
        assert store.checkpoint("c", "kyc_done").seq == 2
        assert store.checkpoint("c", "score_done").checkpoint_id == "c:1"
        with pytest.raises(NotFoundError, match="no checkpoint"):
            store.checkpoint("c", "terms_done")
        with pytest.raises(NotFoundError, match="no run"):
            store.checkpoint("ghost", "kyc_done")

    def test_update_merges_attributes(self, store: CheckpointStore) -> None:
        store.create_run(RunRecord("a", "wf", attributes={"k": "1"}))
        store.update_run("a", 1, status="completed", attributes={"result_hash": "x"})
        assert store.get_run("a").attributes == {"k": "1", "result_hash": "x"}

    def test_handoffs_are_appended_once_and_versioned(self, store: CheckpointStore) -> None:
        from omium.sdk.store import HandoffRecord

        message = HandoffRecord(
            "h", "kyc->score", 0, "kyc", "score", payload_hash="p0", schema_name="KYCData"
        )
        assert store.append_handoff(message)
        assert not store.append_handoff(message)  # a duplicate delivery changes nothing
        store.append_handoff(HandoffRecord("h", "kyc->score", 1, "kyc", "score", payload_hash="p1"))
        store.set_handoff_status("h", "kyc->score", 0, "rejected", reason="customer_name missing")
        messages = store.handoffs("h", "kyc->score")
        assert [(m.seq, m.status, m.version) for m in messages] == [(0, "rejected", 2), (1, "sent", 1)]
        assert messages[0].reason == "customer_name missing"
        assert store.handoffs("h", "other") == []
        with pytest.raises(NotFoundError):
            store.set_handoff_status("h", "kyc->score", 9, "acked")

    def test_handoffs_keep_their_dependencies_and_producer_span(self, store: CheckpointStore) -> None:
        from omium.sdk.store import HandoffRecord

        message = HandoffRecord(
            "d", "kyc->score", 0, "kyc", "score", payload_hash="p0",
            depends_on={"customers/c-1": 3, "orders/o-9": 1}, trace_id="ab" * 16, span_id="cd" * 8,
        )  # fmt: skip
        store.append_handoff(message)
        store.set_handoff_status("d", "kyc->score", 0, "acked", receive_key="d:4")
        (kept,) = store.handoffs("d", "kyc->score")
        assert kept.depends_on == {"customers/c-1": 3, "orders/o-9": 1}
        assert (kept.trace_id, kept.span_id, kept.receive_key) == ("ab" * 16, "cd" * 8, "d:4")

    def test_shared_state_is_compare_and_set(self, store: CheckpointStore) -> None:
        assert store.read_state("orders", "o-17") is None
        first = store.write_state("orders", "o-17", 0, "h1", writer="kyc", run_id="r")
        assert (first.version, first.value_hash) == (1, "h1")
        with pytest.raises(ConflictError, match="version 1, not 0"):
            store.write_state("orders", "o-17", 0, "h-late")
        store.write_state("orders", "o-17", 1, "h2", writer="terms")
        latest = store.read_state("orders", "o-17")
        assert latest is not None and (latest.version, latest.value_hash, latest.writer) == (2, "h2", "terms")

    def test_concurrent_state_writers_never_lose_an_update(self, store: CheckpointStore) -> None:
        written: list[str] = []
        lock = threading.Lock()

        def writer(n: int) -> None:
            for i in range(5):
                while True:
                    current = store.read_state("counters", "c")
                    try:
                        store.write_state("counters", "c", current.version if current else 0, f"{n}-{i}")
                    except ConflictError:
                        continue
                    with lock:
                        written.append(f"{n}-{i}")
                    break

        threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        latest = store.read_state("counters", "c")
        assert latest is not None and latest.version == 20 == len(written)

    def test_events_are_an_append_only_audit_trail(self, store: CheckpointStore) -> None:
        from omium.sdk.store import EventRecord

        store.record_event(
            EventRecord("e1", "ev", "detected", reason="apr 0%", attributes={"trigger": "x"}, ts=1)
        )
        store.record_event(EventRecord("e2", "ev", "rolled_back", actor="omium", before="b", after="a", ts=2))
        store.record_event(
            EventRecord("e1", "ev", "detected", reason="apr 0%", attributes={"trigger": "x"}, ts=1)
        )
        store.record_event(EventRecord("e3", "other", "detected", ts=3))
        events = store.events("ev")
        assert [(e.event_id, e.kind) for e in events] == [("e1", "detected"), ("e2", "rolled_back")]
        assert events[0].attributes == {"trigger": "x"} and (events[1].before, events[1].after) == ("b", "a")
        assert [e.event_id for e in store.events()] == ["e1", "e2", "e3"]

    def test_commands_are_leased_one_run_at_a_time(self, store: CheckpointStore) -> None:
        import time

        from omium.sdk.store import CommandRecord

        store.enqueue_command(CommandRecord("c1", "run-a", "resume", created_at=1))
        store.enqueue_command(CommandRecord("c2", "run-a", "retry", created_at=2))
        store.enqueue_command(CommandRecord("c3", "run-b", "start", created_at=3))
        assert store.enqueue_command(CommandRecord("c1", "run-a", "other")).kind == "resume"  # once
        first = store.claim_command("w1", 30)
        assert first is not None and (first.command_id, first.worker, first.attempts) == ("c1", "w1", 1)
        second = store.claim_command("w2", 30)  # run-a is held by w1: c2 waits
        assert second is not None and second.command_id == "c3"
        assert store.claim_command("w2", 30) is None
        with pytest.raises(ConflictError):
            store.finish_command("c1", "w2", "done")
        store.renew_command("c1", "w1", 30)
        store.finish_command("c1", "w1", "done", result="ok")
        third = store.claim_command("w2", 0.05)
        assert third is not None and third.command_id == "c2"
        time.sleep(0.1)  # w2 "dies": its lease runs out and w3 takes the command over
        taken = store.claim_command("w3", 30)
        assert taken is not None and (taken.command_id, taken.worker, taken.attempts) == ("c2", "w3", 2)
        with pytest.raises(ConflictError):
            store.renew_command("c2", "w2", 30)
        assert [c.status for c in store.commands("run-a")] == ["done", "claimed"]
        assert [c.command_id for c in store.commands(status="claimed")] == ["c2", "c3"]
        assert store.commands("run-a", "done")[0].result == "ok"

    # --- run leases and fencing tokens
    def test_a_lease_needs_a_known_run(self, store: CheckpointStore) -> None:
        with pytest.raises(NotFoundError):
            store.acquire_lease("ghost", "host-a:1", 30)
        assert store.lease("ghost") is None

    def test_one_holder_at_a_time(self, store: CheckpointStore) -> None:
        store.create_run(RunRecord("L1", "wf"))
        assert store.lease("L1") is None
        before = now_us()
        first = store.acquire_lease("L1", "host-a:1", 30)
        assert isinstance(first, RunLease)
        assert (first.run_id, first.holder, first.fence) == ("L1", "host-a:1", 1)
        assert before <= first.acquired_at and first.lease_until - first.acquired_at == 30_000_000
        assert store.lease("L1") == first
        with pytest.raises(RunBusy) as busy:
            store.acquire_lease("L1", "host-b:2", 30)
        assert (busy.value.holder, busy.value.lease_until) == ("host-a:1", first.lease_until)
        assert isinstance(busy.value, ConflictError)
        assert "host-a:1" in str(busy.value) and "s from now" in str(busy.value)
        assert store.lease("L1") == first  # the refused attempt changed nothing
        again = store.acquire_lease("L1", "host-a:1", 30)  # the holder itself: a new fence
        assert (again.holder, again.fence) == ("host-a:1", 2)

    def test_an_expired_lease_is_taken_over_with_the_next_fence(self, store: CheckpointStore) -> None:
        store.create_run(RunRecord("L2", "wf"))
        old = store.acquire_lease("L2", "host-a:1", 0.05)
        time.sleep(0.1)  # host-a stalls past its lease
        taken = store.acquire_lease("L2", "host-b:2", 30)
        assert (taken.holder, taken.fence) == ("host-b:2", old.fence + 1)
        with pytest.raises(FencedOut, match=r"fence 1 was superseded by fence 2 \(holder host-b:2\)"):
            store.renew_lease("L2", "host-a:1", old.fence, 30)
        with pytest.raises(FencedOut):  # the right fence, the wrong holder
            store.renew_lease("L2", "host-a:1", taken.fence, 30)
        assert store.lease("L2") == taken

    def test_renewal_extends_even_an_expired_lease_nobody_took(self, store: CheckpointStore) -> None:
        store.create_run(RunRecord("L3", "wf"))
        lease = store.acquire_lease("L3", "host-a:1", 0.05)
        time.sleep(0.1)
        renewed = store.renew_lease("L3", "host-a:1", lease.fence, 30)
        assert (renewed.holder, renewed.fence, renewed.acquired_at) == ("host-a:1", 1, lease.acquired_at)
        assert renewed.lease_until > lease.lease_until
        assert store.lease("L3") == renewed
        with pytest.raises(RunBusy):
            store.acquire_lease("L3", "host-b:2", 30)
        with pytest.raises(FencedOut):
            store.renew_lease("nope", "host-a:1", 1, 30)

    def test_a_released_lease_passes_on(self, store: CheckpointStore) -> None:
        store.create_run(RunRecord("L4", "wf"))
        lease = store.acquire_lease("L4", "host-a:1", 30)
        store.release_lease("L4", "host-a:1", lease.fence)
        released = store.lease("L4")
        assert released is not None and (released.fence, released.lease_until) == (1, 0)
        store.release_lease("L4", "host-a:1", lease.fence)  # again: nothing happens
        with pytest.raises(FencedOut):  # released is ended: it is not renewed back
            store.renew_lease("L4", "host-a:1", lease.fence, 30)
        successor = store.acquire_lease("L4", "host-b:2", 30)
        assert (successor.holder, successor.fence) == ("host-b:2", 2)
        store.release_lease("L4", "host-a:1", lease.fence)  # a stale release leaves the successor
        store.release_lease("L4", "host-c:3", successor.fence)  # so does someone else's
        assert store.lease("L4") == successor

    def test_a_superseded_fence_writes_nothing(self, store: CheckpointStore) -> None:
        store.create_run(RunRecord("F", "wf"))
        old = store.acquire_lease("F", "host-a:1", 0.05)
        assert store.append_handoff(HandoffRecord("F", "a->b", 0, "a", "b", "p0", fence=old.fence))
        time.sleep(0.1)
        new = store.acquire_lease("F", "host-b:2", 30)
        stale = old.fence
        refused = [
            lambda: store.record_step(StepRecord("F", 0, "tool", "t", "completed", fence=stale)),
            lambda: store.add_checkpoint(CheckpointRecord("F", 0, "cp", 0, "h0", fence=stale)),
            lambda: store.append_handoff(HandoffRecord("F", "a->b", 1, "a", "b", "p1", fence=stale)),
            lambda: store.set_handoff_status("F", "a->b", 0, "acked", fence=stale),
            lambda: store.write_state("fenced", "k", 0, "h", run_id="F", fence=stale),
            lambda: store.update_run("F", 1, status="completed", fence=stale),
        ]
        superseded = r"run 'F': fence 1 was superseded by fence 2 \(holder host-b:2\); this execution lost"
        for write in refused:
            with pytest.raises(FencedOut, match=superseded):
                write()
        assert store.steps("F") == [] and store.checkpoints("F") == []
        assert [(m.seq, m.status) for m in store.handoffs("F", "a->b")] == [(0, "sent")]
        assert store.read_state("fenced", "k") is None
        assert (store.get_run("F").status, store.get_run("F").version) == ("running", 1)
        with pytest.raises(FencedOut, match="never issued"):  # a fence from nowhere
            store.record_step(StepRecord("F", 0, "tool", "t", "completed", fence=new.fence + 5))
        with pytest.raises(FencedOut):  # a run never leased
            store.record_step(StepRecord("unleased", 0, "tool", "t", "completed", fence=1))
        assert store.steps("F") == [] and store.steps("unleased") == []

        # The current fence writes, and so does an unfenced writer (the CLI, a review).
        store.record_step(StepRecord("F", 0, "tool", "t", "completed", fence=new.fence))
        store.record_step(StepRecord("F", 1, "tool", "t", "completed"))
        store.add_checkpoint(CheckpointRecord("F", 0, "cp", 0, "h0", fence=new.fence))
        assert store.append_handoff(HandoffRecord("F", "a->b", 1, "a", "b", "p1", fence=new.fence))
        store.set_handoff_status("F", "a->b", 0, "acked", fence=new.fence)
        store.set_handoff_status("F", "a->b", 1, "rejected", reason="no")
        store.write_state("fenced", "k", 0, "h", run_id="F", fence=new.fence)
        store.write_state("fenced", "k", 1, "h2")
        paused = store.update_run("F", 1, status="paused", fence=new.fence)
        store.update_run("F", paused.version, status="running")
        assert [s.position for s in store.steps("F")] == [0, 1]
        assert [c.seq for c in store.checkpoints("F")] == [0]
        assert [m.status for m in store.handoffs("F", "a->b")] == ["acked", "rejected"]
        latest = store.read_state("fenced", "k")
        assert latest is not None and latest.version == 2
        assert store.get_run("F").version == 3

    def test_an_expired_fence_nobody_took_still_writes(self, store: CheckpointStore) -> None:
        store.create_run(RunRecord("E", "wf"))
        lease = store.acquire_lease("E", "host-a:1", 0.05)
        time.sleep(0.1)
        store.record_step(StepRecord("E", 0, "tool", "t", "completed", fence=lease.fence))
        store.release_lease("E", "host-a:1", lease.fence)
        store.record_step(StepRecord("E", 1, "tool", "t", "completed", fence=lease.fence))
        assert [s.position for s in store.steps("E")] == [0, 1]

    def test_call_identity_generation_and_fence_round_trip(self, store: CheckpointStore) -> None:
        store.create_run(RunRecord("rt", "wf"))
        fence = store.acquire_lease("rt", "host-a:1", 30).fence
        store.record_step(
            StepRecord("rt", 3, "llm", "chat", "completed", call_id="3.0.2", generation=2, fence=fence)
        )
        store.record_step(StepRecord("rt", 4, "tool", "t", "completed"))
        new, old = store.steps("rt")
        assert (new.call_id, new.generation, new.fence) == ("3.0.2", 2, fence)
        assert (old.call_id, old.generation, old.fence) == ("", 0, 0)
        store.add_checkpoint(
            CheckpointRecord("rt", 0, "cp", 3, "h0", call_id="3.0.2", generation=2, fence=fence)
        )
        store.add_checkpoint(CheckpointRecord("rt", 1, "cp", 4, "h1"))
        first, second = store.checkpoints("rt")
        assert (first.call_id, first.generation, first.fence) == ("3.0.2", 2, fence)
        assert (second.call_id, second.generation, second.fence) == ("", 0, 0)
        store.append_handoff(HandoffRecord("rt", "a->b", 0, "a", "b", "p0", fence=fence))
        store.append_handoff(HandoffRecord("rt", "a->b", 1, "a", "b", "p1"))
        assert [m.fence for m in store.handoffs("rt", "a->b")] == [fence, 0]
        acked = store.set_handoff_status("rt", "a->b", 1, "acked", fence=fence)
        assert acked.fence == fence and store.handoffs("rt", "a->b")[1].fence == fence

    def test_racing_executions_get_one_lease(self, store: CheckpointStore) -> None:
        store.create_run(RunRecord("race-lease", "wf"))
        start = threading.Barrier(8, timeout=30)
        won: list[RunLease] = []
        busy: list[RunBusy] = []
        failed: list[BaseException] = []

        def contender(n: int) -> None:
            start.wait()
            try:
                won.append(store.acquire_lease("race-lease", f"host-{n}:1", 30))
            except RunBusy as exc:
                busy.append(exc)
            except BaseException as exc:  # reported by the assertion below
                failed.append(exc)

        threads = [threading.Thread(target=contender, args=(n,)) for n in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert failed == [] and len(won) == 1 and len(busy) == 7
        (winner,) = won
        assert winner.fence == 1 and store.lease("race-lease") == winner
        assert {b.holder for b in busy} == {winner.holder}
        assert {b.lease_until for b in busy} == {winner.lease_until}
