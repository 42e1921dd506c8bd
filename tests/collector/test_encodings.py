"""Compressed OTLP/HTTP bodies on every path (traces, logs, metrics): gzip, zstd and deflate (zlib
and raw) are read, each stopped at the body cap while it decompresses (zip bombs are 413), broken
ones are 400, and nothing is stored for either."""

from __future__ import annotations

import gzip
import zlib
from collections.abc import Callable, Iterator

import httpx
import pytest
import zstandard

from omium.collector import sample
from omium.collector.encodings import BodyTooLarge, Inflate, Unzstd, decoder_for
from omium.collector.server import RunningServer
from omium.errors import DecodeError
from omium.warehouse import ClickHouseWarehouse
from tests.collector.logs_and_metrics import logs_request
from tests.collector.test_otlp_metrics import summary_request


def _raw_deflate(data: bytes) -> bytes:
    compressor = zlib.compressobj(wbits=-zlib.MAX_WBITS)
    return compressor.compress(data) + compressor.flush()


COMPRESS: dict[str, Callable[[bytes], bytes]] = {
    "gzip": gzip.compress,
    "zstd": zstandard.ZstdCompressor().compress,
    "deflate": zlib.compress,  # zlib-wrapped, as RFC 9110 says
    "deflate-raw": _raw_deflate,  # as several HTTP clients send it
}
# path -> (a body holding three records, the table they go to)
BODIES: dict[str, tuple[bytes, str]] = {
    "traces": (sample.requests(1, 3, seed=71)[0], "otel_traces"),
    "logs": (logs_request("encoded", count=3).SerializeToString(), "otel_logs"),
    "metrics": (summary_request("encoded").SerializeToString(), "otel_metrics_summary"),
}


def _post(server: RunningServer, path: str, body: bytes, encoding: str) -> httpx.Response:
    return httpx.post(
        f"{server.url}/v1/{path}",
        content=body,
        headers={"content-type": "application/x-protobuf", "content-encoding": encoding.split("-")[0]},
        timeout=60,
    )


@pytest.fixture
def small_cap(server: RunningServer) -> Iterator[int]:
    cap = server.state.settings.max_body_bytes
    object.__setattr__(server.state.settings, "max_body_bytes", 50_000)
    yield 50_000
    object.__setattr__(server.state.settings, "max_body_bytes", cap)


@pytest.mark.parametrize("path", BODIES)
@pytest.mark.parametrize("encoding", COMPRESS)
def test_compressed_bodies_are_stored(
    server: RunningServer, warehouse: ClickHouseWarehouse, path: str, encoding: str
) -> None:
    body, table = BODIES[path]
    response = _post(server, path, COMPRESS[encoding](body), encoding)
    assert response.status_code == 200, response.content
    expected = 3 if path != "metrics" else 1
    assert warehouse.scalar(f"SELECT count() FROM {table} FINAL") == expected


@pytest.mark.parametrize("path", BODIES)
@pytest.mark.parametrize("encoding", COMPRESS)
def test_bombs_are_413_and_store_nothing(
    server: RunningServer, warehouse: ClickHouseWarehouse, small_cap: int, path: str, encoding: str
) -> None:
    bomb = COMPRESS[encoding](b"\x00" * 20_000_000)
    assert len(bomb) < small_cap
    response = _post(server, path, bomb, encoding)
    assert response.status_code == 413
    assert f"larger than {small_cap} bytes" in response.text
    # What fits the cap still goes through on the same server.
    body, table = BODIES[path]
    assert _post(server, path, COMPRESS[encoding](body), encoding).status_code == 200
    assert warehouse.scalar(f"SELECT count() FROM {table}") == (3 if path != "metrics" else 1)


@pytest.mark.parametrize("encoding", ["gzip", "zstd", "deflate"])
def test_broken_compression_is_400(
    server: RunningServer, warehouse: ClickHouseWarehouse, encoding: str
) -> None:
    for path in BODIES:
        response = _post(server, path, b"\x28\xb5\x2f\xfd not compressed at all", encoding)
        assert response.status_code == 400, (path, response.content)
    truncated = COMPRESS[encoding](BODIES["logs"][0])[:-6]
    assert _post(server, "logs", truncated, encoding).status_code == 400
    assert warehouse.scalar("SELECT count() FROM otel_logs") == 0


def test_multi_frame_zstd_is_read_whole(server: RunningServer, warehouse: ClickHouseWarehouse) -> None:
    # Two protobuf requests concatenated are one request holding both's records; compressed
    # separately and concatenated, they are one valid zstd body (as gzip members are).
    first = logs_request("frame-1", count=2).SerializeToString()
    second = logs_request("frame-2", count=3).SerializeToString()
    compress = zstandard.ZstdCompressor().compress
    assert _post(server, "logs", compress(first) + compress(second), "zstd").status_code == 200
    assert warehouse.scalar("SELECT count() FROM otel_logs FINAL") == 5


def test_decoders_stop_at_the_cap_within_a_chunk() -> None:
    cap = 1_000_000
    zeros = b"\x00" * 50_000_000
    for decoder, data in (
        (Unzstd(cap), zstandard.ZstdCompressor().compress(zeros)),
        (Inflate(cap), zlib.compress(zeros)),
        (Inflate(cap), _raw_deflate(zeros)),
    ):
        out = 0
        with pytest.raises(BodyTooLarge):
            for start in range(0, len(data), 4096):
                out += len(decoder.feed(data[start : start + 4096]))
        assert out <= cap
    inflate = Inflate(cap)
    assert inflate.feed(b"x") == b""  # one byte cannot tell zlib from raw deflate yet
    with pytest.raises(DecodeError):
        inflate.finish()
    assert decoder_for("identity", cap) is None and decoder_for(" GZIP ", cap) is not None
