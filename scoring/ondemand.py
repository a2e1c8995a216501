"""Scoring flights on request: the HTTP API's ``POST /score`` and the transient-model mode.

``features_for`` computes the features of flights that are not (or not yet) in the feature tables,
point-in-time, from the raw events in Cassandra: for each scheduled date, the same arrival history
and weather a batch build of that date would use. ``ChampionCache`` keeps the champion loaded in a
long-running process and notices a new one without a restart.

``run_transient`` (the ``transient_score`` DAG and ``streamfit score --transient``) trains a model
on the current feature window for one request, scores it, stores the predictions under the
request id and discards the model: it is never registered and never becomes champion.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

import pandas as pd
from cassandra.cluster import Session

from features.build import FeatureStore, planes_reference
from features.pointintime import build_features
from streamfit.settings import Settings

log = logging.getLogger("streamfit.scoring")

#: Columns a flight to score must have (tailnum and distance may be missing).
FLIGHT_COLUMNS = ["flight_id", "carrier", "origin", "dest", "scheduled_departure", "tailnum",
                  "distance"]


def features_for(store: FeatureStore, flights: pd.DataFrame,
                 planes: pd.DataFrame | None = None) -> pd.DataFrame:
    """Point-in-time features of ``flights`` (FLIGHT_COLUMNS), in the order given."""
    planes = planes_reference() if planes is None else planes
    frame = flights.reindex(columns=FLIGHT_COLUMNS).copy()
    frame["scheduled_departure"] = pd.to_datetime(frame["scheduled_departure"], utc=True)
    frame["distance"] = pd.to_numeric(frame["distance"], errors="coerce")
    frame["_order"] = range(len(frame))
    parts = []
    for day, group in frame.groupby(frame["scheduled_departure"].dt.date):
        history, weather = store.context(day)
        if weather.empty:
            weather = pd.DataFrame(columns=["origin", "observed_at"])
        feats = build_features(group.drop(columns="_order"), history, weather, planes)
        parts.append(feats.assign(_order=group["_order"].to_numpy()))
    return pd.concat(parts).sort_values("_order").drop(columns="_order").reset_index(drop=True)


@dataclass(frozen=True)
class Champion:
    version: int
    model: Any
    features: list[str]


class ChampionCache:
    """The champion model, re-checked at most every ``refresh_s`` seconds (one small read)."""

    def __init__(self, session: Session, keyspace: str, refresh_s: float) -> None:
        from training.registry import Registry

        self.registry = Registry(session, keyspace)
        self.refresh_s = refresh_s
        self._lock = threading.Lock()
        self._current: Champion | None = None
        self._checked = float("-inf")

    def get(self) -> Champion | None:
        with self._lock:
            if time.monotonic() - self._checked >= self.refresh_s:
                self._checked = time.monotonic()
                version = self.registry.aliases().get("champion")
                if version is None:
                    self._current = None
                elif self._current is None or self._current.version != version:
                    model = self.registry.load(version)  # digest-checked
                    features = next(v.features for v in self.registry.versions()
                                    if v.version == version)
                    self._current = Champion(version, model, features)
                    log.info("serving champion v%d", version)
            return self._current


# --- transient models ----------------------------------------------------------------------

INSERT_TRANSIENT = """
INSERT INTO {ks}.transient_predictions (request_id, flight_id, sched_date, probability,
                                        scored_at)
VALUES (?, ?, ?, ?, ?)"""
INSERT_TRANSIENT_META = """
INSERT INTO {ks}.transient_predictions (request_id, algorithm, train_window, metrics, finished_at)
VALUES (?, ?, ?, ?, ?)"""
SELECT_TRANSIENT = """
SELECT flight_id, sched_date, probability, scored_at, algorithm, train_window, metrics,
       finished_at FROM {ks}.transient_predictions WHERE request_id = ?"""


class TransientError(RuntimeError):
    """A transient request cannot be served (e.g. no labelled features to train on yet)."""


def run_transient(settings: Settings, request_id: str, dates: list[date] | None = None,
                  flights: pd.DataFrame | None = None, end: date | None = None
                  ) -> dict[str, Any]:
    """Train a throw-away model on the current feature window, score the flights of ``dates``
    (from the feature tables) and/or ``flights`` (features computed on demand), store the
    predictions under ``request_id`` and return a summary. The model is never registered."""
    from cassandra.concurrent import execute_concurrent_with_args

    from streamfit.cassandra import connect
    from training.train import NAIVE_FEATURE, choose, load_window, predict, score, time_split, window_dates

    if not dates and (flights is None or flights.empty):
        raise TransientError("give dates or flights to score")
    with connect(settings) as session:
        store = FeatureStore(session, settings.keyspace)
        parts = store.partitions()
        labelled = parts[parts["labelled"] > 0] if len(parts) else parts
        if labelled.empty:
            raise TransientError("no labelled features to train on yet: land data first")
        end = end or max(labelled["sched_date"])
        train, holdout = time_split(load_window(store, window_dates(end, settings.train_days)),
                                    settings.holdout_days)
        if len(train) < 200 or holdout["label"].nunique() < 2:
            raise TransientError(f"too little data to train: {len(train)} rows")
        name, _params, model, _cv = choose(train)
        y = holdout["label"].to_numpy(dtype=int)
        metrics = score(y, predict(model, holdout))
        metrics["naive_roc_auc"] = score(y, holdout[NAIVE_FEATURE].to_numpy(dtype=float))[
            "roc_auc"]
        frames = [store.read_day(d) for d in dates or []]
        if flights is not None and not flights.empty:
            on_demand = features_for(store, flights)
            on_demand["scheduled_departure"] = pd.to_datetime(flights["scheduled_departure"],
                                                              utc=True).to_numpy()
            frames.append(on_demand)
        frame = pd.concat([f for f in frames if not f.empty], ignore_index=True) \
            if any(not f.empty for f in frames) else pd.DataFrame()
        now = datetime.now(UTC)
        rows = []
        if not frame.empty:
            probability = predict(model, frame)
            days = pd.to_datetime(frame["scheduled_departure"], utc=True).dt.date
            rows = [(request_id, fid, day, float(p), now)
                    for fid, day, p in zip(frame["flight_id"], days, probability, strict=True)]
            insert = session.prepare(INSERT_TRANSIENT.format(ks=settings.keyspace))
            execute_concurrent_with_args(session, insert, rows, concurrency=64,
                                         raise_on_first_error=True)
        window = {"start": window_dates(end, settings.train_days)[0].isoformat(),
                  "end": end.isoformat()}
        session.execute(session.prepare(INSERT_TRANSIENT_META.format(ks=settings.keyspace)),
                        (request_id, name, json.dumps(window), json.dumps(metrics), now))
        del model  # discarded: a transient model is never registered
        log.info("transient request %s: %d flights scored by a %s trained on %s", request_id,
                 len(rows), name, window)
        return {"request_id": request_id, "algorithm": name, "train_window": window,
                "metrics": metrics, "scored": len(rows)}


def transient_results(session: Session, keyspace: str, request_id: str) -> dict[str, Any] | None:
    """The stored result of a transient request, or None while it has not finished."""
    rows = list(session.execute(session.prepare(SELECT_TRANSIENT.format(ks=keyspace)),
                                (request_id,)))
    if not rows or rows[0].finished_at is None:
        return None
    first = rows[0]
    return {"request_id": request_id, "algorithm": first.algorithm,
            "train_window": json.loads(first.train_window),
            "metrics": json.loads(first.metrics),
            "finished_at": first.finished_at.replace(tzinfo=UTC).isoformat(),
            "predictions": [{"flight_id": r.flight_id, "sched_date": str(r.sched_date),
                             "probability": r.probability} for r in rows if r.flight_id]}


def run_transient_conf(settings: Settings, conf: dict[str, Any]) -> dict[str, Any]:
    """``run_transient`` from a DAG-run conf, validated like an API request."""
    from streamfit.catalog import valid_keyspace

    request_id = str(conf.get("request_id") or "")
    if not request_id or len(request_id) > 64 or not request_id.replace("-", "").isalnum():
        raise TransientError("conf needs a request_id (letters, digits, -; at most 64)")
    keyspace = str(conf.get("keyspace") or settings.keyspace)
    if not valid_keyspace(keyspace):
        raise TransientError(f"conf keyspace {keyspace!r} is not a keyspace name")
    try:
        dates = [date.fromisoformat(str(d)) for d in conf.get("dates") or []]
    except ValueError as exc:
        raise TransientError(f"conf dates: {exc} (write YYYY-MM-DD)") from None
    flights = pd.DataFrame(conf.get("flights") or [])
    if not flights.empty:
        missing = {"flight_id", "carrier", "origin", "dest", "scheduled_departure"} - set(flights)
        if missing:
            raise TransientError(f"conf flights lack {sorted(missing)}")
    return run_transient(settings.model_copy(update={"keyspace": keyspace}), request_id,
                         dates, flights)
