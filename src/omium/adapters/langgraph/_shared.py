"""What every saver on one store shares in this process: blob cache, thread views, sequences.

Blobs are content-addressed, so a cache of them is never stale: the bytes under a digest never
change and are never deleted (deletion hides records, it does not remove values). The cache
remembers which digests this process has stored (so ``put_blob`` is called once per value) and
keeps recently used bytes (so reading back a history just written costs no store round trip).

Thread views (:class:`~omium.adapters.langgraph._thread.Thread`) can be cached: loaded once
(writes made while it loads are applied to it too), kept current by the savers' own writes, and
dropped when too many threads are cached. That is right when this process is the one writer of
the store's data, as it is for an in-process store (a ``MemoryStore``; not the control
database, which other processes open too); a saver decides (see ``OmiumSaver``'s ``cache``).

A thread's records are numbered by one sequence (checkpoint ``seq`` and write ``position``
alike). It starts past every number the store already holds for the thread, and every read of
the thread moves it past what the read saw, so a thread written by one process at a time (what
LangGraph requires) never reuses a number.
"""

from __future__ import annotations

import hashlib
import threading
import weakref
from collections import OrderedDict
from collections.abc import Iterable

from omium.adapters.langgraph._thread import Thread, load
from omium.sdk.store import CheckpointRecord, CheckpointStore, StepRecord

DEFAULT_CACHE_BYTES = 64 * 1024 * 1024
MAX_KNOWN = 500_000
MAX_THREADS = 1024


class BlobCache:
    """``put_blob``/``get_blob`` of a store, by raw 32-byte digest, through an LRU of bytes."""

    def __init__(self, store: CheckpointStore, max_bytes: int = DEFAULT_CACHE_BYTES) -> None:
        # A proxy: the registry below is keyed weakly by the store, so its values must not keep
        # the store alive (its savers do, while they are used).
        self._store: CheckpointStore = weakref.proxy(store)
        self._max_bytes = max_bytes
        self._lock = threading.Lock()
        self._bytes: OrderedDict[bytes, bytes] = OrderedDict()
        self._size = 0
        self._known: dict[bytes, None] = {}  # stored by this process (insertion-ordered)

    def put(self, data: bytes) -> bytes:
        """Store ``data`` (once); its raw SHA-256."""
        key = hashlib.sha256(data).digest()
        with self._lock:
            if key in self._known:
                return key
        stored = self._store.put_blob(data)
        if stored != key.hex():
            raise RuntimeError(f"the store addressed a blob as {stored!r}, not by its SHA-256")
        with self._lock:
            self._remember(key, data)
            self._known[key] = None
            if len(self._known) > MAX_KNOWN:
                del self._known[next(iter(self._known))]
        return key

    def get_many(self, keys: Iterable[bytes]) -> dict[bytes, bytes]:
        """The bytes under each digest (:class:`~omium.errors.NotFoundError` if one is missing)."""
        found: dict[bytes, bytes] = {}
        missing: list[bytes] = []
        with self._lock:
            for key in keys:
                if key in found:
                    continue
                data = self._bytes.get(key)
                if data is None:
                    missing.append(key)
                else:
                    self._bytes.move_to_end(key)
                    found[key] = data
        if missing:
            fetched = self._fetch(list(dict.fromkeys(missing)))
            with self._lock:
                for key, data in fetched.items():
                    self._remember(key, data)
            found.update(fetched)
        return found

    def get(self, key: bytes) -> bytes:
        """The bytes under one digest."""
        return self.get_many([key])[key]

    def _fetch(self, keys: list[bytes]) -> dict[bytes, bytes]:
        # A store that can read many blobs in one round trip says so with ``get_blobs``.
        batch = getattr(self._store, "get_blobs", None)
        if batch is not None:
            got = batch([k.hex() for k in keys])
            return {k: got[k.hex()] for k in keys}
        return {k: self._store.get_blob(k.hex()) for k in keys}

    def _remember(self, key: bytes, data: bytes) -> None:
        if len(data) > self._max_bytes // 8:
            return  # one huge value must not flush the cache
        if key in self._bytes:
            self._bytes.move_to_end(key)
            return
        self._bytes[key] = data
        self._size += len(data)
        while self._size > self._max_bytes:
            _, evicted = self._bytes.popitem(last=False)
            self._size -= len(evicted)


class Sequences:
    """Per-thread record numbers (one sequence per Omium run)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._next: dict[str, int] = {}

    def known(self, run_id: str) -> bool:
        """Whether this process has numbered (or read) the thread."""
        with self._lock:
            return run_id in self._next

    def advance(self, run_id: str, past: int) -> None:
        """Make the next number greater than ``past``."""
        with self._lock:
            self._next[run_id] = max(self._next.get(run_id, 1), past + 1)

    def take(self, run_id: str) -> int:
        """The next number of the thread."""
        with self._lock:
            number = self._next.get(run_id, 1)
            self._next[run_id] = number + 1
            return number


class Threads:
    """Thread views read from a store, kept current by this process's writes (or not cached)."""

    def __init__(self, store: CheckpointStore, max_threads: int = MAX_THREADS) -> None:
        self._store: CheckpointStore = weakref.proxy(store)
        self._max = max_threads
        self._lock = threading.Lock()
        self._views: OrderedDict[str, tuple[Thread, bool]] = OrderedDict()  # run -> (view, loaded)

    def read(self, run_id: str, cached: bool) -> Thread:
        """A snapshot of the thread (from the cache if ``cached``, else from the store)."""
        if not cached:
            return Thread(run_id).apply(*load(self._store, run_id))
        with self._lock:
            found = self._views.get(run_id)
            if found is not None and found[1]:
                self._views.move_to_end(run_id)
                return found[0].copy()
            if found is None:  # writes from now on are applied to it while it loads
                found = self._views[run_id] = (Thread(run_id), False)
                while len(self._views) > self._max:
                    self._views.popitem(last=False)
        records, steps = load(self._store, run_id)
        with self._lock:
            view = found[0].apply(records, steps)
            if self._views.get(run_id) is found:
                self._views[run_id] = (view, True)
            return view.copy()

    def wrote(self, run_id: str, record: CheckpointRecord | StepRecord) -> None:
        """Apply a record this process has just written (to a cached view, if there is one)."""
        with self._lock:
            found = self._views.get(run_id)
            if found is None:
                return
            if isinstance(record, CheckpointRecord):
                found[0].add_checkpoint(record)
            else:
                found[0].add_step(record)


class Shared:
    """The caches and sequences of one store."""

    def __init__(self, store: CheckpointStore) -> None:
        self.blobs = BlobCache(store)
        self.threads = Threads(store)
        self.sequences = Sequences()
        # Threads whose run record exists (made here or found made). Separate from the numbering:
        # reading a thread (get_tuple before the first put) sets up its numbering, not its run.
        self.runs: set[str] = set()


_lock = threading.Lock()
_by_store: weakref.WeakKeyDictionary[CheckpointStore, Shared] = weakref.WeakKeyDictionary()


def shared(store: CheckpointStore) -> Shared:
    """The process-wide cache and sequences of ``store`` (made on first use)."""
    with _lock:
        found = _by_store.get(store)
        if found is None:
            found = _by_store[store] = Shared(store)
        return found
