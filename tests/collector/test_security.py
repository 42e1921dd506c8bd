"""Attacks on a real ``omium serve``, each answered safely (issue 13).

A local process, a web page (through the user's browser), or anyone on the network when the
server is exposed: each test replays one attack found against the server and asserts the safe
answer. Parser-level SQL refusals, control-API payloads and OTLP decoding have their own modules;
the doors' access rules, bounded connections, start-up and shutdown are here.
"""

from __future__ import annotations

import os
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import httpx
import pytest

from omium.collector import sample
from omium.collector.server import serving
from omium.config import Settings
from omium.warehouse import ClickHouseWarehouse
from tests.conftest import ServerProcess, free_port

pytestmark = pytest.mark.integration

TOKEN = {"authorization": "Bearer test-token"}
PROTOBUF = {"content-type": "application/x-protobuf"}


@pytest.fixture
def default_server(tmp_path: Path) -> Iterator[ServerProcess]:
    """``omium serve`` as a new user starts it: no token configured, so one is generated."""
    process = ServerProcess(tmp_path / "home", OMIUM_API_TOKEN="")
    process.home.mkdir()
    process.start()
    yield process
    process.stop()


def _token(server: ServerProcess) -> dict[str, str]:
    return {"authorization": f"Bearer {server.token}"}


def test_every_api_call_but_health_needs_the_token(default_server: ServerProcess) -> None:
    url = default_server.url
    anonymous = [
        httpx.post(f"{url}/v1/sql", json={"query": "SELECT file('api-token')"}),
        httpx.post(f"{url}/v1/sql", json={"query": "SELECT 1"}),
        httpx.post(f"{url}/v1/store/list_runs", json={"args": {}}),
        httpx.post(f"{url}/v1/store/get_run", json={"args": {"run_id": "x"}}),
        httpx.post(f"{url}/v1/runs/x/review", json={"decision": "approve"}),
        httpx.get(f"{url}/v1/runs/x/commands"),
        httpx.get(f"{url}/v1/runs/x/incidents"),
        httpx.get(f"{url}/v1/stats"),
        httpx.post(f"{url}/v1/insert?table=omium_runs", content=b"", headers={"content-type": "x"}),
    ]
    assert [r.status_code for r in anonymous] == [401] * len(anonymous)
    assert all("API token" in r.json()["error"] for r in anonymous)
    wrong = httpx.post(f"{url}/v1/sql", json={"query": "SELECT 1"}, headers={"authorization": "Bearer nope"})
    assert wrong.status_code == 401
    assert httpx.get(f"{url}/v1/health").status_code == 200
    assert httpx.get(f"{url}/v1/version").status_code == 200
    # The local user's clients find the token in $OMIUM_HOME: nothing changes for them.
    token_file = default_server.home / "api-token"
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(default_server.home.stat().st_mode) == 0o700
    env = os.environ | {"OMIUM_HOME": str(default_server.home), "OMIUM_SERVER_URL": url}
    env.pop("OMIUM_API_TOKEN", None)
    status = subprocess.run(
        [sys.executable, "-m", "omium.cli.main", "sql", "SELECT 40 + 2 AS n", "-f", "csv"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert status.returncode == 0, status.stderr
    assert status.stdout.split() == ["n", "42"]


def test_loopback_ingest_stays_open(default_server: ServerProcess) -> None:
    answer = httpx.post(f"{default_server.url}/v1/traces", content=sample.requests(1, 5)[0], headers=PROTOBUF)
    assert answer.status_code == 200


def test_dns_rebinding_and_cross_site_requests_are_refused(default_server: ServerProcess) -> None:
    url = default_server.url
    token = _token(default_server)
    # A page on evil.example whose DNS now points at 127.0.0.1 sends its own name as Host.
    rebound = httpx.post(
        f"{url}/v1/sql", json={"query": "SELECT 1"}, headers=token | {"host": "evil.example:4318"}
    )
    assert rebound.status_code == 421
    assert httpx.get(f"{url}/v1/health", headers={"host": "evil.example"}).status_code == 421
    ingest = httpx.post(
        f"{url}/v1/traces", content=sample.requests(1, 2)[0], headers=PROTOBUF | {"host": "evil.example"}
    )
    assert ingest.status_code == 421
    # A form or text/plain fetch needs no CORS preflight: JSON APIs take application/json only.
    plain = httpx.post(
        f"{url}/v1/sql", content=b'{"query": "SELECT 1"}', headers=token | {"content-type": "text/plain"}
    )
    assert plain.status_code == 415
    form = httpx.post(f"{url}/v1/runs/x/review", data={"decision": "approve"}, headers=token)
    assert form.status_code == 415
    # A browser adds Origin to cross-site calls; state-changing ones are refused.
    cross = httpx.post(
        f"{url}/v1/runs/x/review",
        json={"decision": "approve"},
        headers=token | {"origin": "https://evil.example"},
    )
    assert cross.status_code == 403
    for host in ("127.0.0.1", "localhost"):
        same = httpx.post(f"{url}/v1/sql", json={"query": "SELECT 1"}, headers=token | {"host": host})
        assert same.status_code == 200, same.text


def test_bodies_are_refused_before_they_are_read(default_server: ServerProcess) -> None:
    url = default_server.url
    token = _token(default_server)
    import psutil

    assert default_server.proc is not None
    server = psutil.Process(default_server.proc.pid)
    before = server.memory_info().rss
    # A declared gigabyte is refused from its headers.
    with socket.create_connection(("127.0.0.1", default_server.http_port), timeout=10) as sock:
        sock.sendall(
            b"POST /v1/sql HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            + f"Authorization: {token['authorization']}\r\n".encode()
            + b"Content-Length: 1073741824\r\n\r\n"
        )
        assert sock.recv(200).startswith(b"HTTP/1.1 413")

    # A chunked body with no length is counted while it streams: refused past the cap.
    def chunks() -> Iterator[bytes]:
        for _ in range(64):  # 64 x 1 MiB, four times the API cap
            yield b" " * (1 << 20)

    streamed = httpx.post(
        f"{url}/v1/sql", content=chunks(), headers=token | {"content-type": "application/json"}, timeout=60
    )
    assert streamed.status_code == 413
    assert server.memory_info().rss - before < 200 * (1 << 20)
    assert httpx.get(f"{url}/v1/health").status_code == 200


def test_idle_sockets_do_not_starve_clients(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path, OMIUM_HEADER_TIMEOUT_SECONDS="3").start()
    sockets: list[socket.socket] = []
    try:
        for _ in range(300):
            sock = socket.create_connection(("127.0.0.1", server.http_port), timeout=10)
            sock.sendall(b"GET /v1/hea")  # half a request line, then nothing
            sockets.append(sock)
        time.sleep(0.5)
        for _ in range(5):
            started = time.monotonic()
            assert httpx.get(f"{server.url}/v1/health", timeout=5).status_code == 200
            answer = httpx.post(f"{server.url}/v1/sql", json={"query": "SELECT 1"}, headers=TOKEN, timeout=5)
            assert answer.status_code == 200
            assert time.monotonic() - started < 1.0
        # Past the header deadline the server hangs up on every one of them.
        deadline = time.monotonic() + 10
        closed = 0
        for sock in sockets:
            sock.settimeout(max(0.1, deadline - time.monotonic()))
            try:
                closed += sock.recv(1) == b""
            except (TimeoutError, ConnectionError):
                closed += isinstance(sys.exc_info()[1], ConnectionError)
        assert closed == len(sockets)
    finally:
        for sock in sockets:
            sock.close()
        server.stop()


def test_a_trickling_body_is_cut_off(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path, OMIUM_BODY_TIMEOUT_SECONDS="2").start()
    try:
        with socket.create_connection(("127.0.0.1", server.http_port), timeout=10) as sock:
            sock.sendall(
                b"POST /v1/sql HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                b"Authorization: Bearer test-token\r\nContent-Length: 100\r\n\r\n{"
            )
            started = time.monotonic()
            while True:  # the answer (if any) and then the close, within the body deadline
                data = sock.recv(4096)
                if not data:
                    break
            assert time.monotonic() - started < 6
    finally:
        server.stop()


def test_requests_in_progress_are_bounded_but_health_answers(
    settings: Settings, warehouse: ClickHouseWarehouse
) -> None:
    with serving(settings.with_(max_requests=2), warehouse) as running:
        # Two real requests in progress: their headers arrived, their bodies have not.
        held = []
        for _ in range(2):
            sock = socket.create_connection(("127.0.0.1", running.http_port), timeout=10)
            sock.sendall(
                b"POST /v1/sql HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                b"Authorization: Bearer test-token\r\nContent-Length: 100\r\n\r\n{"
            )
            held.append(sock)
        try:
            deadline = time.monotonic() + 10
            while True:
                busy = httpx.post(f"{running.url}/v1/sql", json={"query": "SELECT 1"}, headers=TOKEN)
                if busy.status_code == 503 or time.monotonic() > deadline:
                    break
                time.sleep(0.05)
            assert busy.status_code == 503 and busy.headers["retry-after"] == "1"
            assert httpx.get(f"{running.url}/v1/health").status_code == 200
        finally:
            for sock in held:
                sock.close()
        # The held requests end with their sockets: capacity comes back.
        deadline = time.monotonic() + 10
        while (
            httpx.post(f"{running.url}/v1/sql", json={"query": "SELECT 1"}, headers=TOKEN).status_code != 200
        ):
            assert time.monotonic() < deadline, "capacity never came back"
            time.sleep(0.05)
        stats = httpx.get(f"{running.url}/v1/stats", headers=TOKEN).json()
        assert stats["refused_requests"]["503"] >= 1


def test_exposing_the_server_needs_an_operators_token(tmp_path: Path) -> None:
    home = tmp_path / "home"
    env = os.environ | {
        "OMIUM_HOME": str(home),
        "OMIUM_HOST": "0.0.0.0",
        "OMIUM_HTTP_PORT": str(free_port()),
        "OMIUM_GRPC_PORT": str(free_port()),
    }
    env.pop("OMIUM_API_TOKEN", None)
    refused = subprocess.run(
        [sys.executable, "-m", "omium.cli.main", "serve"], env=env, capture_output=True, text=True, timeout=60
    )
    assert refused.returncode != 0
    assert "OMIUM_API_TOKEN" in refused.stderr + refused.stdout
    assert not (home / "api-token").exists(), "a token was generated before the bind was refused"
    # A token left by an earlier local run does not count either.
    home.mkdir(mode=0o700)
    (home / "api-token").write_text("x" * 43)
    again = subprocess.run(
        [sys.executable, "-m", "omium.cli.main", "serve"], env=env, capture_output=True, text=True, timeout=60
    )
    assert again.returncode != 0 and "OMIUM_API_TOKEN" in again.stderr + again.stdout


def test_an_exposed_server_wants_a_token_for_ingest(
    settings: Settings, warehouse: ClickHouseWarehouse
) -> None:
    # 127.0.0.2 is loopback to the kernel but not one of the names Omium treats as local: the
    # server behaves as if exposed, while the test's traffic stays on this machine.
    exposed = settings.with_(host="127.0.0.2", ingest_token="ingest-secret")
    with serving(exposed, warehouse) as running:
        body = sample.requests(1, 3)[0]
        url = f"http://127.0.0.2:{running.http_port}/v1/traces"
        assert httpx.post(url, content=body, headers=PROTOBUF).status_code == 401
        assert (
            httpx.post(url, content=body, headers=PROTOBUF | {"authorization": "Bearer wrong"}).status_code
            == 401
        )
        ok = [
            httpx.post(url, content=body, headers=PROTOBUF | {"authorization": f"Bearer {t}"}).status_code
            for t in ("ingest-secret", "test-token")
        ]
        assert ok == [200, 200]
        # gRPC asks the same of its callers.
        with grpc.insecure_channel(f"127.0.0.2:{running.grpc_port}") as channel:
            export = channel.unary_unary(
                "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
                request_serializer=lambda raw: raw,
                response_deserializer=lambda raw: raw,
            )
            with pytest.raises(grpc.RpcError) as refused:
                export(body, timeout=10)
            assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
            with pytest.raises(grpc.RpcError) as wrong:
                export(body, timeout=10, metadata=[("authorization", "Bearer wrong")])
            assert wrong.value.code() == grpc.StatusCode.UNAUTHENTICATED
            export(body, timeout=10, metadata=[("authorization", "Bearer ingest-secret")])
        # The ingest token is not an API token.
        sql = httpx.post(
            f"http://127.0.0.2:{running.http_port}/v1/sql",
            json={"query": "SELECT 1"},
            headers={"authorization": "Bearer ingest-secret"},
        )
        assert sql.status_code == 401
        # Any Host is accepted on an exposed server (the token is the defence there).
        named = httpx.get(
            f"http://127.0.0.2:{running.http_port}/v1/health", headers={"host": "omium.internal"}
        )
        assert named.status_code == 200


def test_a_garbled_token_file_is_regenerated(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir(mode=0o700)
    (home / "api-token").write_bytes(b"\xff\x00 overwritten by an attacker's INTO OUTFILE \n")
    server = ServerProcess(home, OMIUM_API_TOKEN="").start()
    try:
        token = (home / "api-token").read_text().strip()
        assert len(token) >= 32 and "overwritten" not in token
        answer = httpx.post(
            f"{server.url}/v1/sql", json={"query": "SELECT 1"}, headers={"authorization": f"Bearer {token}"}
        )
        assert answer.status_code == 200
        status = subprocess.run(
            [sys.executable, "-m", "omium.cli.main", "status"],
            env=os.environ | {"OMIUM_HOME": str(home), "OMIUM_SERVER_URL": server.url, "OMIUM_API_TOKEN": ""},
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert status.returncode == 0, status.stdout + status.stderr
    finally:
        server.stop()


def test_warehouse_files_are_private(default_server: ServerProcess) -> None:
    httpx.post(
        f"{default_server.url}/v1/traces", content=sample.requests(1, 20)[0], headers=PROTOBUF
    ).raise_for_status()
    exposed = []
    for root, dirs, files in os.walk(default_server.home):
        for name in dirs + files:
            path = Path(root) / name
            if path.is_symlink() or path.name == "server.log":  # the test's own log of the child
                continue
            if stat.S_IMODE(path.stat().st_mode) & 0o077:
                exposed.append(f"{oct(stat.S_IMODE(path.stat().st_mode))} {path}")
    assert not exposed, exposed[:10]


def test_sigterm_stops_serve_promptly_with_a_long_query_running(default_server: ServerProcess) -> None:
    token = _token(default_server)
    url = default_server.url

    def long_query() -> None:
        try:
            httpx.post(
                f"{url}/v1/sql",
                json={"query": "SELECT count() FROM numbers(1000000000000) WHERE sipHash64(number) = 0"},
                headers=token,
                timeout=120,
            )
        except httpx.HTTPError:
            pass

    httpx.post(
        f"{url}/v1/traces", content=sample.requests(1, 50, seed=3)[0], headers=PROTOBUF
    ).raise_for_status()
    worker = threading.Thread(target=long_query, daemon=True)
    worker.start()
    time.sleep(1.5)
    assert default_server.proc is not None
    started = time.monotonic()
    default_server.proc.send_signal(signal.SIGTERM)
    default_server.proc.wait(30)
    assert time.monotonic() - started < 15
    # What it acknowledged is there after a restart.
    default_server.start()
    rows = default_server.sql("SELECT count() FROM otel_traces FINAL")
    assert rows[0][0] >= 50


def test_uncaught_errors_do_not_leak_tracebacks_to_clients(default_server: ServerProcess) -> None:
    answer = httpx.post(
        f"{default_server.url}/v1/store/get_run",
        content=b'{"args": {"run_id": "\\ud800"}}',
        headers=_token(default_server) | {"content-type": "application/json"},
    )
    assert 400 <= answer.status_code < 500
    assert "Traceback" not in answer.text
