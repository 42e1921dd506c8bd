"""``OmiumSaver``: a LangGraph checkpointer on any Omium :class:`~omium.sdk.store.CheckpointStore`.

How a LangGraph thread maps onto the store's records (nothing but the interface is used):

=====================  ===================================================================
LangGraph               Omium record
=====================  ===================================================================
thread ``thread_id``    a run ``RunRecord("langgraph:" + thread_id, workflow="langgraph",
                        status="completed", attributes={"thread_id": ...})``; all of the
                        thread's namespaces (subgraphs) are in it
checkpoint              ``CheckpointRecord``: ``checkpoint_id`` = LangGraph's id (uuid6),
                        ``parent_checkpoint_id`` = the config's, ``name`` = ``checkpoint_ns``,
                        ``agent`` = the namespace's node path, ``step_index`` = metadata
                        ``step`` (the input checkpoint's -1 as 0), ``metadata`` = LangGraph's
                        metadata as JSON (what ``list(filter=...)`` reads), ``state_hash`` =
                        the state blob, ``seq`` = the thread's record number
state blob              the checkpoint without its values (serde-typed) and a reference per
                        channel (see :mod:`._codec`: lists split into items and chunks, values
                        content-addressed), msgpack
pending writes          one ``StepRecord`` per ``put_writes`` call (a task's result):
                        ``kind="langgraph.writes"``, ``name`` = task path, ``idempotency_key``
                        = ``[ns, checkpoint_id, task_id]``, ``output_hash`` = blob of the
                        ``(channel, index, reference)`` rows, ``status`` ``failed`` with
                        ``error`` when the task wrote an error, ``position`` = record number
deletion                a tombstone ``CheckpointRecord`` (no state) that readers honour: see
                        :mod:`._thread`. Nothing is updated or removed.
=====================  ===================================================================

Each checkpoint's references are complete (an unchanged channel's reference is carried over
from the parent checkpoint, without serializing the value again), so any checkpoint is read
with one state blob and the blobs it references, and pruning ancestors never breaks one.

Reading a thread replays its records, tombstones included. A store of this process
alone (a ``MemoryStore``) is the one writer of its data, so by default a thread is read
from it once and then kept current by this process's writes; a shared store (the control
database, which other processes open too, or a server's) is read every time (see
:mod:`._shared`, which also numbers the records).

Ordering is LangGraph's: checkpoints by id (uuid6, increasing), ``list`` newest first; writes
in ``writes_sort_key`` order, a repeated ``(task_id, index)`` keeping the first write except
for the special channels (error, interrupt, ...), whose last write wins. A thread must have one
writer at a time (as LangGraph requires); separate threads are independent, also when written
concurrently. Async methods run the sync ones in a worker thread: stores block.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections import OrderedDict
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Any, cast

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import (
    WRITES_IDX_MAP,
    BaseCheckpointSaver,
    ChannelVersions,
    Checkpoint,
    CheckpointMetadata,
    CheckpointTuple,
    PendingWrite,
    SerializerProtocol,
    get_checkpoint_id,
    get_serializable_checkpoint_metadata,
    writes_sort_key,
)
from langgraph.checkpoint.serde.types import ERROR

from omium.adapters.langgraph._codec import Codec, State, pack_typed, unpack_typed
from omium.adapters.langgraph._shared import shared
from omium.adapters.langgraph._thread import (
    DELETE_THREAD,
    RUN_PREFIX,
    WORKFLOW,
    WRITES_KIND,
    Key,
    Thread,
    node_path,
    run_id_of,
    thread_run,
    write_key,
)
from omium.errors import ConflictError
from omium.sdk.store import CheckpointRecord, CheckpointStore, StepRecord

# Aliases: inside the class, ``list`` is the method.
Names = list[str]
Keys = list[Key]
TaskWrites = list[tuple[str, StepRecord]]
PendingWrites = list[PendingWrite]

ALL_RUNS = 1_000_000_000  # list_runs limit that means "all" (deleting by run id scans threads)
PARENTS_CACHED = 4096


@dataclass(frozen=True)
class _Parent:
    """What a put needs of the checkpoint it follows: its versions and references."""

    versions: ChannelVersions
    refs: dict[str, Any]


class OmiumSaver(BaseCheckpointSaver[int]):
    """A LangGraph checkpointer whose threads live in an Omium checkpoint store.

    Args:
        store: where the threads go (default: ``omium.init()``'s store — the control
            database, or the server's when one is configured).
        serde: LangGraph serializer for values (default: LangGraph's ``JsonPlusSerializer``).
        cache: keep each thread's records in memory once read, current with this process's
            writes (default: for a store of this process alone, a ``MemoryStore``, whose data
            only this process writes). Pass False when other writers reach the same store object, e.g. a
            server's request handlers in this process.

    Example:
        >>> from omium.adapters.langgraph import OmiumSaver          # doctest: +SKIP
        >>> graph = builder.compile(checkpointer=OmiumSaver())     # doctest: +SKIP
        >>> graph.invoke(inputs, {"configurable": {"thread_id": "t1"}})  # doctest: +SKIP
    """

    def __init__(
        self,
        store: CheckpointStore | None = None,
        *,
        serde: SerializerProtocol | None = None,
        cache: bool | None = None,
    ) -> None:
        super().__init__(serde=serde)
        if store is None:
            from omium.sdk.runs import default_store

            store = default_store()
        self.store = store
        if cache is None:
            from omium.sdk.sql.memory import MemoryStore

            cache = isinstance(store, MemoryStore)  # a database of its own: no other writer
        self._cache = cache
        self._shared = shared(store)
        self._codec = Codec(self.serde, self._shared.blobs)
        self._parents: OrderedDict[tuple[str, str, str], _Parent] = OrderedDict()
        self._parents_lock = threading.Lock()

    # --- reading
    def get_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        """The checkpoint ``config`` names (its ``checkpoint_id``, or the thread's latest)."""
        conf = config["configurable"]
        thread_id, ns = conf["thread_id"], conf.get("checkpoint_ns", "")
        thread = self._read(run_id_of(thread_id))
        checkpoint_id = get_checkpoint_id(config)
        record = thread.checkpoints.get((ns, checkpoint_id)) if checkpoint_id else thread.latest(ns)
        return None if record is None else self._tuple(thread_id, thread, record)

    def list(
        self,
        config: RunnableConfig | None,
        *,
        filter: dict[str, Any] | None = None,
        before: RunnableConfig | None = None,
        limit: int | None = None,
    ) -> Iterator[CheckpointTuple]:
        """Checkpoints newest first: of ``config``'s thread (and namespace, if it names one),
        or of every thread if ``config`` is None; metadata equal to ``filter``'s, ids before
        ``before``'s, at most ``limit``."""
        if config is None:
            threads = [(t, self._read(run_id_of(t))) for t in self._thread_ids()]
            ns_wanted, id_wanted = None, None
        else:
            conf = config["configurable"]
            threads = [(conf["thread_id"], self._read(run_id_of(conf["thread_id"])))]
            ns_wanted, id_wanted = conf.get("checkpoint_ns"), get_checkpoint_id(config)
        before_id = get_checkpoint_id(before) if before else None
        found = [
            (cid, thread_id, thread, record)
            for thread_id, thread in threads
            for (ns, cid), record in thread.checkpoints.items()
            if (ns_wanted is None or ns == ns_wanted)
            and (not id_wanted or cid == id_wanted)
            and (not before_id or cid < before_id)
        ]
        found.sort(key=lambda f: f[0], reverse=True)
        left = limit
        for _, thread_id, thread, record in found:
            if filter:
                metadata = json.loads(record.metadata)
                if not all(metadata.get(k) == v for k, v in filter.items()):
                    continue
            if left is not None:
                if left <= 0:
                    return
                left -= 1
            yield self._tuple(thread_id, thread, record)

    def _read(self, run_id: str) -> Thread:
        thread = self._shared.threads.read(run_id, self._cache)
        self._shared.sequences.advance(run_id, thread.last_number)
        return thread

    def _add_checkpoint(self, record: CheckpointRecord) -> None:
        self.store.add_checkpoint(record)
        self._shared.threads.wrote(record.run_id, record)

    def _record_step(self, step: StepRecord) -> None:
        self.store.record_step(step)
        self._shared.threads.wrote(step.run_id, step)

    def _thread_ids(self) -> Names:
        return [
            run.attributes.get("thread_id", run.run_id.removeprefix(RUN_PREFIX))
            for run in self.store.list_runs(None, ALL_RUNS)
            if run.workflow == WORKFLOW and run.run_id.startswith(RUN_PREFIX)
        ]

    def _tuple(self, thread_id: Any, thread: Thread, record: CheckpointRecord) -> CheckpointTuple:
        ns = record.name
        state = State.unpack(self._shared.blobs.get(bytes.fromhex(record.state_hash)))
        header = self.serde.loads_typed(unpack_typed(state.header))
        values = dict(zip(state.refs, self._codec.decode(state.refs.values()), strict=True))
        checkpoint = cast(Checkpoint, {**header, "channel_values": values})
        versions = header["channel_versions"]
        self._remember(thread.run_id, ns, record.checkpoint_id, _Parent(versions, state.refs))
        metadata = (
            self.serde.loads_typed(unpack_typed(state.metadata))
            if state.metadata is not None
            else json.loads(record.metadata)
        )
        parent = record.parent_checkpoint_id
        return CheckpointTuple(
            config=_config(thread_id, ns, record.checkpoint_id),
            checkpoint=checkpoint,
            metadata=metadata,
            parent_config=_config(thread_id, ns, parent) if parent else None,
            pending_writes=self._pending_writes(thread.writes((ns, record.checkpoint_id))),
        )

    def _pending_writes(self, records: TaskWrites) -> PendingWrites:
        if not records:
            return []
        decoded = self._codec.decode_writes(bytes.fromhex(step.output_hash) for _, step in records)
        kept: dict[tuple[str, int], tuple[str, str, str, Any]] = {}  # (task, index) -> write
        for task_id, step in records:  # in the order they were written
            for channel, index, value in decoded[bytes.fromhex(step.output_hash)]:
                if index >= 0 and (task_id, index) in kept:
                    continue  # a task's regular write is stored once; special ones are replaced
                kept[(task_id, index)] = (step.name, task_id, channel, value)
        order = sorted(kept, key=lambda k: writes_sort_key(kept[k][0], k[0], k[1]))
        return [(kept[k][1], kept[k][2], kept[k][3]) for k in order]

    # --- writing
    def put(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        """Store a checkpoint: the values of ``new_versions``' channels, references for the rest."""
        conf = config["configurable"]
        thread_id, ns, parent_id = conf["thread_id"], conf.get("checkpoint_ns", ""), conf.get("checkpoint_id")
        run_id = self._ensure_thread(thread_id)
        parent = self._parent(run_id, ns, parent_id) if parent_id else None
        values = checkpoint["channel_values"]
        refs: dict[str, Any] = {}
        for channel, version in checkpoint["channel_versions"].items():
            if channel in new_versions:
                ref = self._codec.encode(values[channel]) if channel in values else None
            elif parent is not None and parent.versions.get(channel) == version:
                ref = parent.refs.get(channel)  # unchanged: no need to serialize it again
            else:
                ref = self._codec.encode(values[channel]) if channel in values else None
            if ref is not None:
                refs[channel] = ref
        meta = get_serializable_checkpoint_metadata(config, metadata)
        meta_json, lossy = _metadata_json(meta)
        header = {k: v for k, v in checkpoint.items() if k != "channel_values"}
        exact = pack_typed(self.serde.dumps_typed(meta)) if lossy else None
        state = State(pack_typed(self.serde.dumps_typed(header)), refs, exact)
        state_hash = self._shared.blobs.put(state.pack()).hex()
        step = meta.get("step")
        self._add_checkpoint(
            CheckpointRecord(
                run_id=run_id,
                seq=self._shared.sequences.take(run_id),
                name=ns,
                step_index=max(step, 0) if isinstance(step, int) else 0,
                state_hash=state_hash,
                agent=node_path(ns),
                checkpoint_id=checkpoint["id"],
                parent_checkpoint_id=parent_id or "",
                metadata=meta_json,
            )
        )
        self._remember(run_id, ns, checkpoint["id"], _Parent(checkpoint["channel_versions"], refs))
        return _config(thread_id, ns, checkpoint["id"])

    def put_writes(
        self,
        config: RunnableConfig,
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str = "",
    ) -> None:
        """Store a task's writes against the checkpoint ``config`` names."""
        conf = config["configurable"]
        thread_id, ns, checkpoint_id = conf["thread_id"], conf.get("checkpoint_ns", ""), conf["checkpoint_id"]
        run_id = self._ensure_thread(thread_id)
        rows = [(channel, WRITES_IDX_MAP.get(channel, i), value) for i, (channel, value) in enumerate(writes)]
        error = next((_describe(value) for channel, value in writes if channel == ERROR), "")
        self._record_step(
            StepRecord(
                run_id=run_id,
                position=self._shared.sequences.take(run_id),
                kind=WRITES_KIND,
                name=task_path,
                status="failed" if error else "completed",
                agent=node_path(ns),
                output_hash=self._codec.encode_writes(rows).hex(),
                error=error,
                idempotency_key=write_key(ns, checkpoint_id, task_id),
            )
        )

    def get_next_version(self, current: int | None, channel: None) -> int:
        """Channel versions are integers from 1 (a fork cannot clash: references are per checkpoint)."""
        return 1 if current is None else int(current) + 1

    def _ensure_thread(self, thread_id: Any) -> str:
        """The thread's run, made on its first write; its numbering, set up on first use here."""
        run_id = run_id_of(thread_id)
        sequences = self._shared.sequences
        if run_id not in self._shared.runs:
            try:
                self.store.create_run(thread_run(thread_id))
                made = True
            except ConflictError:
                made = False  # a thread written before (by this process or another)
            self._shared.runs.add(run_id)
            if not sequences.known(run_id):
                if made:
                    sequences.advance(run_id, 0)
                else:
                    self._read(run_id)  # number past its records
        return run_id

    def _parent(self, run_id: str, ns: str, checkpoint_id: str) -> _Parent | None:
        with self._parents_lock:
            found = self._parents.get((run_id, ns, checkpoint_id))
        if found is not None:
            return found
        record = self._read(run_id).checkpoints.get((ns, checkpoint_id))
        if record is None:
            return None
        state = State.unpack(self._shared.blobs.get(bytes.fromhex(record.state_hash)))
        parent = _Parent(self.serde.loads_typed(unpack_typed(state.header))["channel_versions"], state.refs)
        self._remember(run_id, ns, checkpoint_id, parent)
        return parent

    def _remember(self, run_id: str, ns: str, checkpoint_id: str, parent: _Parent) -> None:
        key = (run_id, ns, checkpoint_id)
        with self._parents_lock:
            self._parents[key] = parent
            self._parents.move_to_end(key)
            while len(self._parents) > PARENTS_CACHED:
                self._parents.popitem(last=False)

    # --- deleting (tombstones) and copying
    def delete_thread(self, thread_id: str) -> None:
        """Delete the thread's checkpoints and writes, in every namespace."""
        run_id = run_id_of(thread_id)
        if self._read(run_id).checkpoints:
            self._tombstone(run_id, DELETE_THREAD)

    def delete_for_runs(self, run_ids: Sequence[str]) -> None:
        """Delete the checkpoints (and their writes) of LangGraph runs ``run_ids``, in any thread."""
        doomed_runs = set(run_ids)
        if not doomed_runs:
            return
        for thread_id in self._thread_ids():
            thread = self._read(run_id_of(thread_id))
            doomed = [
                key
                for key, record in thread.checkpoints.items()
                if json.loads(record.metadata).get("run_id") in doomed_runs
            ]
            if doomed:
                self._tombstone(thread.run_id, doomed)

    def prune(self, thread_ids: Sequence[str], *, strategy: str = "keep_latest") -> None:
        """Keep each namespace's latest checkpoint (``keep_latest``) or nothing (``delete``)."""
        if strategy not in ("keep_latest", "delete"):
            raise ValueError(f"unknown prune strategy {strategy!r}: 'keep_latest' or 'delete'")
        for thread_id in thread_ids:
            thread = self._read(run_id_of(thread_id))
            if not thread.checkpoints:
                continue
            if strategy == "delete":
                self._tombstone(thread.run_id, DELETE_THREAD)
                continue
            latest = {ns: thread.latest(ns) for ns in thread.namespaces()}
            doomed = [key for key, record in thread.checkpoints.items() if record is not latest[key[0]]]
            if doomed:
                self._tombstone(thread.run_id, doomed)

    def copy_thread(self, source_thread_id: str, target_thread_id: str) -> None:
        """Append the source thread's live checkpoints and writes to the target thread (values
        are shared, not copied: records point at the same blobs)."""
        source = self._read(run_id_of(source_thread_id))
        if not source.checkpoints:
            return
        target = self._ensure_thread(target_thread_id)
        take = self._shared.sequences.take
        for record in sorted(source.checkpoints.values(), key=lambda r: r.seq):
            self._add_checkpoint(replace(record, run_id=target, seq=take(target)))
        steps = (step for key in source.checkpoints for _, step in source.writes(key))
        for step in sorted(steps, key=lambda s: s.position):
            self._record_step(replace(step, run_id=target, position=take(target)))

    def _tombstone(self, run_id: str, deleted: str | Keys) -> None:
        self._add_checkpoint(
            CheckpointRecord(
                run_id=run_id,
                seq=self._shared.sequences.take(run_id),
                name="",
                step_index=0,
                state_hash="",
                metadata=json.dumps({"delete": deleted}, separators=(",", ":")),
            )
        )
        with self._parents_lock:
            for key in [k for k in self._parents if k[0] == run_id]:
                del self._parents[key]

    # --- async twins: the store blocks, so they run in a worker thread
    async def aget_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        """Async :meth:`get_tuple`."""
        return await asyncio.to_thread(self.get_tuple, config)

    async def alist(
        self,
        config: RunnableConfig | None,
        *,
        filter: dict[str, Any] | None = None,
        before: RunnableConfig | None = None,
        limit: int | None = None,
    ) -> AsyncIterator[CheckpointTuple]:
        """Async :meth:`list` (each checkpoint is read when it is asked for)."""
        found = self.list(config, filter=filter, before=before, limit=limit)
        done = object()
        while (item := await asyncio.to_thread(next, found, done)) is not done:
            yield item  # type: ignore[misc]

    async def aput(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        """Async :meth:`put`."""
        return await asyncio.to_thread(self.put, config, checkpoint, metadata, new_versions)

    async def aput_writes(
        self,
        config: RunnableConfig,
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str = "",
    ) -> None:
        """Async :meth:`put_writes`."""
        await asyncio.to_thread(self.put_writes, config, writes, task_id, task_path)

    async def adelete_thread(self, thread_id: str) -> None:
        """Async :meth:`delete_thread`."""
        await asyncio.to_thread(self.delete_thread, thread_id)

    async def adelete_for_runs(self, run_ids: Sequence[str]) -> None:
        """Async :meth:`delete_for_runs`."""
        await asyncio.to_thread(self.delete_for_runs, run_ids)

    async def acopy_thread(self, source_thread_id: str, target_thread_id: str) -> None:
        """Async :meth:`copy_thread`."""
        await asyncio.to_thread(self.copy_thread, source_thread_id, target_thread_id)

    async def aprune(self, thread_ids: Sequence[str], *, strategy: str = "keep_latest") -> None:
        """Async :meth:`prune`."""
        await asyncio.to_thread(self.prune, thread_ids, strategy=strategy)


def _config(thread_id: Any, checkpoint_ns: str, checkpoint_id: str) -> RunnableConfig:
    return {
        "configurable": {
            "thread_id": thread_id,
            "checkpoint_ns": checkpoint_ns,
            "checkpoint_id": checkpoint_id,
        }
    }


def _metadata_json(metadata: Any) -> tuple[str, bool]:
    """Metadata as JSON for the record, and whether JSON loses something (then the state blob
    keeps the exact metadata too)."""
    try:
        text = json.dumps(metadata, separators=(",", ":"), ensure_ascii=False)
    except (TypeError, ValueError):
        return json.dumps(metadata, separators=(",", ":"), ensure_ascii=False, default=repr), True
    return text, json.loads(text) != metadata


def _describe(error: Any) -> str:
    text = f"{type(error).__name__}: {error}" if isinstance(error, BaseException) else str(error)
    return text[:1000]
