"""Model-quality statistics: pure functions of arrays (drift, prediction distributions, curves).

Shared by training (the reference a version carries: feature profiles, holdout ROC and
calibration) and scoring (drift of each run against that reference, realised performance).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

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

# --- drift and calibration judged on whole days -----------------------------------------------
#
# A scoring run's rows are one day (or a slice of one), and a day is narrow by nature: one
# weekday, one day's weather, the trailing rates of that day. Its PSI against weeks of training
# data is large without anything being wrong (seen: 6 of 7 ordinary April days alerted). So a
# day is compared with *days*, as NannyML compares chunks with reference chunks: each training
# day gives a few statistics per feature, their range over the training days is what ordinary
# days do, and a completed day is drift only where it leaves that range by a margin.

#: The day statistics drift is judged on, and what each one going wrong usually means.
DAY_STATS: dict[str, str] = {
    "mean": "its values moved (a unit, scale or clock change, or a real shift)",
    "missing": "its inputs stopped arriving for part of the rows",
    "top_share": "one value took over (a stuck sensor or a default filled in)",
    "segment_top_share": "one value took over where one site's rows are concerned (a stuck "
                         "sensor at that site)",
    # judged on the label's measures only (``Label.measures``), once the outcomes are known
    "p10": "nearly every entity's outcome moved, not a few far off as on a bad day (a delay "
           "or change added to all of them)",
}
#: The statistics of a label measure: its lower tenth, which a shift of every entity moves in
#: full and a bad day (some entities far off) hardly, so its band is narrow.
MEASURE_STATS = ("p10",)
#: A quantile's standard error is this many times the mean's (the 10th percentile of a normal
#: sample: sqrt(0.1 * 0.9) / phi(1.2816) = 1.71).
P10_SE = 1.71
#: A label measure's lower tenth is judged from this many known values (a day whose outcomes
#: have mostly not come in yet says little).
MEASURE_MIN = 50
#: The statistics judged on one side only: more missing values, or one value taking over, is
#: what breaks; fewer is inputs arriving or varying more, which no one needs woken for.
ONE_SIDED = {"missing", "top_share", "segment_top_share"}
#: How far past the reference days' range a day may go, as a share of that range
#: (``STREAMFIT_ALERT_DRIFT_MARGIN``): the weeks after training extend it (a season moves on),
#: and a day is judged on ~45 features at once, so only a clear exit counts. bench/alerts.py
#: measures what it gives on stable weeks and on injected faults.
WIDEN = 1.25
#: Sampling allowance, in standard errors of the day's own rows (a small day varies more).
Z = 4.0
#: The calibration bound, in standard errors of a day's outcomes and its day-to-day spread
#: (bench/alerts.py: at 4, a 20-minute shift of every arrival was caught on 2 and 0 of 7 days).
CAL_Z = 2.5
#: Shares (missing, top_share) never alert on a change smaller than this.
MIN_SHARE_CHANGE = 0.02
#: The column that says which entity date a training row belongs to (``training.train``).
DAY = "entity_date"
#: A segment (``Domain.segment``: one site's rows) counts towards ``segment_top_share`` from
#: this many present values: fewer say little about a stuck value.
SEGMENT_MIN = 50


def _top_share(finite: np.ndarray) -> float:
    return (float(np.unique(finite, return_counts=True)[1].max()) / finite.size if finite.size
            else 0.0)


def segment_top(values: np.ndarray, segments: np.ndarray) -> tuple[float, str]:
    """The largest top share within one segment's present values, and that segment (segments
    of fewer than ``SEGMENT_MIN`` present values left out; ``(nan, "")``: none qualifies).

    Why per segment: a site's sensor stuck at one value is a third of a day's rows when three
    sites share a feature, and on a fault's first day the day-ahead rows still carry real
    readings, so pooled it stays inside the training days' range; within the site it is the
    rows' majority (bench/alerts.py)."""
    v = np.asarray(values, dtype=float)
    seg = np.asarray(segments, dtype=object)
    ok = np.isfinite(v)
    best, where = float("nan"), ""
    for name in sorted({str(x) for x in seg[ok]}):
        part = v[ok & (seg == name)]
        if part.size >= SEGMENT_MIN:
            share = _top_share(part)
            if not share <= best:  # the first qualifying segment, or a larger share
                best, where = share, name
    return best, where


def day_statistics(values: np.ndarray, segments: np.ndarray | None = None,
                   measure: bool = False) -> dict[str, float]:
    """A day's ``DAY_STATS`` of one feature: the mean of the finite values, the share of rows
    missing, and the share of the values present that hold the single most common value (of
    the present ones, so that more missing values do not read as fewer stuck ones); with
    ``segments`` (each row's segment), also that share within the segment where it is largest
    (``segment_top``). ``measure``: a label measure's ``MEASURE_STATS`` instead, over the rows
    whose outcome is known (NaN below ``MEASURE_MIN`` of them)."""
    v = np.asarray(values, dtype=float)
    finite = v[np.isfinite(v)]
    if measure:
        return {"p10": float(np.quantile(finite, 0.1)) if finite.size >= MEASURE_MIN
                else float("nan")}
    n = max(v.size, 1)
    out = {"mean": float(finite.mean()) if finite.size else float("nan"),
           "missing": 1.0 - finite.size / n, "top_share": _top_share(finite)}
    if segments is not None:
        out["segment_top_share"] = segment_top(v, segments)[0]
    return out


def day_reference(frame: pd.DataFrame, names: list[str], day_column: str = DAY,
                  segment: str | None = None, measures: Iterable[str] = ()
                  ) -> dict[str, dict[str, list[float]]]:
    """Per feature, the ``[low, high]`` of each day statistic over the days of ``frame``, and
    ``sd``, the spread of its values (for the sampling allowance). ``segment``: the column
    whose values are sites (``Domain.segment``), for ``segment_top_share``. ``measures``: the
    label's measures (``Label.measures``), judged on ``MEASURE_STATS`` (days with none known
    left out: a day too recent for its outcomes)."""
    out: dict[str, dict[str, list[float]]] = {}
    days = [part for _d, part in frame.groupby(day_column)]
    use = segment if segment is not None and segment in frame else None
    judged = list(measures)
    for name in [*names, *[m for m in judged if m in frame and m not in names]]:
        stats = [day_statistics(part[name].to_numpy(dtype=float),
                                part[use].to_numpy() if use else None, name in judged)
                 for part in days]
        entry: dict[str, list[float]] = {}
        for stat in DAY_STATS:
            seen = [s[stat] for s in stats if np.isfinite(s.get(stat, np.nan))]
            if seen:
                entry[stat] = [round(min(seen), 6), round(max(seen), 6)]
        values = frame[name].to_numpy(dtype=float)
        finite = values[np.isfinite(values)]
        entry["sd"] = [round(float(finite.std()), 6) if finite.size else 0.0]
        entry["days"] = [float(len(days))]
        out[name] = entry
    return out


@dataclass(frozen=True)
class Finding:
    """One feature statistic of one day outside what the reference days allow."""

    day: str
    feature: str
    stat: str
    value: float
    low: float
    high: float
    #: ``segment_top_share``: the segment it is about, as ``column value`` (e.g. ``origin LGA``)
    where: str = ""
    #: a label measure's description (``Label.measures``), said with its name
    about: str = ""

    def words(self) -> str:
        fmt = _fmt if self.stat in ("mean", "p10") else _pct
        what = {"mean": f"mean {fmt(self.value)}", "p10": f"lower tenth {fmt(self.value)}",
                "missing": f"missing on {fmt(self.value)} of rows",
                "top_share": f"one value in {fmt(self.value)} of the rows that have one",
                "segment_top_share": f"one value in {fmt(self.value)} of the rows of "
                                     f"{self.where or 'one segment'} that have one"}
        allowed = (f"up to {fmt(self.high)}" if self.stat in ONE_SIDED
                   else f"{fmt(self.low)} to {fmt(self.high)}")
        name = f"{self.feature} ({self.about})" if self.about else self.feature
        return (f"{name} {what[self.stat]} (the training days allow {allowed}): "
                f"{DAY_STATS[self.stat]}")

    def as_dict(self) -> dict[str, object]:
        return {"day": self.day, "feature": self.feature, "stat": self.stat,
                "value": self.value, "low": self.low, "high": self.high, "where": self.where,
                "about": self.about}


def _fmt(x: float) -> str:
    return f"{x:,.2f}" if abs(x) < 100 else f"{x:,.0f}"


def _pct(x: float) -> str:
    return f"{100 * x:.0f}%" if x >= 0.01 or x == 0 else f"{100 * x:.1f}%"


def allowed(entry: dict[str, list[float]], stat: str, rows: int, widen: float = WIDEN
            ) -> tuple[float, float] | None:
    """The ``(low, high)`` a day of ``rows`` rows may show for ``stat`` (None: no reference)."""
    if stat not in entry:
        return None
    lo, hi = entry[stat]
    margin = widen * (hi - lo)
    n = max(rows, 1)
    if stat in ("mean", "p10"):
        se = entry.get("sd", [0.0])[0] / np.sqrt(n) * (P10_SE if stat == "p10" else 1.0)
        margin = max(margin, Z * se)
    else:
        p = min(max((lo + hi) / 2, 1.0 / n), 1 - 1.0 / n)
        margin = max(margin, Z * float(np.sqrt(p * (1 - p) / n)), MIN_SHARE_CHANGE)
    return lo - margin, hi + margin


def day_findings(reference: dict[str, dict[str, list[float]]], frame: pd.DataFrame,
                 day: str, widen: float = WIDEN,
                 statistics: dict[str, dict[str, float]] | None = None,
                 segment: str | None = None,
                 about: dict[str, str] | None = None) -> list[Finding]:
    """What of one completed day (``frame``: its rows at every horizon) lies outside the
    reference days, most out of range first (by how many allowed widths). ``statistics``: the
    day's ``day_statistics`` per feature, when the caller has them already; ``segment``: the
    column the reference's ``segment_top_share`` was measured within; ``about``: what each
    label measure is, said in its findings."""
    found: list[tuple[float, Finding]] = []
    seg = frame[segment].to_numpy() if segment is not None and segment in frame else None
    for name, entry in reference.items():
        if name not in frame:
            continue
        stats = (statistics[name] if statistics and name in statistics
                 else day_statistics(frame[name].to_numpy(dtype=float), seg,
                                     measure="p10" in entry))
        for stat in DAY_STATS:
            bounds = allowed(entry, stat, len(frame), widen)
            value = stats.get(stat, np.nan)
            if bounds is None or not np.isfinite(value):
                continue
            lo, hi = bounds
            if value > hi or (value < lo and stat not in ONE_SIDED):
                width = max(hi - lo, 1e-9)
                where = (f"{segment} {segment_top(frame[name].to_numpy(dtype=float), seg)[1]}"
                         if stat == "segment_top_share" and seg is not None else "")
                found.append(((lo - value if value < lo else value - hi) / width,
                              Finding(day, name, stat, round(value, 6), round(lo, 6),
                                      round(hi, 6), where, (about or {}).get(name, ""))))
    return [f for _s, f in sorted(found, key=lambda sf: -sf[0])]


def calibration_reference(days: np.ndarray, labels: np.ndarray, probabilities: np.ndarray
                          ) -> dict[str, float]:
    """How far a day's realised event rate strays from its mean prediction on the holdout
    beyond sampling: ``tau``, the between-day spread of (realised - predicted) net of the
    binomial noise of each day's size (a day's events are correlated: one storm delays many
    flights), and ``days``, how many days it was measured on."""
    frame = pd.DataFrame({"d": days, "y": labels, "p": probabilities})
    per = frame.groupby("d").agg(y=("y", "mean"), p=("p", "mean"), n=("y", "size"))
    if len(per) < 2:
        return {"tau": 0.0, "days": float(len(per))}
    gap = per["y"] - per["p"]
    noise = float((per["p"] * (1 - per["p"]) / per["n"]).mean())
    return {"tau": round(float(np.sqrt(max(gap.var(ddof=1) - noise, 0.0))), 6),
            "days": float(len(per))}


@dataclass(frozen=True)
class Gap:
    """Events an entity must have had, missing for a share of a group's entities on one day
    (for flights: a flight that arrived departed, so its departure event must be there)."""

    day: str
    event_type: str
    group: str
    missing: int
    of: int

    def words(self) -> str:
        return (f"{self.day}: {self.event_type} events missing for {self.group}: {self.missing} "
                f"of its {self.of} entities that completed have none: its producer stopped or "
                "its events are refused (`streamfit dlq list`); the features fed by them are "
                "wrong until they land")

    def as_dict(self) -> dict[str, object]:
        return {"day": self.day, "event_type": self.event_type, "group": self.group,
                "missing": self.missing, "of": self.of}


#: A group's entities lacking a required event raise a gap from this share, and this many.
GAP_SHARE, GAP_MIN = 0.05, 10


def coverage_gaps(day: str, event_type: str, completed: dict[str, set[str]],
                  seen: set[str]) -> list[Gap]:
    """``completed``: group -> the ids that completed (and so must have had ``event_type``);
    ``seen``: the ids whose ``event_type`` event landed. The groups where too many lack it."""
    out = []
    for group, ids in sorted(completed.items()):
        missing = len(ids - seen)
        if missing >= GAP_MIN and missing >= GAP_SHARE * len(ids):
            out.append(Gap(day, event_type, group, missing, len(ids)))
    return out


@dataclass(frozen=True)
class Calibration:
    """One matured day's realised event rate against its mean prediction."""

    day: str
    entities: int
    rate: float
    mean: float
    #: how far apart the two may be on a day of this size
    bound: float

    @property
    def alert(self) -> bool:
        return abs(self.rate - self.mean) > self.bound

    def words(self) -> str:
        side = "above" if self.rate > self.mean else "below"
        return (f"{self.day}: the realised event rate {self.rate:.3f} on {self.entities} matured "
                f"predictions is {abs(self.rate - self.mean):.3f} {side} their mean prediction "
                f"{self.mean:.3f} (allowed {self.bound:.3f} for a day of this size): the outcome "
                "changed or the model is miscalibrated; check the labels' source, then retrain "
                "(`streamfit train --force`)")

    def as_dict(self) -> dict[str, object]:
        return {"day": self.day, "entities": self.entities, "rate": self.rate,
                "mean": self.mean, "bound": self.bound, "alert": self.alert}


def calibration_check(reference: dict[str, float] | None, labels: np.ndarray,
                      probabilities: np.ndarray, day: str) -> Calibration | None:
    """The calibration of one matured day (None: fewer than ``MIN_MATURED`` outcomes): the
    realised event rate against the mean prediction, allowed ``CAL_Z`` standard errors of a day
    of this size plus the holdout's between-day spread (``calibration_reference``)."""
    y = np.asarray(labels, dtype=float)
    p = np.asarray(probabilities, dtype=float)
    if y.size < MIN_MATURED:
        return None
    tau = (reference or {}).get("tau", 0.0)
    rate, mean = float(y.mean()), float(p.mean())
    bound = CAL_Z * float(np.sqrt(mean * (1 - mean) / y.size + tau ** 2))
    return Calibration(day, int(y.size), round(rate, 6), round(mean, 6), round(bound, 6))


def drift_alert(findings: list[Finding]) -> str | None:
    """One alert line naming every finding of a day (None: none)."""
    if not findings:
        return None
    outcome = [f for f in findings if f.stat in MEASURE_STATS]
    drift = [f for f in findings if f.stat not in MEASURE_STATS]
    parts = []
    if outcome:
        parts.append("how the outcome came about left the range of the training days: "
                     + "; ".join(f.words() for f in outcome))
    if drift:
        features = sorted({f.feature for f in drift})
        parts.append(f"{len(features)} feature(s) left the range of the training days: "
                     + "; ".join(f.words() for f in drift))
    return f"{findings[0].day}: " + "; and ".join(parts)


def quality_alerts(holdout: dict[str, float], realised: dict[str, float] | None,
                   max_gap: float) -> list[str]:
    """What is wrong with a serving model's realised quality, in words (empty: nothing).

    ``holdout``: the version's metrics at training; ``realised``: ``performance_summary`` of its
    matured predictions. Flags a realised daily ROC AUC more than ``max_gap`` below the
    holdout's (once ``MIN_MATURED`` predictions matured)."""
    out = []
    if realised and realised.get("entities", 0) >= MIN_MATURED:
        gap = holdout.get("roc_auc", float("nan")) - realised.get("roc_auc_daily_mean", float("nan"))
        if gap > max_gap:
            out.append(f"realised ROC AUC {realised['roc_auc_daily_mean']:.3f} on "
                       f"{realised['entities']:.0f} matured predictions is {gap:.3f} below the "
                       f"holdout's {holdout['roc_auc']:.3f} (alert above {max_gap}): retrain "
                       "(`streamfit train --force`) or roll back")
    return out
