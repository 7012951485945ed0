"""MLflow access: the pyfunc wrapper, logging and registering a model, aliases, loading the champion."""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Any

import mlflow
import mlflow.pyfunc
import numpy as np
import pandas as pd
from mlflow import MlflowClient
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException
from mlflow.pyfunc import PythonModel

from models.scoring_model import ScoringModel

MODEL_ARTIFACT = "model"
NATIVE_DIR = "leadscore_model"


class NoChampionModel(LookupError):
    """No model version carries the alias being served."""


class LeadscorePyfunc(PythonModel):
    """Pyfunc view of a :class:`ScoringModel`: feature frame in, calibrated probabilities out."""

    def load_context(self, context: Any) -> None:
        self.model = ScoringModel.load(context.artifacts[NATIVE_DIR])

    def predict(self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None) -> np.ndarray:
        frame = pd.DataFrame(model_input)
        names = self.model.spec.feature_names
        missing = [c for c in names if c not in frame.columns]
        if missing:
            raise ValueError(f"feature frame lacks columns: {missing[:10]}")
        X = frame[names].to_numpy(dtype=np.float64)
        return self.model.predict_proba(X)


def configure_tracking(tracking_uri: str, registry_uri: str | None = None) -> None:
    """Point MLflow at the tracking and registry servers (called by commands, never on import)."""
    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_registry_uri(registry_uri or tracking_uri)


def ensure_experiment(name: str, artifact_location: str | None) -> str:
    """The experiment's id, creating it with artifacts under ``artifact_location`` when new."""
    client = MlflowClient()
    existing = client.get_experiment_by_name(name)
    if existing is not None:
        return str(existing.experiment_id)
    return str(client.create_experiment(name, artifact_location=artifact_location))


def _requirements() -> list[str]:
    packages = ("mlflow", "lightgbm", "scikit-learn", "numpy", "pandas")
    return [f"{p}=={version(p)}" for p in packages]


def log_scoring_model(
    model: ScoringModel,
    example: pd.DataFrame,
    registered_name: str,
    extra_files: dict[str, pd.DataFrame] | None = None,
) -> ModelVersion:
    """Log the model to the active run as a pyfunc (signature, input example) and register a version.

    ``extra_files`` (e.g. the test-window predictions the threshold analysis needs) travel inside the
    native model directory as Parquet.
    """
    from mlflow.models import infer_signature

    with tempfile.TemporaryDirectory() as tmp:
        native = model.save(Path(tmp) / NATIVE_DIR)
        for filename, frame in (extra_files or {}).items():
            frame.to_parquet(native / filename, index=False)
        probabilities = model.predict_proba(example.to_numpy(dtype=np.float64))
        info = mlflow.pyfunc.log_model(
            name=MODEL_ARTIFACT,
            python_model=LeadscorePyfunc(),
            artifacts={NATIVE_DIR: str(native)},
            signature=infer_signature(example.astype(np.float64), probabilities),
            input_example=example.astype(np.float64),
            pip_requirements=_requirements(),
            registered_model_name=registered_name,
        )
    client = MlflowClient()
    versions = client.search_model_versions(f"name='{registered_name}'")
    run_id = mlflow.active_run().info.run_id  # type: ignore[union-attr]
    mine = [v for v in versions if v.run_id == run_id and v.source and info.model_id and info.model_id in v.source]
    mine = mine or [v for v in versions if v.run_id == run_id]
    return max(mine, key=lambda v: int(v.version))


def champion_version(name: str, alias: str = "champion") -> ModelVersion | None:
    """The model version carrying ``alias``, or None; an unreachable registry raises."""
    try:
        return MlflowClient().get_model_version_by_alias(name, alias)
    except MlflowException as err:
        if err.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
            return None
        raise


def set_alias(name: str, alias: str, version: str | int) -> None:
    MlflowClient().set_registered_model_alias(name, alias, str(version))


def tag_version(name: str, version: str | int, tags: dict[str, Any]) -> None:
    client = MlflowClient()
    for key, value in tags.items():
        client.set_model_version_tag(name, str(version), key, str(value))


@dataclass(frozen=True)
class LoadedModel:
    model: ScoringModel
    name: str
    version: str
    run_id: str | None
    path: Path


COMPLETE = ".complete"  # written last into a downloaded model directory, before it is renamed into place


def load_registered_model(name: str, version: str, cache_dir: Path) -> LoadedModel:
    """Download one registered version's native model into ``cache_dir/name/version`` and load it.

    Each download goes to a directory of its own and is renamed into place whole (a rename is atomic), with a
    ``.complete`` marker written last: several workers downloading at once never see, or leave, a partial
    copy, and a directory without the marker (an interrupted older download) is replaced.
    """
    target = cache_dir / name / str(version)
    run_id = None
    if not (target / COMPLETE).exists():
        mv = MlflowClient().get_model_version(name, str(version))
        target.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
        try:
            local = Path(
                mlflow.artifacts.download_artifacts(artifact_uri=f"models:/{name}/{version}", dst_path=str(staging))
            )
            native = next(local.rglob("meta.json")).parent
            ready = staging / "model"
            shutil.copytree(native, ready)
            (ready / COMPLETE).write_text(str(version))
            _move_into_place(ready, target)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        run_id = mv.run_id
    model = ScoringModel.load(target)
    return LoadedModel(
        model=model, name=name, version=str(version), run_id=run_id or model.meta.get("run_id"), path=target
    )


def _move_into_place(ready: Path, target: Path) -> None:
    """Rename a complete download to ``target``; keep a complete copy another worker put there first, and
    move an incomplete one aside."""
    if target.exists() and not (target / COMPLETE).exists():
        aside = Path(tempfile.mkdtemp(prefix=f".{target.name}.old.", dir=target.parent))
        with contextlib.suppress(OSError):  # another worker moved it first
            target.rename(aside / "model")
        shutil.rmtree(aside, ignore_errors=True)
    try:
        ready.rename(target)
    except OSError:
        if not (target / COMPLETE).exists():
            raise


def load_champion(name: str, alias: str, cache_dir: Path) -> LoadedModel:
    """Load the version behind ``alias``; raises :class:`NoChampionModel` when there is none."""
    mv = champion_version(name, alias)
    if mv is None:
        raise NoChampionModel(f"no version of registered model {name!r} has the alias {alias!r}")
    return load_registered_model(name, mv.version, cache_dir)


def load_model_uri(uri: str, cache_dir: Path) -> LoadedModel:
    """Load ``models:/name@alias``, ``models:/name/version`` or a local model directory."""
    if uri.startswith("models:/"):
        ref = uri[len("models:/") :]
        if "@" in ref:
            name, alias = ref.split("@", 1)
            return load_champion(name, alias, cache_dir)
        name, ver = ref.rsplit("/", 1)
        return load_registered_model(name, ver, cache_dir)
    path = Path(uri)
    return LoadedModel(model=ScoringModel.load(path), name=path.name, version="local", run_id=None, path=path)
