"""Model monitoring: drift of scored features, prediction distributions, realised performance.

Triggered by batch scoring (the ``score_batch`` DAG and ``streamfit score``): every scoring run
compares the features it scored with the champion's training reference (PSI per feature) and
summarises the probabilities it wrote; once arrivals land, the predictions of those dates are
scored against the real outcome. Both are stored in Cassandra (``scoring_runs``,
``model_performance``) and shown by ``streamfit models show``, ``GET /models/{version}`` (both
through ``version_health``) and ``streamfit report``.

The statistics are the pure functions of ``streamfit.quality``; ``MonitoringStore`` is the I/O.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

import pandas as pd
from cassandra.cluster import Session

from scoring.predictions import SELECT_DAY_ALL
from streamfit.domains import EVENT_TIME
from streamfit.quality import (
    PSI_SHIFTED,
    PSI_STABLE,
    WIDEN,
    Calibration,
    Finding,
    Gap,
    calibration_check,
    day_findings,
    day_statistics,
    drift,
    drift_alert,
    prediction_summary,
    quality_alerts,
    realised,
)
from streamfit.registry import ModelVersion, Registry
from streamfit.settings import Settings

__all__ = ["PSI_SHIFTED", "PSI_STABLE", "DayCheck", "MonitoringStore", "ScoringRun",
           "VersionHealth", "check_day", "complete", "drift", "performance_summary",
           "prediction_summary", "version_health"]


# --- judging a completed day ----------------------------------------------------------------

@dataclass(frozen=True)
class DayCheck:
    """A completed day judged against the serving version's training days: the feature
    statistics outside their range, and the realised event rate against the mean prediction."""

    day: str
    rows: int
    findings: list[Finding]
    calibration: Calibration | None
    #: every feature's day statistics ({feature: {stat: value}}), for the report's charts
    stats: dict[str, dict[str, float]] = field(default_factory=dict)
    #: events the day's entities must have had that never landed (``Domain.gaps``)
    gaps: list[Gap] = field(default_factory=list)

    def alerts(self) -> list[str]:
        out = [g.words() for g in self.gaps]
        out += [a for a in [drift_alert(self.findings)] if a]
        if self.calibration is not None and self.calibration.alert:
            out.append(self.calibration.words())
        return out

    def as_dict(self) -> dict[str, object]:
        return {"day": self.day, "rows": self.rows,
                "findings": [f.as_dict() for f in self.findings],
                "calibration": self.calibration.as_dict() if self.calibration else None,
                "stats": self.stats, "gaps": [g.as_dict() for g in self.gaps]}

    @classmethod
    def of(cls, d: dict[str, Any]) -> DayCheck:
        cal = d.get("calibration")
        return cls(d["day"], int(d["rows"]), [Finding(**f) for f in d.get("findings", [])],
                   Calibration(**{k: v for k, v in cal.items() if k != "alert"}) if cal else None,
                   d.get("stats", {}), [Gap(**g) for g in d.get("gaps", [])])


def complete(frame: pd.DataFrame, as_of: datetime | None) -> bool:
    """Whether a day's features are final at ``as_of`` (None: a past day scored on request):
    every entity's event time has passed, so no row of it changes any more."""
    if frame.empty:
        return False
    return as_of is None or pd.to_datetime(frame[EVENT_TIME], utc=True).max() <= pd.Timestamp(as_of)


def check_day(reference: dict[str, Any], day: date, frame: pd.DataFrame,
              matured: pd.DataFrame | None, margin: float = WIDEN,
              gaps: list[Gap] | None = None) -> DayCheck:
    """Judge a completed day: ``frame`` is its feature rows at every horizon (as the training
    days of ``reference`` were), ``matured`` the served predictions joined with their outcomes
    (columns label, probability; None or empty: none yet)."""
    days = reference.get("days", {})
    segment = reference.get("segment")
    seg = frame[segment].to_numpy() if segment and segment in frame else None
    # computed once: judged here, and stored for the report's charts
    raw = {name: day_statistics(frame[name].to_numpy(dtype=float), seg, "p10" in days[name])
           for name in days if name in frame}
    findings = day_findings(days, frame, day.isoformat(), margin, raw,
                            segment if seg is not None else None, reference.get("measures"))
    stats = {name: {k: round(v, 6) for k, v in values.items() if v == v}
             for name, values in raw.items()}
    cal = None
    if matured is not None and not matured.empty:
        cal = calibration_check(reference.get("calibration"), matured["label"].to_numpy(),
                                matured["probability"].to_numpy(), day.isoformat())
    return DayCheck(day.isoformat(), len(frame), findings, cal, stats, gaps or [])


# --- storage -------------------------------------------------------------------------------

@dataclass(frozen=True)
class ScoringRun:
    scored_at: datetime
    model_version: int
    dates: list[str]
    rows: int
    predictions: dict[str, float]
    drift: dict[str, float]
    max_psi: float
    #: the completed days this run judged (``DayCheck``)
    checks: list[DayCheck] = field(default_factory=list)


class MonitoringStore:
    """``scoring_runs`` (one row per run, newest first) and ``model_performance`` (one row per
    model version and scheduled date; a re-evaluation overwrites it)."""

    def __init__(self, session: Session, keyspace: str, model: str) -> None:
        """``model``: the registry's model family (the domain's ``model_name``)."""
        ks = keyspace
        self.session = session
        self.model = model
        self._run = session.prepare(
            f"INSERT INTO {ks}.scoring_runs (model, scored_at, model_version, dates, rows, "
            "predictions, drift, max_psi, checks) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)")
        self._runs = session.prepare(
            f"SELECT scored_at, model_version, dates, rows, predictions, drift, max_psi, checks "
            f"FROM {ks}.scoring_runs WHERE model = ? LIMIT ?")
        self._last_run = session.prepare(
            f"SELECT scored_at FROM {ks}.scoring_runs WHERE model = ? LIMIT 1")
        self._perf = session.prepare(
            f"INSERT INTO {ks}.model_performance (model, model_version, day, entities, "
            "late, mean_probability, roc_auc, brier, evaluated_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)")
        self._perfs = session.prepare(
            f"SELECT model_version, day, entities, late, mean_probability, roc_auc, brier "
            f"FROM {ks}.model_performance WHERE model = ?")
        self._predictions = session.prepare(SELECT_DAY_ALL.format(ks=ks))
        self._judged = session.prepare(
            f"SELECT day, built_at FROM {ks}.judged_days WHERE model = ? AND model_version = ?")
        self._judge = session.prepare(
            f"INSERT INTO {ks}.judged_days (model, model_version, day, built_at, judged_at) "
            "VALUES (?, ?, ?, ?, ?)")

    def record_run(self, run: ScoringRun) -> None:
        self.session.execute(self._run, (
            self.model, run.scored_at, run.model_version, run.dates, run.rows,
            json.dumps(run.predictions), json.dumps(run.drift), run.max_psi,
            json.dumps([c.as_dict() for c in run.checks])))

    def judged(self, version: int) -> dict[date, datetime | None]:
        """The completed days ``version`` has judged, with the feature build each was judged
        on (``built_at`` of its partition): judging the same build again finds nothing new."""
        return {date.fromisoformat(str(r.day)): r.built_at
                for r in self.session.execute(self._judged, (self.model, version))}

    def mark_judged(self, version: int, day: date, built_at: datetime | None) -> None:
        self.session.execute(self._judge, (self.model, version, day, built_at,
                                           datetime.now(UTC)))

    def last_run_at(self) -> datetime | None:
        """When the newest scoring run finished writing (one row read; the API clears its
        cache of predictions when this moves)."""
        row = self.session.execute(self._last_run, (self.model,)).one()
        return row.scored_at if row is not None else None

    def runs(self, limit: int = 50) -> list[ScoringRun]:
        return [ScoringRun(r.scored_at, r.model_version, list(r.dates or []), r.rows,
                           json.loads(r.predictions or "{}"), json.loads(r.drift or "{}"),
                           r.max_psi, [DayCheck.of(c) for c in json.loads(r.checks or "[]")])
                for r in self.session.execute(self._runs, (self.model, limit))]

    def matured(self, day: date, labelled: pd.DataFrame) -> pd.DataFrame:
        """The stored predictions of ``day`` whose outcome is in ``labelled`` (entity_id, label):
        each entity's freshest prediction per model version (what a reader was served last),
        with columns entity_id, model_version, probability, label."""
        rows = list(self.session.execute(self._predictions, (day,)))
        if not rows or labelled.empty:
            return pd.DataFrame()
        preds = pd.DataFrame({"entity_id": [r.entity_id for r in rows],
                              "horizon_min": [r.horizon_min for r in rows],
                              "probability": [r.probability for r in rows],
                              "model_version": [r.model_version for r in rows]})
        preds = preds.sort_values("horizon_min").drop_duplicates(
            ["entity_id", "model_version"], keep="first")
        truth = labelled[labelled["label"].notna()][["entity_id", "label"]].drop_duplicates(
            "entity_id")
        return preds.merge(truth, on="entity_id", how="inner")

    def evaluate(self, day: date, joined: pd.DataFrame) -> dict[int, dict[str, float]]:
        """Score ``matured(day, ...)`` per model version and store it (one row per version and
        day; a re-evaluation overwrites it)."""
        out: dict[int, dict[str, float]] = {}
        if joined.empty:
            return out
        now = datetime.now(UTC)
        for version, part in joined.groupby("model_version"):
            m = realised(part["label"].to_numpy(dtype=int), part["probability"].to_numpy())
            self.session.execute(self._perf, (
                self.model, int(version), day, int(m["entities"]), int(m["late"]),
                m["mean_probability"], None if math.isnan(m["roc_auc"]) else m["roc_auc"],
                m["brier"], now))
            out[int(version)] = m
        return out

    def performance(self) -> pd.DataFrame:
        rows = list(self.session.execute(self._perfs, (self.model,)))
        return pd.DataFrame([{"model_version": r.model_version,
                              "day": date.fromisoformat(str(r.day)),
                              "entities": r.entities, "late": r.late,
                              "mean_probability": r.mean_probability,
                              "roc_auc": r.roc_auc, "brier": r.brier} for r in rows])


def shifted_features(run: ScoringRun) -> list[str]:
    """The features the days judged by a scoring run found out of range, most out first."""
    seen: dict[str, None] = {}
    for check in run.checks:
        for f in check.findings:
            seen.setdefault(f.feature)
    return list(seen)


@dataclass(frozen=True)
class VersionHealth:
    """One model version as it serves: its latest scoring runs, how its matured predictions
    did, and what is wrong with it (``streamfit models show``, ``GET /models/{version}``)."""

    version: ModelVersion
    #: its latest scoring runs, newest first
    runs: list[ScoringRun]
    #: ``performance_summary`` of its matured predictions (None: none matured yet)
    realised: dict[str, float] | None
    #: ``quality_alerts`` against its holdout, and the alerts of the days its newest run judged
    alerts: list[str]

    def as_dict(self) -> dict[str, object]:
        v = self.version
        return {"version": v.version, "algorithm": v.algorithm, "params": v.params,
                "metrics": v.metrics, "train_window": v.train_window, "lineage": v.lineage,
                "sha256": v.sha256, "created_at": v.created_at.isoformat(),
                "runs": [{"scored_at": r.scored_at.isoformat(), "dates": r.dates, "rows": r.rows,
                          "mean_probability": r.predictions.get("mean"), "max_psi": r.max_psi,
                          "shifted_features": shifted_features(r),
                          "checks": [c.as_dict() for c in r.checks]} for r in self.runs],
                "realised": self.realised, "alerts": self.alerts}


def version_health(registry: Registry, monitor: MonitoringStore, s: Settings,
                   version: int | None = None, runs: int = 5) -> VersionHealth | None:
    """``version`` (default: the champion) with its latest ``runs`` scoring runs; None when
    there is no such version. The stores are the caller's (the API keeps its own, prepared
    once)."""
    wanted = version if version is not None else registry.aliases().get("champion")
    found = next((v for v in registry.versions() if v.version == wanted), None)
    if found is None:
        return None
    mine = [r for r in monitor.runs(200) if r.model_version == found.version][:runs]
    summary = performance_summary(monitor.performance()).get(found.version)
    judged = next((r for r in mine if r.checks), None)
    alerts = quality_alerts(found.metrics, summary, s.alert_quality_gap) + [
        a for c in (judged.checks if judged else []) for a in c.alerts()]
    return VersionHealth(found, mine, summary, alerts)


def performance_summary(perf: pd.DataFrame) -> dict[int, dict[str, float]]:
    """Realised performance per model version, pooled over its matured dates (flight-weighted)."""
    out: dict[int, dict[str, float]] = {}
    if perf.empty:
        return out
    for version, part in perf.groupby("model_version"):
        n = part["entities"].sum()
        out[int(version)] = {
            "dates": float(len(part)), "entities": float(n),
            "late_share": float(part["late"].sum() / n) if n else float("nan"),
            "mean_probability": float((part["mean_probability"] * part["entities"]).sum() / n),
            "brier": float((part["brier"] * part["entities"]).sum() / n),
            "roc_auc_daily_mean": float(part["roc_auc"].dropna().mean()),
        }
    return out
