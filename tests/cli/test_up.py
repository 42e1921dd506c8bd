"""``omium up`` starts its children, serves, and stops them all on Ctrl-C."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil
import pytest

from omium.cli.up import children
from omium.config import Settings
from tests.conftest import free_port


def test_children_include_a_worker_for_each_module() -> None:
    workers = [
        c.argv[-1] for c in children(Settings(), ["flows", "more.flows:onboard"]) if c.name == "worker"
    ]
    assert workers == ["flows", "more.flows:onboard"]
    (default,) = [c.argv[-1] for c in children(Settings()) if c.name == "worker"]
    assert default == "omium.examples.company_x.workflow"


def test_children_include_the_server() -> None:
    names = [child.name for child in children(Settings())]
    assert names[0] == "server"


@pytest.mark.integration
@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_up_serves_and_a_stop_signal_stops_everything(tmp_path: Path, stop: signal.Signals) -> None:
    """Ctrl-C, and SIGTERM as docker, systemd and Kubernetes send it, leave no process behind."""
    port = free_port()
    env = os.environ | {
        "OMIUM_HOME": str(tmp_path),
        "OMIUM_HTTP_PORT": str(port),
        "OMIUM_GRPC_PORT": str(free_port()),
        "OMIUM_SERVER_URL": f"http://127.0.0.1:{port}",
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "omium.cli.main", "up"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/v1/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "omium up never served"
            time.sleep(0.2)
        descendants = psutil.Process(proc.pid).children(recursive=True)
        assert descendants
        proc.send_signal(stop)
        assert proc.wait(60) == 0
        _, alive = psutil.wait_procs(descendants, timeout=30)
        assert not alive, f"children left running: {alive}"
        assert proc.stdout is not None
        assert b"started" in proc.stdout.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        if proc.stdout is not None:
            proc.stdout.close()
