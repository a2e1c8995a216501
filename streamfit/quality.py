"""Model-quality statistics: pure functions of arrays (drift, prediction distributions, curves).

Shared by training (the reference a version carries: feature profiles, holdout ROC and
calibration) and scoring (drift of each run against that reference, realised performance).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

#: Usual reading of the population stability index.
PSI_STABLE, PSI_SHIFTED = 0.1, 0.25


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


def daily_drift(reference: dict[str, dict[str, list[float]]], frame: pd.DataFrame,
                day_column: str) -> dict[str, float]:
    """The largest PSI of any single day of ``frame`` (for a model: its holdout) per feature.

    A scoring run usually covers one day, and one day's rows are narrow by nature (one weekday,
    one day's weather, the trailing rates of that day), so their PSI against weeks of training
    data is large without anything being wrong. This is that day-to-day level, measured on days
    the model was judged on; alerts count only drift above it."""
    days = pd.to_datetime(frame[day_column], utc=True).dt.date
    worst: dict[str, float] = {}
    for _day, part in frame.groupby(days):
        for name, value in drift(reference, part).items():
            worst[name] = max(worst.get(name, 0.0), value)
    return worst


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
    return {"entities": float(y.size), "late": float(y.sum()), "mean_probability": float(p.mean()),
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


#: Matured predictions needed before realised quality is compared with the holdout figure.
MIN_MATURED = 200


def quality_alerts(holdout: dict[str, float], realised: dict[str, float] | None,
                   drift_by_feature: dict[str, float], max_gap: float, max_psi: float,
                   daily_psi: dict[str, float] | None = None) -> list[str]:
    """What is wrong with a serving model, in words (empty: nothing).

    ``holdout``: the version's metrics at training; ``realised``: ``performance_summary`` of its
    matured predictions; ``drift_by_feature``: PSI per feature of a scoring run; ``daily_psi``:
    the day-to-day PSI seen on the model's holdout (``daily_drift``). Flags a realised daily ROC
    AUC more than ``max_gap`` below the holdout's (once ``MIN_MATURED`` predictions matured) and
    features whose PSI is more than ``max_psi`` above their day-to-day level."""
    daily = daily_psi or {}
    out = []
    if realised and realised.get("entities", 0) >= MIN_MATURED:
        gap = holdout.get("roc_auc", float("nan")) - realised.get("roc_auc_daily_mean", float("nan"))
        if gap > max_gap:
            out.append(f"realised ROC AUC {realised['roc_auc_daily_mean']:.3f} on "
                       f"{realised['entities']:.0f} matured predictions is {gap:.3f} below the "
                       f"holdout's {holdout['roc_auc']:.3f} (alert above {max_gap})")
    shifted = sorted(((k, v) for k, v in drift_by_feature.items()
                      if v > max_psi + daily.get(k, 0.0)), key=lambda kv: -kv[1])
    if shifted:
        named = ", ".join(f"{k} {v:.2f}" + (f" (holdout days up to {daily[k]:.2f})"
                                            if k in daily else "") for k, v in shifted[:5])
        out.append(f"{len(shifted)} feature(s) drifted more than PSI {max_psi} past their "
                   f"day-to-day level: {named}" + (" ..." if len(shifted) > 5 else ""))
    return out
