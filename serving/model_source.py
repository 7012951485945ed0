"""Where the served model comes from, and the holder that swaps it atomically on reload."""

from __future__ import annotations

import json
import logging
import os
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Protocol

from features import LeadRecord, TouchRecord, build_features_at
from models.registry import LoadedModel, champion_version, configure_tracking, load_registered_model
from models.scoring_model import ScoringModel

log = logging.getLogger("leadscore.serving")


class ModelSource(Protocol):
    """Tells which version should be served and loads it."""

    def current_version(self) -> str | None: ...

    def load(self, version: str) -> LoadedModel: ...

    def fetch(self, version: str) -> LoadedModel: ...


class RegistrySource:
    """The MLflow registry: the version behind ``name@alias``, downloaded into a local cache."""

    def __init__(self, tracking_uri: str, registry_uri: str, name: str, alias: str, cache_dir: Path) -> None:
        self.tracking_uri = tracking_uri
        self.registry_uri = registry_uri
        self.name = name
        self.alias = alias
        self.cache_dir = cache_dir

    def current_version(self) -> str | None:
        configure_tracking(self.tracking_uri, self.registry_uri)
        mv = champion_version(self.name, self.alias)
        return None if mv is None else str(mv.version)

    def fetch(self, version: str) -> LoadedModel:
        """Any registered version (e.g. the one an older policy was set for), from the local cache if there."""
        configure_tracking(self.tracking_uri, self.registry_uri)
        return load_registered_model(self.name, version, self.cache_dir)

    def load(self, version: str) -> LoadedModel:
        """The version to serve; remembered as the local fallback copy (a failure to remember it is logged:
        it does not refuse a model that loaded)."""
        loaded = self.fetch(version)
        try:
            remember_last_loaded(self.cache_dir, loaded)
        except OSError:
            log.exception("could not record version %s as the last model loaded", version)
        return loaded

    def load_last_known(self) -> LoadedModel | None:
        """The local copy of the last model that loaded, for when the registry cannot be reached."""
        pointer = self.cache_dir / "last_loaded.json"
        if not pointer.exists():
            return None
        info = json.loads(pointer.read_text())
        path = Path(info["path"])
        return LoadedModel(ScoringModel.load(path), info["name"], info["version"], info.get("run_id"), path)


def remember_last_loaded(cache_dir: Path, loaded: LoadedModel) -> None:
    """Point ``last_loaded.json`` at ``loaded``: written to a temporary file of this call's own and renamed
    into place, so that workers writing at once never see or leave a partial pointer."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    info = {"name": loaded.name, "version": loaded.version, "run_id": loaded.run_id, "path": str(loaded.path)}
    fd, tmp = tempfile.mkstemp(prefix=".last_loaded.", suffix=".tmp", dir=cache_dir)
    try:
        with os.fdopen(fd, "w") as out:
            json.dump(info, out)
        os.replace(tmp, cache_dir / "last_loaded.json")
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@dataclass(frozen=True)
class Serving:
    """One immutable snapshot of what is served; swapped as a whole."""

    loaded: LoadedModel
    loaded_at: datetime


class ModelHolder:
    """Holds the served model; ``check`` loads a new champion and swaps it in one assignment.

    ``prepare`` is called with a model that loaded and scores, before it is swapped in (the threshold
    service reads, and if needed maps, the cut-offs for it there, so its first answer carries them); its
    failures are logged and do not keep the model out.
    """

    def __init__(self, source: ModelSource, prepare: Callable[[LoadedModel], object] | None = None) -> None:
        self.source = source
        self.prepare = prepare
        self.current: Serving | None = None
        self.last_error: str | None = None
        self.last_check_at: datetime | None = None
        self._lock = threading.Lock()

    def check(self) -> bool:
        """Look at the alias; load and swap when it moved. Returns True when the model changed."""
        with self._lock:
            self.last_check_at = datetime.now(UTC)
            try:
                wanted = self.source.current_version()
            except Exception as err:  # the registry is unreachable: keep serving
                self.last_error = f"could not reach the model registry: {err}"
                log.warning(self.last_error)
                return self._fall_back_to_last_known()
            if wanted is None:
                self.last_error = "no model version carries the served alias"
                return self._fall_back_to_last_known()
            if self.current is not None and self.current.loaded.version == wanted:
                self.last_error = None
                return False
            try:
                loaded = self.source.load(wanted)
                probe(loaded.model)  # refuse a model that cannot score
            except Exception as err:
                kept = self.current.loaded.version if self.current else None
                self.last_error = f"model version {wanted} failed to load and was refused ({err}); serving {kept}"
                log.error(self.last_error)
                return False
            self._prepare(loaded)
            self.current = Serving(loaded, datetime.now(UTC))
            self.last_error = None
            log.info("now serving %s version %s", loaded.name, loaded.version)
            return True

    def _fall_back_to_last_known(self) -> bool:
        if self.current is not None:
            return False
        last = getattr(self.source, "load_last_known", lambda: None)()
        if last is None:
            return False
        try:
            probe(last.model)
        except Exception as err:
            self.last_error = f"{self.last_error}; the local copy of version {last.version} cannot score ({err})"
            log.error(self.last_error)
            return False
        self._prepare(last)
        self.current = Serving(last, datetime.now(UTC))
        log.warning("serving the local copy of %s version %s", last.name, last.version)
        return True

    def _prepare(self, loaded: LoadedModel) -> None:
        if self.prepare is None:
            return
        try:
            self.prepare(loaded)
        except Exception:
            log.exception("preparing model version %s for serving failed; serving it anyway", loaded.version)


def probe(model: ScoringModel) -> None:
    """Score one made-up lead end to end, as a request is scored: proves the model scores, and compiles
    the feature kernel and the walk of the trees now (a few seconds, once per process)
    rather than in the first request."""
    as_of = datetime(2026, 1, 1, tzinfo=UTC)
    lead = LeadRecord("probe", as_of - timedelta(days=30), {}, [TouchRecord(as_of - timedelta(days=1), "web_visit")])
    model.predict_proba(build_features_at([lead], [[as_of, as_of - timedelta(days=7)]], model.spec))
