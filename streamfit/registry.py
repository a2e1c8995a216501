"""The model registry in Cassandra: versions, aliases (champion/challenger) and promotions.

Used by ``training.train`` (register, promotion gate), scoring and the HTTP server (load the
champion, ``predict``) and ``streamfit models list|show|promote|rollback``. One registry
partition per model family: the domain's ``model_name``. Artifacts are stored with skops, which does not
execute arbitrary code on load, and each carries a SHA-256 that is checked before loading.

A version row is written in one INSERT that carries the artifact, metrics and lineage, so a
crashed training leaves either a complete version or none; aliases change only afterwards.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import warnings
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from cassandra.cluster import Session

log = logging.getLogger("streamfit.registry")


class ModelIntegrityError(RuntimeError):
    """A stored artifact does not match its recorded SHA-256, or holds untrusted types."""


class ModelNotFound(LookupError):
    pass


class AliasConflict(RuntimeError):
    """An alias changed under a promotion or rollback (compare-and-set lost): another promotion
    won. Nothing was changed by this one; look at `streamfit models list` and retry."""


#: ``set_alias(expected=ANY)``: read the alias and compare-and-set against what was read.
ANY = -1


@dataclass(frozen=True)
class ModelVersion:
    version: int
    created_at: datetime
    algorithm: str
    params: dict[str, Any]
    metrics: dict[str, float]
    features: list[str]
    train_window: dict[str, str]
    lineage: dict[str, Any]
    sha256: str
    #: training reference for monitoring: feature profiles, holdout ROC/calibration curves
    reference: dict[str, Any] = field(default_factory=dict)


def skops_io() -> Any:
    """skops.io, imported with warnings off. At import it looks every scipy ufunc up in every
    loaded module; in an Airflow task each lookup on one of Airflow's deprecated-module shims
    logs a warning: 1,160 log lines and 1.5 s of every train and score task alone, 9 s under
    the test suite's load."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import skops.io as sio
    return sio


def serialize(model: Any) -> tuple[bytes, str]:
    blob = skops_io().dumps(model)
    return blob, hashlib.sha256(blob).hexdigest()


def deserialize(blob: bytes, sha256: str) -> Any:
    """Load an artifact after checking its digest; only scikit-learn/numpy/scipy types allowed."""
    sio = skops_io()
    digest = hashlib.sha256(blob).hexdigest()
    if digest != sha256:
        raise ModelIntegrityError(f"artifact digest {digest[:12]}… does not match the recorded "
                                  f"{sha256[:12]}…: the artifact was altered; refusing to load it")
    untrusted = sio.get_untrusted_types(data=blob)
    bad = [t for t in untrusted if not t.startswith(("sklearn.", "numpy.", "scipy."))]
    if bad:
        raise ModelIntegrityError(f"artifact holds types outside scikit-learn/numpy: {bad}")
    return sio.loads(blob, trusted=untrusted)


class Registry:
    def __init__(self, session: Session, keyspace: str, model: str) -> None:
        """``model``: the model family, the domain's ``model_name`` (one partition)."""
        ks = keyspace
        self.session = session
        self.model = model
        self._insert = session.prepare(
            f"INSERT INTO {ks}.model_versions (model, version, created_at, algorithm, params, "
            "metrics, features, train_window, lineage, artifact, sha256, reference, "
            "gate_artifact, gate_sha256) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) IF NOT EXISTS")
        self._versions = session.prepare(
            f"SELECT version, created_at, algorithm, params, metrics, features, train_window, "
            f"lineage, sha256, reference FROM {ks}.model_versions WHERE model = ?")
        self._artifact = session.prepare(
            f"SELECT artifact, sha256 FROM {ks}.model_versions WHERE model = ? AND version = ?")
        self._gate_artifact = session.prepare(
            f"SELECT gate_artifact, gate_sha256, artifact, sha256 FROM {ks}.model_versions "
            "WHERE model = ? AND version = ?")
        self._features_of = session.prepare(
            f"SELECT features FROM {ks}.model_versions WHERE model = ? AND version = ?")
        # Aliases change by compare-and-set only (LWT): of two racing promotions, one wins.
        self._new_alias = session.prepare(
            f"INSERT INTO {ks}.model_aliases (model, alias, version, updated_at) "
            "VALUES (?, ?, ?, ?) IF NOT EXISTS")
        self._move_alias = session.prepare(
            f"UPDATE {ks}.model_aliases SET version = ?, updated_at = ? "
            "WHERE model = ? AND alias = ? IF version = ?")
        self._aliases = session.prepare(
            f"SELECT alias, version FROM {ks}.model_aliases WHERE model = ?")
        self._decision = session.prepare(
            f"INSERT INTO {ks}.model_promotions (model, decided_at, candidate, champion, metric, "
            "candidate_score, champion_score, tolerance, promoted, reason) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")
        self._decisions = session.prepare(
            f"SELECT decided_at, candidate, champion, metric, candidate_score, champion_score, "
            f"tolerance, promoted, reason FROM {ks}.model_promotions WHERE model = ? LIMIT ?")

    def versions(self) -> list[ModelVersion]:
        return [ModelVersion(r.version, r.created_at, r.algorithm, json.loads(r.params),
                             json.loads(r.metrics), json.loads(r.features),
                             json.loads(r.train_window), json.loads(r.lineage), r.sha256,
                             json.loads(r.reference or "{}"))
                for r in self.session.execute(self._versions, (self.model,))]

    def register(self, model: Any, algorithm: str, params: dict[str, Any],
                 metrics: dict[str, float], features: list[str], train_window: dict[str, str],
                 lineage: dict[str, Any], reference: dict[str, Any] | None = None,
                 version: int | None = None, gate_model: Any = None) -> int:
        """Store a new version: the next number, claimed with a lightweight transaction, or
        ``version`` if given and still free (the naive baseline is v0). Returns the number; -1
        when the given ``version`` was taken already. ``gate_model``: the same model fitted
        without the holdout, when ``model`` (the one served) was refitted with it."""
        blob, digest = serialize(model)
        gate_blob, gate_digest = serialize(gate_model) if gate_model is not None else (None, None)
        for _attempt in range(20):
            number = version if version is not None else max(
                (v.version for v in self.versions()), default=0) + 1
            applied = self.session.execute(self._insert, (
                self.model, number, datetime.now(UTC), algorithm, json.dumps(params),
                json.dumps(metrics), json.dumps(features), json.dumps(train_window),
                json.dumps(lineage, default=str), blob, digest,
                json.dumps(reference or {}), gate_blob, gate_digest)).was_applied
            if applied:
                return number
            if version is not None:
                return -1
        raise RuntimeError("could not claim a model version number after 20 attempts")

    def load(self, version: int, holdout_free: bool = False) -> Any:
        """The artifact ``version`` serves; with ``holdout_free``, the one fitted without its
        holdout when it was refitted with it (what the promotion gate judges, the champion's as
        the candidate's). A version never refitted has one artifact: it serves both purposes."""
        row = self.session.execute(self._gate_artifact if holdout_free else self._artifact,
                                   (self.model, version)).one()
        if row is None:
            raise ModelNotFound(f"model version {version} does not exist")
        if holdout_free and row.gate_artifact is not None:
            return deserialize(row.gate_artifact, row.gate_sha256)
        return deserialize(row.artifact, row.sha256)

    def features_of(self, version: int) -> list[str]:
        """The feature list version ``version`` was trained on (one row read)."""
        row = self.session.execute(self._features_of, (self.model, version)).one()
        if row is None:
            raise ModelNotFound(f"model version {version} does not exist")
        return json.loads(row.features)  # type: ignore[no-any-return]

    def aliases(self) -> dict[str, int]:
        return {r.alias: r.version for r in self.session.execute(self._aliases,
                                                                 (self.model,))}

    def set_alias(self, alias: str, version: int, expected: int | None = ANY) -> None:
        """Point ``alias`` at ``version`` if it still points at ``expected`` (None: unset;
        ANY: whatever it points at now). Raises AliasConflict when another change won."""
        if expected == ANY:
            expected = self.aliases().get(alias)
        now = datetime.now(UTC)
        if expected is None:
            result = self.session.execute(self._new_alias, (self.model, alias, version,
                                                            now))
        else:
            result = self.session.execute(self._move_alias, (version, now, self.model,
                                                             alias, expected))
        if not result.was_applied:
            row = result.one()
            current = getattr(row, "version", None) if row is not None else None
            raise AliasConflict(
                f"the {alias} alias is v{current} now, not "
                f"{'unset' if expected is None else f'v{expected}'} as this change assumed: "
                f"another promotion won; nothing was changed (see `streamfit models list`)")

    def record_decision(self, candidate: int, champion: int | None, metric: str,
                        candidate_score: float, champion_score: float | None, tolerance: float,
                        promoted: bool, reason: str) -> None:
        self.session.execute(self._decision, (
            self.model, datetime.now(UTC), candidate, champion, metric, candidate_score,
            champion_score, tolerance, promoted, reason))

    def load_champion(self) -> tuple[int, Any] | None:
        """The champion, loaded; if its artifact fails the digest check, the champion before it
        (and so on back through the promotions), so a corrupted artifact never stops scoring.
        None when there is no champion."""
        current = self.aliases().get("champion")
        if current is None:
            return None
        order = [current]
        for d in self.decisions(200):  # newest first: who was champion before each promotion
            if (d.promoted and d.candidate == order[-1] and d.champion is not None
                    and d.champion not in order):
                order.append(d.champion)
        for version in order:
            try:
                return version, self.load(version)
            except ModelIntegrityError as exc:
                log.error(
                    "champion candidate v%d refused: %s; trying the previous champion", version,
                    exc)
        raise ModelIntegrityError(f"no champion artifact passes its digest check (tried "
                                  f"{order}); retrain (`streamfit train --force`)")

    def decisions(self, limit: int = 20) -> list[Any]:
        return list(self.session.execute(self._decisions, (self.model, limit)))

    def promote(self, version: int) -> int | None:
        """Make ``version`` the champion by hand (recorded as a decision); returns the champion
        it replaced. A corrupted artifact is refused before it can serve."""
        if version not in {v.version for v in self.versions()}:
            raise ModelNotFound(f"no model version {version}; see `streamfit models list`")
        self.load(version)
        previous = self.aliases().get("champion")
        self.set_alias("champion", version, expected=previous)
        self.record_decision(version, previous, "manual", float("nan"), None, 0.0, True,
                             "promoted by hand")
        return previous

    def rollback(self) -> tuple[int | None, int]:
        """Make the champion before the current one the champion again: (from, to)."""
        current = self.aliases().get("champion")
        earlier = [d.champion for d in self.decisions(100)
                   if d.promoted and d.candidate == current and d.champion is not None]
        if not earlier:
            raise ModelNotFound("no earlier champion to roll back to")
        self.load(earlier[0])
        self.set_alias("champion", earlier[0], expected=current)
        self.record_decision(earlier[0], current, "manual", float("nan"), None, 0.0, True,
                             f"rollback from v{current}")
        return current, earlier[0]


def predict(model: Any, frame: Any, features: list[str]) -> Any:
    """Probabilities of the positive label for the rows of ``frame`` (a DataFrame); ``features``
    is the list the model was trained on (its version's), so older versions keep working when a
    domain's feature set changes."""
    return model.predict_proba(frame.reindex(columns=features).to_numpy(dtype=float))[:, 1]


@dataclass(frozen=True)
class Champion:
    version: int
    model: Any
    features: list[str]


class ChampionCache:
    """The champion model in a long-running process (the HTTP server). ``refresh`` (blocking:
    the server runs it off the event loop every refresh period) reads the alias, one
    small row, and loads a new champion only when the alias moved; requests read ``current``,
    which never touches Cassandra and takes no lock. As batch scoring does, a champion whose
    artifact fails its digest check is refused and the champion before it serves, and
    ``status`` says so."""

    def __init__(self, registry: Registry) -> None:
        self.registry = registry
        self._lock = threading.Lock()  # one refresh at a time; readers never take it
        self._current: Champion | None = None
        self._alias: int | None = None
        self._problem: str | None = None

    @property
    def current(self) -> Champion | None:
        return self._current

    def status(self) -> dict[str, Any]:
        """What is served: the champion alias, the version serving, and why they differ."""
        serving = self._current.version if self._current else None
        return {"alias": self._alias, "serving": serving, "fallback": self._problem}

    def refresh(self) -> None:
        with self._lock:
            alias = self.registry.aliases().get("champion")
            if alias is not None and alias == self._alias and self._current is not None:
                return  # unchanged: nothing to load
            if alias is None:
                self._current, self._alias, self._problem = None, None, None
                return
            try:
                loaded = self.registry.load_champion()  # digest-checked, walking back
            except ModelIntegrityError as exc:  # not one loadable: serve nothing, say why
                self._current, self._alias, self._problem = None, alias, str(exc)
                log.error("%s", exc)
                return
            if loaded is None:  # the alias went away meanwhile
                self._current, self._alias, self._problem = None, None, None
                return
            version, model = loaded
            self._current = Champion(version, model, self.registry.features_of(version))
            self._alias = alias
            self._problem = None if version == alias else (
                f"champion v{alias}'s artifact fails its digest check; serving v{version}, the "
                f"champion before it (retrain, or `streamfit models promote`)")
            if self._problem:
                log.error("%s", self._problem)
            else:
                log.info("serving champion v%d", version)
