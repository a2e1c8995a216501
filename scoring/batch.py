"""Batch scoring with the champion: ``streamfit score`` and the ``score_batch`` DAG.

Triggered when the champion changes or features are rebuilt (``model | features``), and daily by
time. Scores every flight of the given scheduled dates that has not departed at ``as_of``, reading
one feature partition per date, and writes the probability with the model version and score time
to three tables (latest per flight, per date, history). Keys are deterministic, so a rerun
overwrites the same rows.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

import pandas as pd
from cassandra.cluster import Session
from cassandra.concurrent import execute_concurrent

from features.build import FeatureStore
from streamfit.settings import Settings
from training.registry import Registry
from training.train import predict

log = logging.getLogger("streamfit.scoring")

INSERT_LATEST = """
INSERT INTO {ks}.predictions_latest (flight_id, sched_date, scheduled_departure, carrier, origin,
                                     dest, probability, model_version, scored_at)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"""
INSERT_BY_DATE = """
INSERT INTO {ks}.predictions_by_date (sched_date, flight_id, scheduled_departure, carrier, origin,
                                      dest, probability, model_version, scored_at)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"""
INSERT_HISTORY = """
INSERT INTO {ks}.predictions_history (flight_id, model_version, probability, scored_at)
VALUES (?, ?, ?, ?)"""


class NoChampion(RuntimeError):
    """There is no champion model yet: train one first (`streamfit train`)."""


@dataclass(frozen=True)
class ScoreResult:
    model_version: int
    dates: list[str]
    scored: int


class PredictionWriter:
    def __init__(self, session: Session, keyspace: str, concurrency: int = 64) -> None:
        self.session = session
        self.concurrency = concurrency
        self._latest = session.prepare(INSERT_LATEST.format(ks=keyspace))
        self._by_date = session.prepare(INSERT_BY_DATE.format(ks=keyspace))
        self._history = session.prepare(INSERT_HISTORY.format(ks=keyspace))

    def write(self, day: date, frame: pd.DataFrame, version: int, scored_at: datetime) -> None:
        statements: list[tuple[Any, tuple[object, ...]]] = []
        for r in frame.itertuples(index=False):
            when = pd.Timestamp(r.scheduled_departure).to_pydatetime()
            common = (when, r.carrier, r.origin, r.dest, float(r.probability), version, scored_at)
            statements.append((self._latest, (r.flight_id, day, *common)))
            statements.append((self._by_date, (day, r.flight_id, *common)))
            statements.append((self._history, (r.flight_id, version, float(r.probability),
                                               scored_at)))
        execute_concurrent(self.session, statements, concurrency=self.concurrency,
                           raise_on_first_error=True, results_generator=False)


def score_dates(settings: Settings, dates: Iterable[date], as_of: datetime | None = None
                ) -> ScoreResult:
    from streamfit.cassandra import connect

    with connect(settings) as session:
        registry = Registry(session, settings.keyspace)
        champion = registry.aliases().get("champion")
        if champion is None:
            raise NoChampion("no champion model yet: train one first (`streamfit train`)")
        model = registry.load(champion)  # digest-checked: a corrupted artifact never scores
        store = FeatureStore(session, settings.keyspace)
        writer = PredictionWriter(session, settings.keyspace)
        scored_at = datetime.now(UTC)
        done, total = [], 0
        for day in sorted(set(dates)):
            frame = store.read_day(day)
            if frame.empty:
                continue
            if as_of is not None:
                departs = pd.to_datetime(frame["scheduled_departure"], utc=True)
                frame = frame[departs > pd.Timestamp(as_of)]
            if frame.empty:
                continue
            frame = frame.assign(probability=predict(model, frame))
            writer.write(day, frame, champion, scored_at)
            done.append(day.isoformat())
            total += len(frame)
        log.info("scored %d flights of %s with model v%d", total, done, champion)
        return ScoreResult(champion, done, total)


def scoring_dates(extras: list[dict[str, Any]], today: date | None = None
                  ) -> tuple[list[date], datetime | None]:
    """Dates to score from triggering events: feature dates named; else today and tomorrow.

    ``as_of`` is the newest event time the features saw (a replay's "now"), so flights that
    had departed by then are not scored.
    """
    from datetime import timedelta

    named = sorted({date.fromisoformat(str(d)) for x in extras for d in (x.get("dates") or [])})
    stamps = [str(x["max_event_time"]) for x in extras if x.get("max_event_time")]
    as_of = max(datetime.fromisoformat(t) for t in stamps) if stamps else None
    if named:
        return named, as_of
    today = today or datetime.now(UTC).date()
    return [today, today + timedelta(days=1)], datetime.now(UTC)
