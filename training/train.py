"""Train the domain's model and promote it only if it beats the champion: ``streamfit train``.

Triggered by the ``train_model`` DAG (scheduled on the ``features`` asset) or the CLI. Steps:

1. training set: labelled rows of the feature tables over ``STREAMFIT_TRAIN_DAYS`` entity dates
   ending at the newest labelled date, at every prediction horizon (one model for all of them,
   the horizon being one of its inputs: each row is built as of the offset serving uses);
   skipped (and logged) when fewer than ``STREAMFIT_MIN_NEW_ROWS`` labelled rows are newer than
   the champion's window;
2. time-based split: the last ``STREAMFIT_HOLDOUT_DAYS`` days are the holdout;
3. candidates chosen by time-series cross-validation on the rest: a HistGradientBoostingClassifier
   (small grid) against a logistic-regression baseline;
4. metrics on the holdout (ROC AUC, PR AUC, log loss, Brier, calibration error) next to the naive
   baseline, the domain's naive feature (for flights, the route's trailing delay rate);
5. refit the chosen model on the whole window, holdout included (``STREAMFIT_REFIT_WITH_HOLDOUT``,
   on by default): the weeks after the window are closer to its last days than to any other, so
   the served fit learns from them too. The holdout-judged fit is stored beside it;
6. register the version; the gate compares it with the champion on the same fresh holdout, each
   by its holdout-free fit. Both served fits are those fits plus their own holdout days, so the
   gate compares the served fits' recipes shifted back by the holdout: judging the champion by
   its served fit instead would pit a refit against a fit without its last days (and, when both
   windows start before the data, against the same rows: an exact tie every week).

The floor (``STREAMFIT_PROMOTION_BEAT_NAIVE``, on by default): the first training also registers
the naive baseline as **v0**, a logistic calibration of the domain's naive feature (so it ranks
exactly as that feature does), and makes it the champion. A trained model then has to beat the
champion *and* the naive baseline on the same holdout (the baseline at every horizon), so no
model worse than naive is served, the first one included. With the floor off, the first trained
model is always promoted.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

import numpy as np
import pandas as pd
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import average_precision_score, brier_score_loss, log_loss, roc_auc_score
from sklearn.model_selection import TimeSeriesSplit
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from streamfit.domains import ENTITY_ID, EVENT_TIME, HORIZON
from streamfit.quality import DAY
from streamfit.registry import predict
from streamfit.workspace import Workspace

log = logging.getLogger("streamfit.training")

HIGHER_IS_BETTER = {"roc_auc": True, "pr_auc": True, "log_loss": False, "brier": False}
HGB_GRID = [
    {"learning_rate": 0.1, "max_leaf_nodes": 15, "max_iter": 150},
    {"learning_rate": 0.05, "max_leaf_nodes": 31, "max_iter": 250},
    # regularised: leaves of 200+ flights generalise to the weeks after the window better
    {"learning_rate": 0.05, "max_leaf_nodes": 15, "max_iter": 200, "min_samples_leaf": 200,
     "l2_regularization": 1.0},
]


@dataclass
class TrainResult:
    status: str  # "skipped" | "registered"
    reason: str
    version: int | None = None
    promoted: bool = False
    metrics: dict[str, float] = field(default_factory=dict)
    champion: int | None = None


def calibration_error(y: np.ndarray, p: np.ndarray, bins: int = 10) -> float:
    """Expected calibration error: |observed rate - mean prediction| weighted over bins."""
    edges = np.linspace(0, 1, bins + 1)
    idx = np.clip(np.digitize(p, edges) - 1, 0, bins - 1)
    total = 0.0
    for b in range(bins):
        mask = idx == b
        if mask.any():
            total += mask.mean() * abs(y[mask].mean() - p[mask].mean())
    return float(total)


def score(y: np.ndarray, p: np.ndarray) -> dict[str, float]:
    p = np.clip(p, 1e-6, 1 - 1e-6)
    return {"roc_auc": float(roc_auc_score(y, p)), "pr_auc": float(average_precision_score(y, p)),
            "log_loss": float(log_loss(y, p, labels=[0, 1])), "brier": float(brier_score_loss(y, p)),
            "calibration_error": calibration_error(y, p)}


def time_split(frame: pd.DataFrame, holdout_days: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(training rows, holdout rows: the last ``holdout_days`` days), each in one order that does
    not depend on how the rows were read: by time, then entity and horizon. The fit depends on
    row order (time-ordered CV folds, and the early-stopping split HistGradientBoosting draws
    past 10,000 rows), so the same rows read in another order (Cassandra's token order, a
    backtest's, Spark's) train the same model."""
    keys = [EVENT_TIME, *(c for c in (ENTITY_ID, HORIZON) if c in frame)]
    frame = frame.sort_values(keys, kind="stable").reset_index(drop=True)
    when = pd.to_datetime(frame[EVENT_TIME], utc=True)
    cut = when.max().normalize() - pd.Timedelta(days=holdout_days - 1)
    return frame[when < cut], frame[when >= cut]


def candidates() -> list[tuple[str, dict[str, Any], Any]]:
    out: list[tuple[str, dict[str, Any], Any]] = [
        ("HistGradientBoostingClassifier", params,
         HistGradientBoostingClassifier(random_state=0, **params)) for params in HGB_GRID]
    out.append(("LogisticRegression", {"C": 1.0},
                make_pipeline(SimpleImputer(strategy="median"), StandardScaler(),
                              LogisticRegression(C=1.0, max_iter=500))))
    return out


def fittable(x: np.ndarray) -> np.ndarray:
    """``x`` with its columns that are missing on every row set to 0: HistGradientBoosting
    cannot bin a column without one known value (ValueError from its binner), and a young
    stream has such columns (the mean delays before any arrival of that flight landed). At
    prediction a missing value goes down the larger branch, as for any value it never saw."""
    empty = np.isnan(x).all(axis=0)
    if not empty.any():
        return x
    x = x.copy()
    x[:, empty] = 0.0
    return x


@contextmanager
def fit_threads(threads: int) -> Iterator[None]:
    """Fits inside use at most ``threads`` OpenMP and BLAS threads (``STREAMFIT_TRAIN_THREADS``;
    0: no limit). On cores shared with the services, a fit's OpenMP team spin-waits for its
    slowest thread: one thread fits several times faster there, and to the same model
    (HistGradientBoosting builds each feature's histogram in one thread)."""
    if threads <= 0:
        yield
        return
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=threads):
        yield


def choose(train: pd.DataFrame, features: list[str], folds: int = 3, pool: Any = None,
           threads: int = 0) -> tuple[str, dict[str, Any], Any, float]:
    """Pick the candidate with the best mean ROC AUC over time-ordered CV folds; refit on all.
    Every fit uses at most ``threads`` threads (``fit_threads``)."""
    x = train[features].to_numpy(dtype=float)
    y = train["label"].to_numpy(dtype=int)
    best: tuple[str, dict[str, Any], Any, float] | None = None
    with fit_threads(threads):
        for name, params, model in (pool or candidates)():
            aucs = []
            for fit_idx, val_idx in TimeSeriesSplit(n_splits=folds).split(x):
                if len(set(y[val_idx])) < 2:
                    continue
                model.fit(fittable(x[fit_idx]), y[fit_idx])
                aucs.append(roc_auc_score(y[val_idx], model.predict_proba(x[val_idx])[:, 1]))
            cv = float(np.mean(aucs)) if aucs else float("nan")
            log.info("candidate %s %s: CV ROC AUC %.4f", name, params, cv)
            if best is None or cv > best[3]:
                best = (name, params, model, cv)
        assert best is not None
        name, params, model, cv = best
        model.fit(fittable(x), y)
    return name, params, model, cv


def refit(model: Any, frames: list[pd.DataFrame], features: list[str], threads: int = 0) -> Any:
    """A fresh copy of the chosen ``model`` (same parameters), fitted on all rows of ``frames``:
    the served fit, once the holdout has judged ``model``. At most ``threads`` threads."""
    from sklearn.base import clone

    rows = pd.concat(frames, ignore_index=True)
    with fit_threads(threads):
        return clone(model).fit(fittable(rows[features].to_numpy(dtype=float)),
                                rows["label"].to_numpy(dtype=int))


def naive_metrics(y: np.ndarray, frame: pd.DataFrame, naive: str) -> dict[str, float]:
    """``score`` of the naive feature itself on ``frame``'s rows, keys prefixed ``naive_``."""
    return {f"naive_{k}": v for k, v in score(y, frame[naive].to_numpy(dtype=float)).items()}


def horizon_metrics(y: np.ndarray, p: np.ndarray, frame: pd.DataFrame,
                    naive: str) -> dict[str, float]:
    """The model's and the naive feature's metrics on each horizon's rows of ``frame``, keys
    suffixed ``_h<minutes>`` (``roc_auc_h120``, ``naive_roc_auc_h120``)."""
    out: dict[str, float] = {}
    horizons = frame[HORIZON].to_numpy()
    for minutes in sorted(set(horizons.tolist())):
        rows = horizons == minutes
        if len(set(y[rows].tolist())) < 2:
            continue
        own = {**score(y[rows], p[rows]), **naive_metrics(y[rows], frame[rows], naive)}
        out.update({f"{k}_h{int(minutes)}": v for k, v in own.items()})
    return out


def holdout_metrics(y: np.ndarray, p: np.ndarray, holdout: pd.DataFrame,
                    naive: str) -> dict[str, float]:
    """What the gate reads of predictions ``p`` on ``holdout``: the model's and the naive
    feature's metrics over all rows and on each horizon's rows."""
    return {**score(y, p), **naive_metrics(y, holdout, naive),
            **horizon_metrics(y, p, holdout, naive)}


def below_floor(metrics: dict[str, float], metric: str) -> str | None:
    """Why a model's per-horizon holdout metrics do not beat the naive baseline at every
    horizon (None: they do)."""
    for key in sorted(k for k in metrics if k.startswith(f"{metric}_h")):
        beats, why = gate(metric, metrics[key], None, 0.0, metrics.get(f"naive_{key}"))
        if not beats:
            return f"{key.removeprefix(metric + '_h')} min before: {why}"
    return None


def gate(metric: str, candidate: float, champion: float | None, tolerance: float,
         baseline: float | None = None) -> tuple[bool, str]:
    """Promote only when the candidate beats the champion by more than ``tolerance`` and, when a
    ``baseline`` is given (STREAMFIT_PROMOTION_BEAT_NAIVE), also beats that."""
    def margin(other: float) -> float:
        return candidate - other if HIGHER_IS_BETTER[metric] else other - candidate

    if baseline is not None and margin(baseline) <= 0:
        return False, (f"{metric} {candidate:.4f} does not beat the naive baseline "
                       f"{baseline:.4f}")
    if champion is None:
        return True, "no champion yet"
    better = margin(champion)
    if better > tolerance:
        return True, f"{metric} {candidate:.4f} beats champion {champion:.4f} by {better:.4f}"
    return False, (f"{metric} {candidate:.4f} does not beat champion {champion:.4f} by more "
                   f"than {tolerance}")


def decide(settings: Any, metrics: dict[str, float], champion: float | None) -> tuple[bool, str]:
    """Whether a candidate with these holdout ``metrics`` is promoted, and why: it beats the
    ``champion``'s score on the same holdout (None: there is no champion) by more than
    ``STREAMFIT_PROMOTION_TOLERANCE`` and, under ``STREAMFIT_PROMOTION_BEAT_NAIVE``, the naive
    baseline, over all rows and at every horizon."""
    metric = settings.promotion_metric
    floor = settings.promotion_beat_naive
    promoted, reason = gate(metric, metrics[metric], champion, settings.promotion_tolerance,
                            metrics[f"naive_{metric}"] if floor else None)
    short = below_floor(metrics, metric) if floor else None
    return (False, short) if promoted and short else (promoted, reason)


#: The naive baseline's registry version.
BASELINE_VERSION = 0


def baseline_model(train: pd.DataFrame, naive: str) -> Any:
    """The naive baseline as a model: the naive feature, calibrated by a one-feature logistic
    regression on the training rows (monotone, so its ROC AUC is the feature's own)."""
    model = make_pipeline(SimpleImputer(strategy="median"), LogisticRegression(C=1e6))
    return model.fit(train[[naive]].to_numpy(dtype=float), train["label"].to_numpy(dtype=int))


def window_dates(end: date, days: int) -> list[date]:
    return [end - timedelta(days=i) for i in range(days - 1, -1, -1)]


def load_window(store: Any, dates: list[date], labelled_only: bool = True) -> pd.DataFrame:
    """The feature rows of ``dates`` (only the labelled ones, as ints, unless told), each with
    its entity date (``DAY``): monitoring's reference is made of whole days."""
    frames = [store.read_day(d).assign(**{DAY: d}) for d in dates]
    frames = [f for f in frames if not f.empty]
    if not frames:
        return pd.DataFrame()
    frame = pd.concat(frames, ignore_index=True)
    return labelled_rows(frame) if labelled_only else frame


def labelled_rows(frame: pd.DataFrame) -> pd.DataFrame:
    return frame[frame["label"].notna()].assign(label=lambda f: f["label"].astype(int))


def lineage_of(partitions: pd.DataFrame, dates: list[date]) -> dict[str, Any]:
    """Kafka offset ranges of the ingest batches that fed these feature dates."""
    from streamfit.progress import merge_offsets

    rows = partitions[partitions["day"].isin(dates)] if len(partitions) else partitions
    merged = merge_offsets(rows["sources"] if len(rows) else [])
    return {"kafka_offsets": merged, "feature_dates": [d.isoformat() for d in dates]}


def training_key(settings: Any, partitions: pd.DataFrame, dates: list[date],
                 features: list[str], custom_pool: bool) -> str:
    """Identity of a training run: the window, the feature data in it (entities and labels per
    date), the feature set and the code's settings. Equal keys give the same model."""
    import hashlib
    import json
    from importlib.metadata import version

    rows = partitions[partitions["day"].isin(dates)] if len(partitions) else partitions
    data = sorted((str(r.day), int(r.entities), int(r.labelled))
                  for r in rows.itertuples(index=False)) if len(rows) else []
    identity = {"window": [dates[0].isoformat(), dates[-1].isoformat()], "data": data,
                "features": features, "grid": HGB_GRID, "custom_pool": custom_pool,
                "holdout_days": settings.holdout_days, "code": version("streamfit"),
                "refit_with_holdout": settings.refit_with_holdout}
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:24]


def reference_of(train: pd.DataFrame, features: list[str], y_holdout: np.ndarray,
                 p_holdout: np.ndarray, holdout: pd.DataFrame,
                 days: pd.DataFrame | None = None,
                 segment: str | None = None,
                 measures: Mapping[str, str] | None = None) -> dict[str, Any]:
    """What monitoring compares later days with: the training distribution of every feature
    (PSI, for the report), the range of each feature's day statistics over the window's days
    (drift alerts), the holdout's between-day calibration spread (calibration alerts), and
    the holdout's ROC curve, calibration and prediction distribution (for the report).
    ``days``: every row of the window's days, labelled or not (default: train and holdout);
    ``segment``: the domain's site column (``Domain.segment``), whose name the reference
    keeps so that scoring judges each feature within each site too; ``measures``: the label's
    measures (``Label.measures``: name -> what it is), whose lower tenth per day scoring
    judges too."""
    from streamfit.quality import (
        calibration_bins,
        calibration_reference,
        day_reference,
        prediction_summary,
        reference_profiles,
        roc_points,
    )

    # the horizon is an input, not a measurement: each run's mix of horizons is its own
    names = [f for f in features if f != HORIZON]
    profiles = reference_profiles(train, names)
    return {"features": profiles,
            "days": day_reference(pd.concat([train, holdout], ignore_index=True)
                                  if days is None else days, names, DAY, segment,
                                  list(measures or {})),
            "segment": segment, "measures": dict(measures or {}),
            "calibration": calibration_reference(holdout[DAY].to_numpy(), y_holdout, p_holdout),
            "holdout": {"roc": roc_points(y_holdout, p_holdout),
                        "calibration": calibration_bins(y_holdout, p_holdout),
                        "predictions": prediction_summary(p_holdout)}}


def window_of(dates: list[date], end: date, holdout: pd.DataFrame,
              frame: pd.DataFrame | None = None) -> dict[str, str]:
    """The training window: its first day with data (a window reaching back before the data
    starts begins where the data does), its last day, and where its holdout starts."""
    first = (min(frame[DAY]) if frame is not None and DAY in frame and len(frame)
             else dates[0])
    return {"start": first.isoformat(), "end": end.isoformat(),
            "holdout_start": str(pd.to_datetime(holdout[EVENT_TIME], utc=True).min().date())}


def _register_baseline(registry: Any, naive: str, train: pd.DataFrame, holdout: pd.DataFrame,
                       window: dict[str, str], parts: pd.DataFrame, dates: list[date],
                       metric: str, tolerance: float, champion: int | None,
                       days: pd.DataFrame | None = None, segment: str | None = None,
                       measures: Mapping[str, str] | None = None) -> int | None:
    """Register the naive baseline as v0 and, when there is no champion yet, make it the
    champion (recorded as a decision). Returns the champion after that."""
    from streamfit.registry import AliasConflict

    model = baseline_model(train, naive)
    y = holdout["label"].to_numpy(dtype=int)
    p = predict(model, holdout, [naive])
    metrics = score(y, p)
    metrics.update(naive_metrics(y, holdout, naive))
    metrics.update({"train_rows": float(len(train)), "holdout_rows": float(len(holdout))})
    registered = registry.register(model, "NaiveBaseline", {"feature": naive}, metrics, [naive],
                                   window, lineage_of(parts, dates),
                                   reference_of(train, [naive], y, p, holdout, days,
                                                segment, measures),
                                   version=BASELINE_VERSION)
    if registered != BASELINE_VERSION or champion is not None:
        return champion  # a concurrent training registered it, or a champion exists already
    try:
        registry.set_alias("champion", BASELINE_VERSION, expected=None)
    except AliasConflict:
        return registry.aliases().get("champion")  # a concurrent training promoted first
    registry.record_decision(BASELINE_VERSION, None, metric, metrics[metric], None, tolerance,
                             True, f"the naive baseline ({naive}): the floor under every champion")
    log.info("v0 (naive baseline, %s): %s %.4f on the holdout", naive, metric, metrics[metric])
    return BASELINE_VERSION


def train_and_maybe_promote(ws: Workspace, end: date | None = None, force: bool = False,
                            pool: Any = None) -> TrainResult:
    """The whole training step (DAG task and CLI). Returns what happened, never half-registers."""
    settings, domain = ws.settings, ws.domain
    features = domain.features.inputs
    store = ws.feature_store()
    registry = ws.registry
    parts = store.partitions()
    labelled = parts[parts["labelled"] > 0] if len(parts) else parts
    if labelled.empty:
        return TrainResult("skipped", "no labelled features yet")
    end = end or max(labelled["day"])
    dates = window_dates(end, settings.train_days)
    aliases = registry.aliases()
    champion = aliases.get("champion")
    versions = {v.version: v for v in registry.versions()}
    if champion is not None and not force:
        last_end = date.fromisoformat(versions[champion].train_window["end"])
        new_rows = int(labelled[labelled["day"] > last_end]["labelled"].sum())
        if new_rows < settings.min_new_rows:
            reason = (f"only {new_rows} new labelled {domain.entity.name}s since the champion's window "
                      f"(ends {last_end}); need {settings.min_new_rows}")
            log.info("retrain skipped: %s", reason)
            return TrainResult("skipped", reason, champion=champion)
    # every row of the window's days, for monitoring: a day is later judged whole (its
    # cancelled flights too, which have no label), so it is compared with whole days
    days = load_window(store, dates, labelled_only=False)
    frame = labelled_rows(days) if len(days) else days
    train, holdout = time_split(frame, settings.holdout_days)
    if len(train) < 200 or holdout["label"].nunique() < 2:
        return TrainResult("skipped", f"too little data: {len(train)} training rows, "
                           f"{len(holdout)} holdout rows", champion=champion)
    y = holdout["label"].to_numpy(dtype=int)
    window = window_of(dates, end, holdout, frame)
    key = training_key(settings, parts, dates, features, pool is not None)
    # --force trains anew on purpose; otherwise a twin of a registered version is not made
    existing = None if force else next((v for v in versions.values()
                                        if v.lineage.get("training_key") == key), None)
    if existing is not None:
        # A retried task (or a second run) on the same window, data and code: judge the
        # version already registered again instead of registering a twin.
        if existing.version == champion:
            return TrainResult("skipped", f"v{champion} was trained on this window and "
                               "code and is the champion", champion=champion)
        version, name, metrics = existing.version, existing.algorithm, existing.metrics
        log.info("v%d was trained on this window and code: judging it again", version)
    else:
        threads = settings.train_threads
        name, params, model, cv = choose(train, features, pool=pool, threads=threads)
        p_holdout = predict(model, holdout, features)
        served, judged = ((refit(model, [train, holdout], features, threads), model)
                          if settings.refit_with_holdout else (model, None))
        metrics = holdout_metrics(y, p_holdout, holdout, domain.features.naive)
        metrics.update({"cv_roc_auc": cv, "train_rows": float(len(train)),
                        "holdout_rows": float(len(holdout))})
        version = registry.register(served, name, params, metrics, features, window,
                                    {**lineage_of(parts, dates), "training_key": key,
                                     "refit_with_holdout": judged is not None},
                                    reference_of(train, features, y, p_holdout, holdout,
                                                 days, domain.segment, domain.label.measures),
                                    gate_model=judged)
    metric = settings.promotion_metric
    if settings.promotion_beat_naive and BASELINE_VERSION not in versions:
        champion = _register_baseline(registry, domain.features.naive, train, holdout,
                                      window, parts, dates, metric,
                                      settings.promotion_tolerance, champion, days,
                                      domain.segment, domain.label.measures)
        versions = {v.version: v for v in registry.versions()}
    champ_score = None
    if champion is not None:
        # like for like: the champion's holdout-free fit, as the candidate's was judged
        # (its only fit when never refitted: v0, or with the refit off)
        champ_model = registry.load(champion, holdout_free=True)
        champ_score = score(y, predict(champ_model, holdout,
                                       versions[champion].features))[metric]
    promoted, reason = decide(settings, metrics, champ_score)
    registry.record_decision(version, champion, metric, metrics[metric], champ_score,
                             settings.promotion_tolerance, promoted, reason)
    if promoted:
        # compare-and-set against the champion this gate judged: a concurrent promotion
        # makes this one fail (AliasConflict) rather than silently overwrite it
        registry.set_alias("champion", version, expected=champion)
    else:
        registry.set_alias("challenger", version, expected=aliases.get("challenger"))
    log.info("model v%d (%s): %s; %s", version, name, metrics, reason)
    return TrainResult("registered", reason, version, promoted, metrics,
                       version if promoted else champion)
