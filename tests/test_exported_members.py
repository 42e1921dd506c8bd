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
            "ThreadPoolExecutor",
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
            "spawn",
            "step",
            "to_thread",
            "tool",
            "workflow",
        ]
    )
    for name in omium.__all__:
        assert hasattr(omium, name)


def test_error_tree_has_two_roots_errors_and_control_signals() -> None:
    """Errors derive from OmiumError; signals that stop a run on purpose from ControlSignal, a
    BaseException that ``except Exception`` cannot swallow."""
    for name in omium.errors.__all__:
        cls = getattr(omium.errors, name)
        if name == "DETECTIONS":
            assert cls == (omium.errors.Detected, omium.errors.ApprovalRequired)
            continue
        roots = (omium.errors.OmiumError, omium.errors.ControlSignal)
        assert issubclass(cls, roots), name
        assert issubclass(cls, Exception) != issubclass(cls, omium.errors.ControlSignal), name
    for signal in (omium.errors.ApprovalRequired, omium.errors.HandoffRejected, omium.errors.HandoffStale):
        try:
            try:
                raise signal("stop", **({"trigger": "t"} if signal is omium.errors.ApprovalRequired else {}))
            except Exception:  # what user code writes around agent code
                raise AssertionError(f"{signal.__name__} was swallowed") from None
        except omium.errors.ControlSignal:
            pass


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
