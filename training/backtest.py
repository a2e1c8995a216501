"""Backtest: train as the pipeline would up to a date, then score the weeks after it.

Run by ``streamfit backtest --train-until D --weeks N``. It reads the keyspace's feature store
(build the dates first: ``streamfit features build``) and registers nothing. The model is chosen
and fitted exactly as ``train_and_maybe_promote`` would on the window ending at ``D`` (the same
``STREAMFIT_TRAIN_DAYS``, holdout and candidates), and the floor decides which model would serve:
the trained one if it beats the naive baseline on the holdout, else the baseline (v0). Each of the
``N`` weeks after ``D`` is then scored with the features the pipeline stored for it, and judged
against what happened: realised ROC AUC, PR AUC, Brier and calibration error, next to the naive
baseline's, so a holdout figure can be checked against the weeks that follow it.

Horizons: the pipeline stores features as of each entity's event time (for flights, the
scheduled departure: arrivals and weather known by then), and the first horizon reads those. A
domain may declare more (``FeatureSpec.horizons``; flights: 2 h and 24 h before departure); for
them the backtest computes the features of the training window and of the judged weeks from the
raw events as of that horizon (training rows and scored rows alike), so each horizon's figure is
what a model trained and served at that horizon would get.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

from streamfit.domains import load_domain
from streamfit.registry import predict
from training.train import (
    baseline_model,
    choose,
    gate,
    load_window,
    naive_metrics,
    score,
    time_split,
    window_dates,
)


class BacktestError(ValueError):
    """The keyspace lacks what a backtest needs; the message says what to build."""


@dataclass(frozen=True)
class Week:
    start: date
    end: date
    rows: int
    late_share: float
    #: realised metrics of the model that would serve, of the trained model, and of the naive
    #: feature itself
    served: dict[str, float]
    trained: dict[str, float]
    naive: dict[str, float]


@dataclass(frozen=True)
class Backtest:
    train_until: date
    horizon: str
    algorithm: str
    served_by: str  # "trained" | "naive baseline (v0)"
    holdout: dict[str, float]
    weeks: list[Week] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"train_until": self.train_until.isoformat(), "horizon": self.horizon,
                "algorithm": self.algorithm, "served_by": self.served_by,
                "holdout": self.holdout,
                "weeks": [{**w.__dict__, "start": w.start.isoformat(), "end": w.end.isoformat()}
                          for w in self.weeks]}


class _AsOf:
    """``read_day`` of the domain's features as of a horizon, built from the raw events (the
    interface ``load_window`` reads, as the feature store's is)."""

    def __init__(self, raw: Any, build_day: Any, horizon: timedelta) -> None:
        self.raw, self.build_day, self.horizon = raw, build_day, horizon

    def read_day(self, day: date) -> Any:
        return self.build_day(self.raw, day, horizon=self.horizon)


def run_backtest(settings: Any, train_until: date, weeks: int,
                 features: list[str] | None = None, horizon: str | None = None) -> Backtest:
    """``features``: the model's features (default: the domain's), to compare feature sets;
    ``horizon``: one of the domain's horizons (default: the first, the stored features)."""
    from streamfit.cassandra import connect
    from streamfit.featurestore import FeatureStore, RawReader

    domain = load_domain(settings.domain)
    features = list(features or domain.features.model)
    naive = domain.features.naive
    horizons = domain.features.horizons
    name = horizon or next(iter(horizons))
    if name not in horizons:
        raise BacktestError(f"{name!r} is not a horizon of the {domain.name} domain; choose "
                            f"from {', '.join(map(repr, horizons))}")
    with connect(settings) as session:
        store: Any = FeatureStore(session, settings.keyspace, domain)
        if name != next(iter(horizons)):
            store = _AsOf(RawReader(session, settings.keyspace), domain.features.build_day,
                          horizons[name])
        frame = load_window(store, window_dates(train_until, settings.train_days))
        if frame.empty:
            raise BacktestError(
                f"no labelled features in the {settings.train_days} days up to {train_until} in "
                f"keyspace {settings.keyspace}: land the events and build them first "
                "(`streamfit features build --full`)")
        train, holdout = time_split(frame, settings.holdout_days)
        if len(train) < 200 or holdout["label"].nunique() < 2:
            raise BacktestError(f"too little labelled data up to {train_until}: {len(train)} "
                                f"training rows, {len(holdout)} holdout rows")
        algorithm, _params, model, _cv = choose(train, features)
        baseline = baseline_model(train, naive)
        y = holdout["label"].to_numpy(dtype=int)
        held = score(y, predict(model, holdout, features))
        held.update(naive_metrics(y, holdout, naive))
        # the floor: the promotion gate, as it judges a first model
        metric = settings.promotion_metric
        beats, _why = gate(metric, held[metric], None, settings.promotion_tolerance,
                           held[f"naive_{metric}"] if settings.promotion_beat_naive else None)
        out = []
        for w in range(weeks):
            days = [train_until + timedelta(days=1 + 7 * w + i) for i in range(7)]
            test = load_window(store, days)
            if test.empty or test["label"].nunique() < 2:
                continue  # nothing matured in that week (or one class only): nothing to judge
            yw = test["label"].to_numpy(dtype=int)
            trained = score(yw, predict(model, test, features))
            v0 = score(yw, predict(baseline, test, [naive]))
            out.append(Week(days[0], days[-1], len(test), float(yw.mean()),
                            trained if beats else v0, trained,
                            score(yw, test[naive].to_numpy(dtype=float))))
        if not out:
            raise BacktestError(f"no labelled features in the {weeks} week(s) after "
                                f"{train_until}: build those dates first")
    return Backtest(train_until, name, algorithm,
                    "trained" if beats else "naive baseline (v0)", held, out)
