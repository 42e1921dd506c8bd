"""Model versions: named by their bytes, registered with their evaluation, refused when tampered with."""

from __future__ import annotations

from pathlib import Path

import pytest
from sklearn.linear_model import LogisticRegression

from omium.pipelines import registry
from omium.warehouse import ClickHouseWarehouse


def test_save_latest_load_and_tamper(warehouse: ClickHouseWarehouse, tmp_path: Path) -> None:
    with pytest.raises(registry.ModelNotFound, match="materialise its asset first"):
        registry.latest(warehouse, "m")
    model = LogisticRegression().fit([[0.0], [1.0], [2.0], [3.0]], [0, 0, 1, 1])
    saved = registry.save(warehouse, tmp_path, "m", model, training_rows=4, metrics={"auroc": 1.0})
    latest = registry.latest(warehouse, "m")
    assert latest.version == saved.version and latest.metrics == {"auroc": 1.0} and latest.training_rows == 4
    assert registry.load(latest).predict([[3.0]]).tolist() == [1]
    # The same model saved again is the same version; a different one is another.
    assert (
        registry.save(warehouse, tmp_path, "m", model, training_rows=4, metrics={}).version == saved.version
    )
    other = LogisticRegression(C=0.1).fit([[0.0], [1.0], [2.0], [3.0]], [0, 1, 0, 1])
    assert (
        registry.save(warehouse, tmp_path, "m", other, training_rows=4, metrics={}).version != saved.version
    )
    # A file swapped under the registry is refused, not unpickled.
    latest.path.write_bytes(latest.path.read_bytes() + b"\0")
    with pytest.raises(registry.ModelNotFound, match="does not match its version"):
        registry.load(latest)
    latest.path.unlink()
    with pytest.raises(registry.ModelNotFound, match="is missing"):
        registry.load(latest)


def test_a_version_records_its_training_runs(warehouse: ClickHouseWarehouse, tmp_path: Path) -> None:
    """``trained_on`` is the registered training set; a version registered without one (before the
    registry kept them) still loads, and says it is unknown rather than empty."""
    model = LogisticRegression().fit([[0.0], [1.0], [2.0], [3.0]], [0, 0, 1, 1])
    saved = registry.save(
        warehouse, tmp_path, "m", model, training_rows=4, metrics={}, params={"training_runs": ["r1", "r2"]}
    )
    found = registry.get(warehouse, "m", saved.version)
    assert found.trained_on == frozenset({"r1", "r2"}) and found.path == saved.path
    older = LogisticRegression(C=0.5).fit([[0.0], [1.0], [2.0], [3.0]], [0, 0, 1, 1])
    legacy = registry.get(
        warehouse, "m", registry.save(warehouse, tmp_path, "m", older, training_rows=4, metrics={}).version
    )
    assert legacy.trained_on is None and registry.load(legacy).predict([[3.0]]).tolist() == [1]
    with pytest.raises(registry.ModelNotFound, match="not registered"):
        registry.get(warehouse, "m", "0" * 16)
