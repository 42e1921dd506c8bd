"""The public surface is deliberate: this fails when it drifts."""

import subprocess
import sys

import omium
import omium.errors
import omium.warehouse


def test_top_level_names() -> None:
    assert sorted(omium.__all__) == sorted(
        [
            "Checkpoint",
            "Consensus",
            "OmiumError",
            "RetryPolicy",
            "Settings",
            "SharedState",
            "Transaction",
            "__version__",
            "agent",
            "agent_config",
            "arun",
            "fork",
            "idempotency_key",
            "init",
            "llm_call",
            "replay",
            "rollback",
            "run",
            "step",
            "tool",
            "workflow",
        ]
    )
    for name in omium.__all__:
        assert hasattr(omium, name)


def test_error_tree_has_one_root() -> None:
    for name in omium.errors.__all__:
        cls = getattr(omium.errors, name)
        assert issubclass(cls, omium.errors.OmiumError), name


def test_warehouse_names() -> None:
    assert sorted(omium.warehouse.__all__) == sorted(
        ["LATEST_VERSION", "ClickHouseWarehouse", "Warehouse", "connect", "migrate"]
    )


def test_importing_omium_stays_light() -> None:
    code = "import sys, omium; print(','.join(m for m in ('chdb', 'clickhouse_connect', 'polars', 'pyarrow', 'starlette', 'grpc') if m in sys.modules))"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert out == ""


def test_testing_names() -> None:
    import omium.testing

    assert sorted(omium.testing.__all__) == ["FakeLLM", "Runtime", "runtime"]
