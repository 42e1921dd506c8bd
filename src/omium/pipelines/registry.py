"""Versioned models: a fitted scikit-learn object on disk, named by its sha256, and a registry row.

The row (``omium_models``) carries the version, when and on how many rows the model was trained,
which runs those were (``params["training_runs"]``, so that no asset scores a run with a model
fitted on it: :attr:`ModelVersion.trained_on`), and its held-out evaluation, so the console,
Grafana and the notebook read how good a model is from the warehouse. The object itself is stored
with joblib beside the Dagster storage; loading checks the bytes against the version, so a file
swapped under the registry is refused rather than unpickled.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omium.errors import OmiumError


class ModelNotFound(OmiumError):
    """No trained version of a model exists yet, or its file is missing or altered."""


@dataclass(frozen=True)
class ModelVersion:
    """A registered model version."""

    name: str
    version: str
    trained_at: dt.datetime
    training_rows: int
    metrics: dict[str, Any]
    params: dict[str, Any]
    path: Path

    @property
    def trained_on(self) -> frozenset[str] | None:
        """The run ids the model was fitted on, or None when its registration did not record them
        (a version registered before the registry kept training sets: loadable, but whether it saw
        a given run is unknown)."""
        runs = self.params.get("training_runs")
        return None if runs is None else frozenset(str(r) for r in runs)


def save(
    warehouse: Any,
    directory: Path,
    name: str,
    model: Any,
    *,
    training_rows: int,
    metrics: dict[str, Any],
    params: dict[str, Any] | None = None,
) -> ModelVersion:
    """Store ``model`` under ``directory`` and register it; returns the new version."""
    import joblib

    buffer = io.BytesIO()
    joblib.dump(model, buffer)
    data = buffer.getvalue()
    version = hashlib.sha256(data).hexdigest()[:16]
    path = directory / name / f"{version}.joblib"
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".tmp")
    temporary.write_bytes(data)
    temporary.replace(path)  # atomic: a reader never sees half a model
    trained_at = dt.datetime.now(dt.UTC)
    warehouse.insert(
        "omium_models",
        [
            [name],
            [version],
            [trained_at],
            [training_rows],
            [json.dumps(metrics)],
            [json.dumps(params or {})],
            [str(path)],
        ],
        ["model_name", "model_version", "trained_at", "training_rows", "metrics", "params", "artifact_path"],
    )
    return ModelVersion(name, version, trained_at, training_rows, metrics, params or {}, path)


_VERSION_COLUMNS = "model_version, trained_at, training_rows, metrics, params, artifact_path"


def _version(name: str, row: dict[str, Any]) -> ModelVersion:
    return ModelVersion(
        name,
        row["model_version"],
        row["trained_at"],
        int(row["training_rows"]),
        json.loads(row["metrics"]),
        json.loads(row["params"]),
        Path(row["artifact_path"]),
    )


def latest(warehouse: Any, name: str) -> ModelVersion:
    """The most recently trained version of ``name`` (:class:`ModelNotFound` if none)."""
    rows = warehouse.query_rows(
        f"SELECT {_VERSION_COLUMNS} FROM omium_models FINAL "
        "WHERE model_name = {name:String} ORDER BY trained_at DESC LIMIT 1",
        {"name": name},
    )
    if not rows:
        raise ModelNotFound(f"no trained version of {name!r} yet: materialise its asset first")
    return _version(name, rows[0])


def get(warehouse: Any, name: str, version: str) -> ModelVersion:
    """The registered ``version`` of ``name`` (:class:`ModelNotFound` if it was never registered)."""
    rows = warehouse.query_rows(
        f"SELECT {_VERSION_COLUMNS} FROM omium_models FINAL "
        "WHERE model_name = {name:String} AND model_version = {version:String} "
        "ORDER BY trained_at DESC LIMIT 1",
        {"name": name, "version": version},
    )
    if not rows:
        raise ModelNotFound(f"{name} {version} is not registered")
    return _version(name, rows[0])


def load(version: ModelVersion) -> Any:
    """The fitted object of ``version``, after checking its bytes against the version."""
    import joblib

    try:
        data = version.path.read_bytes()
    except FileNotFoundError as exc:
        raise ModelNotFound(f"{version.name} {version.version}: {version.path} is missing; retrain") from exc
    if hashlib.sha256(data).hexdigest()[:16] != version.version:
        raise ModelNotFound(f"{version.name} {version.version}: {version.path} does not match its version")
    return joblib.load(io.BytesIO(data))


__all__ = ["ModelNotFound", "ModelVersion", "get", "latest", "load", "save"]
