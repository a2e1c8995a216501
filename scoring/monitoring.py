"""Model monitoring: drift of scored features, prediction distributions, realised performance.

Triggered by batch scoring (the ``score_batch`` DAG and ``streamfit score``): every scoring run
compares the features it scored with the champion's training reference (PSI per feature) and
summarises the probabilities it wrote; once arrivals land, the predictions of those dates are
scored against the real outcome. Both are stored in Cassandra (``scoring_runs``,
``model_performance``) and shown by ``streamfit models show`` and ``streamfit report``.

The statistics are pure functions of arrays; ``MonitoringStore`` is the only I/O.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from datetime import UTC, date, datetime

import numpy as np
import pandas as pd
from cassandra.cluster import Session

from training.registry import REGISTRY_PARTITION

#: Usual reading of the population stability index.
PSI_STABLE, PSI_SHIFTED = 0.1, 0.25


# --- pure statistics -----------------------------------------------------------------------

def profile(values: np.ndarray, bins: int = 10) -> dict[str, list[float]]:
    """A reference distribution small enough to store with a model: the inner quantile edges
    of the finite values, and the share of values per bin with NaNs as a last bin of their own
    (so a feature that starts going missing shows up as drift)."""
    v = np.asarray(values, dtype=float)
    finite = v[np.isfinite(v)]
    if finite.size == 0:
        return {"edges": [], "shares": [0.0, 1.0]}
    inner = np.unique(np.quantile(finite, np.linspace(0, 1, bins + 1)))[1:-1]
    return {"edges": [float(e) for e in inner], "shares": _shares(v, inner).tolist()}


def _shares(values: np.ndarray, inner: np.ndarray) -> np.ndarray:
    finite = values[np.isfinite(values)]
    counts = np.bincount(np.searchsorted(inner, finite, side="right"),
                         minlength=len(inner) + 1).astype(float)
    counts = np.append(counts, values.size - finite.size)
    return counts / max(values.size, 1)


def psi_against(reference: dict[str, list[float]], current: np.ndarray) -> float:
    """Population stability index of ``current`` against a stored ``profile``."""
    cur = np.asarray(current, dtype=float)
    if cur.size == 0:
        return 0.0
    p = np.clip(np.asarray(reference["shares"], dtype=float), 1e-6, None)
    q = np.clip(_shares(cur, np.asarray(reference["edges"], dtype=float)), 1e-6, None)
    return float(np.sum((q - p) * np.log(q / p)))


def psi(reference: np.ndarray, current: np.ndarray, bins: int = 10) -> float:
    """PSI of ``current`` against the quantile bins of ``reference``."""
    if np.asarray(reference, dtype=float).size == 0:
        return 0.0
    return psi_against(profile(reference, bins), current)


def reference_profiles(frame: pd.DataFrame, names: list[str]) -> dict[str, dict[str, list[float]]]:
    return {n: profile(frame[n].to_numpy(dtype=float)) for n in names}


def drift(reference: dict[str, dict[str, list[float]]], frame: pd.DataFrame) -> dict[str, float]:
    """PSI per feature that both the reference and the frame have."""
    return {n: round(psi_against(ref, frame[n].to_numpy(dtype=float)), 6)
            for n, ref in reference.items() if n in frame}


def prediction_summary(probabilities: np.ndarray) -> dict[str, float]:
    p = np.asarray(probabilities, dtype=float)
    if p.size == 0:
        return {"count": 0.0}
    q = np.quantile(p, [0.1, 0.5, 0.9])
    return {"count": float(p.size), "mean": float(p.mean()), "p10": float(q[0]),
            "p50": float(q[1]), "p90": float(q[2]), "share_over_0_5": float((p > 0.5).mean())}


def realised(labels: np.ndarray, probabilities: np.ndarray) -> dict[str, float]:
    """How matured predictions did: ROC AUC (NaN unless both outcomes occur) and Brier."""
    from sklearn.metrics import brier_score_loss, roc_auc_score

    y = np.asarray(labels, dtype=int)
    p = np.asarray(probabilities, dtype=float)
    auc = float(roc_auc_score(y, p)) if len(set(y.tolist())) == 2 else float("nan")
    return {"flights": float(y.size), "late": float(y.sum()), "mean_probability": float(p.mean()),
            "roc_auc": auc, "brier": float(brier_score_loss(y, p, pos_label=1))}


def roc_points(labels: np.ndarray, probabilities: np.ndarray, points: int = 60
               ) -> dict[str, list[float]]:
    """The ROC curve thinned to about ``points`` points (stored with a model for the report)."""
    from sklearn.metrics import roc_curve

    fpr, tpr, _ = roc_curve(np.asarray(labels, dtype=int), np.asarray(probabilities, dtype=float))
    keep = np.unique(np.linspace(0, len(fpr) - 1, min(points, len(fpr))).astype(int))
    return {"fpr": [round(float(x), 5) for x in fpr[keep]],
            "tpr": [round(float(x), 5) for x in tpr[keep]]}


def calibration_bins(labels: np.ndarray, probabilities: np.ndarray, bins: int = 10
                     ) -> dict[str, list[float]]:
    """Mean prediction against observed late share per probability decile (non-empty bins)."""
    y = np.asarray(labels, dtype=float)
    p = np.asarray(probabilities, dtype=float)
    idx = np.clip((p * bins).astype(int), 0, bins - 1)
    out: dict[str, list[float]] = {"predicted": [], "observed": [], "count": []}
    for b in range(bins):
        mask = idx == b
        if mask.any():
            out["predicted"].append(round(float(p[mask].mean()), 5))
            out["observed"].append(round(float(y[mask].mean()), 5))
            out["count"].append(float(mask.sum()))
    return out


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


class MonitoringStore:
    """``scoring_runs`` (one row per run, newest first) and ``model_performance`` (one row per
    model version and scheduled date; a re-evaluation overwrites it)."""

    def __init__(self, session: Session, keyspace: str) -> None:
        ks = keyspace
        self.session = session
        self._run = session.prepare(
            f"INSERT INTO {ks}.scoring_runs (model, scored_at, model_version, dates, rows, "
            "predictions, drift, max_psi) VALUES (?, ?, ?, ?, ?, ?, ?, ?)")
        self._runs = session.prepare(
            f"SELECT scored_at, model_version, dates, rows, predictions, drift, max_psi "
            f"FROM {ks}.scoring_runs WHERE model = ? LIMIT ?")
        self._perf = session.prepare(
            f"INSERT INTO {ks}.model_performance (model, model_version, sched_date, flights, "
            "late, mean_probability, roc_auc, brier, evaluated_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)")
        self._perfs = session.prepare(
            f"SELECT model_version, sched_date, flights, late, mean_probability, roc_auc, brier "
            f"FROM {ks}.model_performance WHERE model = ?")
        self._predictions = session.prepare(
            f"SELECT flight_id, probability, model_version FROM {ks}.predictions_by_date "
            "WHERE sched_date = ?")

    def record_run(self, run: ScoringRun) -> None:
        self.session.execute(self._run, (
            REGISTRY_PARTITION, run.scored_at, run.model_version, run.dates, run.rows,
            json.dumps(run.predictions), json.dumps(run.drift), run.max_psi))

    def runs(self, limit: int = 50) -> list[ScoringRun]:
        return [ScoringRun(r.scored_at, r.model_version, list(r.dates or []), r.rows,
                           json.loads(r.predictions or "{}"), json.loads(r.drift or "{}"),
                           r.max_psi)
                for r in self.session.execute(self._runs, (REGISTRY_PARTITION, limit))]

    def evaluate(self, day: date, labelled: pd.DataFrame) -> dict[int, dict[str, float]]:
        """Score the stored predictions of ``day`` against the labels in ``labelled``
        (flight_id, label); one row per model version that predicted those flights."""
        rows = list(self.session.execute(self._predictions, (day,)))
        if not rows or labelled.empty:
            return {}
        preds = pd.DataFrame({"flight_id": [r.flight_id for r in rows],
                              "probability": [r.probability for r in rows],
                              "model_version": [r.model_version for r in rows]})
        truth = labelled[labelled["label"].notna()][["flight_id", "label"]]
        joined = preds.merge(truth, on="flight_id", how="inner")
        out: dict[int, dict[str, float]] = {}
        now = datetime.now(UTC)
        for version, part in joined.groupby("model_version"):
            m = realised(part["label"].to_numpy(dtype=int), part["probability"].to_numpy())
            self.session.execute(self._perf, (
                REGISTRY_PARTITION, int(version), day, int(m["flights"]), int(m["late"]),
                m["mean_probability"], None if math.isnan(m["roc_auc"]) else m["roc_auc"],
                m["brier"], now))
            out[int(version)] = m
        return out

    def performance(self) -> pd.DataFrame:
        rows = list(self.session.execute(self._perfs, (REGISTRY_PARTITION,)))
        return pd.DataFrame([{"model_version": r.model_version,
                              "sched_date": date.fromisoformat(str(r.sched_date)),
                              "flights": r.flights, "late": r.late,
                              "mean_probability": r.mean_probability,
                              "roc_auc": r.roc_auc, "brier": r.brier} for r in rows])


def performance_summary(perf: pd.DataFrame) -> dict[int, dict[str, float]]:
    """Realised performance per model version, pooled over its matured dates (flight-weighted)."""
    out: dict[int, dict[str, float]] = {}
    if perf.empty:
        return out
    for version, part in perf.groupby("model_version"):
        n = part["flights"].sum()
        out[int(version)] = {
            "dates": float(len(part)), "flights": float(n),
            "late_share": float(part["late"].sum() / n) if n else float("nan"),
            "mean_probability": float((part["mean_probability"] * part["flights"]).sum() / n),
            "brier": float((part["brier"] * part["flights"]).sum() / n),
            "roc_auc_daily_mean": float(part["roc_auc"].dropna().mean()),
        }
    return out
