"""Backtest: train as the pipeline would up to a date, then score the weeks after it.

Run by ``streamfit backtest --train-until D --weeks N``. It reads the keyspace's feature store
(build the dates first: ``streamfit features build``) and registers nothing. The model is chosen
and fitted exactly as ``train_and_maybe_promote`` would on the window ending at ``D`` (the same
``STREAMFIT_TRAIN_DAYS``, holdout and candidates), and the floor decides which model would serve:
the trained one if it beats the naive baseline on the holdout (refitted on the whole window,
holdout included, under ``STREAMFIT_REFIT_WITH_HOLDOUT`` as training does), else the baseline
(v0). Each of the ``N`` weeks after ``D`` is then scored with the features the pipeline stored
for it, and judged against what happened: realised ROC AUC, PR AUC, Brier and calibration error,
next to the naive baseline's and the holdout-judged fit's, so a holdout figure can be checked
against the weeks that follow it.

Horizons: the feature store holds every horizon's rows (each built as of that horizon before the
entity's event time), and the pipeline trains one model on all of them, the horizon being one of
its inputs. The backtest does the same, then judges each horizon's rows of the weeks after on
their own: the figure of a horizon is what serving at that horizon would get.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

from streamfit.domains import HORIZON
from streamfit.registry import predict
from streamfit.workspace import Workspace
from training.train import (
    baseline_model,
    choose,
    decide,
    holdout_metrics,
    load_window,
    refit,
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
    #: realised metrics of the model that would serve, of the trained model as the holdout
    #: judged it (before any refit), and of the naive feature itself
    served: dict[str, float]
    trained: dict[str, float]
    naive: dict[str, float]


@dataclass(frozen=True)
class Backtest:
    train_until: date
    horizon: str
    algorithm: str
    served_by: str  # "trained" | "trained, refitted with the holdout" | "naive baseline (v0)"
    holdout: dict[str, float]
    weeks: list[Week] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"train_until": self.train_until.isoformat(), "horizon": self.horizon,
                "algorithm": self.algorithm, "served_by": self.served_by,
                "holdout": self.holdout,
                "weeks": [{**w.__dict__, "start": w.start.isoformat(), "end": w.end.isoformat()}
                          for w in self.weeks]}


def run_backtest(ws: Workspace, train_until: date, weeks: int,
                 features: list[str] | None = None,
                 horizons: list[str] | None = None) -> list[Backtest]:
    """One ``Backtest`` per horizon (default: every one of the domain's). ``features``: the
    model's features (default: the domain's), to compare feature sets."""
    settings, domain = ws.settings, ws.domain
    spec = domain.features
    features = [*(features or spec.model), HORIZON]
    naive = spec.naive
    names = horizons or list(spec.horizons)
    unknown = [n for n in names if n not in spec.horizons]
    if unknown:
        raise BacktestError(f"{unknown[0]!r} is not a horizon of the {domain.name} domain; "
                            f"choose from {', '.join(map(repr, spec.horizons))}")
    store = ws.feature_store()
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
    algorithm, _params, model, _cv = choose(train, features, threads=settings.train_threads)
    baseline = baseline_model(train, naive)
    y = holdout["label"].to_numpy(dtype=int)
    p = predict(model, holdout, features)
    held = holdout_metrics(y, p, holdout, naive)
    # the floor: the promotion gate, as it judges a first model, at every horizon
    beats, _why = decide(settings, held, None)
    served, served_by = model, "trained"
    if not beats:
        served_by = "naive baseline (v0)"
    elif settings.refit_with_holdout:  # the refit only when the trained model would serve
        served = refit(model, [train, holdout], features, settings.train_threads)
        served_by = "trained, refitted with the holdout"
    tests = [load_window(store, [train_until + timedelta(days=1 + 7 * w + i)
                                 for i in range(7)]) for w in range(weeks)]
    out = []
    for name in names:
        minutes = spec.horizons[name] // timedelta(minutes=1)
        suffix = f"_h{minutes}"
        mine = {k.removesuffix(suffix): v for k, v in held.items() if k.endswith(suffix)}
        judged = []
        for w, test in enumerate(tests):
            test = test[test[HORIZON] == minutes] if not test.empty else test
            if test.empty or test["label"].nunique() < 2:
                continue  # nothing matured in that week (or one class only)
            start = train_until + timedelta(days=1 + 7 * w)
            yw = test["label"].to_numpy(dtype=int)
            trained = score(yw, predict(model, test, features))
            if not beats:
                realised = score(yw, predict(baseline, test, [naive]))
            elif served is model:
                realised = trained
            else:
                realised = score(yw, predict(served, test, features))
            judged.append(Week(start, start + timedelta(days=6), len(test), float(yw.mean()),
                               realised, trained,
                               score(yw, test[naive].to_numpy(dtype=float))))
        if not judged:
            raise BacktestError(f"no labelled features in the {weeks} week(s) after "
                                f"{train_until}: build those dates first")
        out.append(Backtest(train_until, name, algorithm, served_by, mine, judged))
    return out
