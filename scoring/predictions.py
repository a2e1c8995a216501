"""The prediction tables' CQL, in one place: written by batch scoring (``PredictionWriter``), read
by the Python client (``scoring.client``), and so by the CLI and the HTTP API.

Three tables per keyspace, generic over the domain (migration 10): the latest prediction per
entity, every entity of a date, and one row per entity and model version. Keys are deterministic,
so a rerun overwrites the same rows.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import TYPE_CHECKING, Any

from cassandra.cluster import Session
from cassandra.concurrent import execute_concurrent

from streamfit.domains import ENTITY_ID, EVENT_TIME, Domain

if TYPE_CHECKING:
    import pandas as pd  # the client reads without it: the CLI starts faster

COLUMNS = "entity_id, day, event_time, attributes, probability, model_version, scored_at"
SELECT_LATEST = f"SELECT {COLUMNS} FROM {{ks}}.entity_predictions WHERE entity_id = ?"
SELECT_BY_DAY = f"SELECT {COLUMNS} FROM {{ks}}.entity_predictions_by_day WHERE day = ?"
SELECT_HISTORY = """
SELECT model_version, probability, scored_at FROM {ks}.entity_prediction_history
WHERE entity_id = ? LIMIT 100"""
INSERT_LATEST = """
INSERT INTO {ks}.entity_predictions (entity_id, day, event_time, attributes, probability,
                                     model_version, scored_at)
VALUES (?, ?, ?, ?, ?, ?, ?)"""
INSERT_BY_DATE = """
INSERT INTO {ks}.entity_predictions_by_day (day, entity_id, event_time, attributes, probability,
                                            model_version, scored_at)
VALUES (?, ?, ?, ?, ?, ?, ?)"""
INSERT_HISTORY = """
INSERT INTO {ks}.entity_prediction_history (entity_id, model_version, probability, scored_at)
VALUES (?, ?, ?, ?)"""


#: Rows of one entity_predictions_by_day partition per unlogged batch (small enough to stay well
#: under Cassandra's batch size warning threshold).
BY_DATE_BATCH = 40


class PredictionWriter:
    def __init__(self, session: Session, keyspace: str, domain: Domain,
                 concurrency: int = 64) -> None:
        self.session = session
        self.columns = list(domain.entity.columns)
        self.concurrency = concurrency
        self._latest = session.prepare(INSERT_LATEST.format(ks=keyspace))
        self._by_date = session.prepare(INSERT_BY_DATE.format(ks=keyspace))
        self._history = session.prepare(INSERT_HISTORY.format(ks=keyspace))

    def write(self, day: date, frame: pd.DataFrame, version: int, scored_at: datetime) -> None:
        import pandas as pd
        from cassandra.query import BatchStatement, BatchType

        statements: list[Any] = []
        by_date = BatchStatement(batch_type=BatchType.UNLOGGED)
        attrs = frame[self.columns].astype(str).to_numpy() if self.columns else None
        times = pd.to_datetime(frame[EVENT_TIME], utc=True)
        for i, (entity, when, p) in enumerate(zip(frame[ENTITY_ID], times, frame["probability"],
                                                  strict=True)):
            attributes = dict(zip(self.columns, attrs[i], strict=True)) if attrs is not None \
                else {}
            common = (when.to_pydatetime(), attributes, float(p), version, scored_at)
            statements.append((self._latest, (entity, day, *common)))
            statements.append((self._history, (entity, version, float(p), scored_at)))
            # One date is one partition of entity_predictions_by_day: its rows travel in
            # unlogged batches (one request and one mutation per batch, as ingest does).
            by_date.add(self._by_date, (day, entity, *common))
            if len(by_date) >= BY_DATE_BATCH:
                statements.append((by_date, ()))
                by_date = BatchStatement(batch_type=BatchType.UNLOGGED)
        if len(by_date):
            statements.append((by_date, ()))
        execute_concurrent(self.session, statements, concurrency=self.concurrency,
                           raise_on_first_error=True, results_generator=False)
