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
