"""DBOS in benchmarks/control_plane.py: the same three-step workflow on a DBOS queue.

``worker URL``: a DBOS process on the system database URL that listens to the queue ``bench``
(DBOS's defaults: no per-worker concurrency limit, a 1 s polling interval); prints ``ready``, then
runs until its standard input closes. ``submit URL N TAG``: enqueues N workflows with
``DBOSClient`` and waits until all have succeeded; prints the seconds from the first enqueue to
the last success as JSON.
"""

from __future__ import annotations

import json
import sys
import time

from dbos import DBOS, DBOSClient

ROLE, URL = sys.argv[1], sys.argv[2]
QUEUE = "bench"


def worker() -> None:
    DBOS(config={"name": "bench", "system_database_url": URL})

    @DBOS.step()
    def add(total: int, value: int) -> int:
        return total + value

    @DBOS.workflow(name="bench_flow")
    def bench_flow(n: int) -> int:
        total = 0
        for value in range(3):
            total = add(total, n + value)
        return total

    DBOS.launch()
    DBOS.register_queue(QUEUE)
    print("ready", flush=True)
    sys.stdin.read()
    DBOS.destroy()


def submit(count: int, tag: str) -> None:
    import psycopg

    client = DBOSClient(system_database_url=URL)
    started = time.perf_counter()
    for i in range(count):
        client.enqueue({"queue_name": QUEUE, "workflow_name": "bench_flow", "workflow_id": f"{tag}-{i}"}, i)
    enqueued = time.perf_counter() - started
    with psycopg.connect(URL, autocommit=True) as connection:
        while True:
            row = connection.execute(
                "SELECT count(*) FROM dbos.workflow_status WHERE workflow_uuid LIKE %s AND status = 'SUCCESS'",
                (f"{tag}-%",),
            ).fetchone()
            if row and row[0] >= count:
                break
            time.sleep(0.02)
    print(json.dumps({"seconds": time.perf_counter() - started, "enqueue_seconds": enqueued}))
    client.destroy()


if __name__ == "__main__":
    if ROLE == "worker":
        worker()
    else:
        submit(int(sys.argv[3]), sys.argv[4])
