"""The prediction tables' CQL, in one place: written by batch scoring (``PredictionWriter``), read
by the Python client (``scoring.client``), and so by the CLI and the HTTP API.

Three tables per keyspace, generic over the domain and keyed by prediction horizon (migration 11):
the latest prediction per entity and horizon (freshest horizon first, so "latest" reads one row),
every entity of a date, and one row per entity, model version and horizon. Keys are
deterministic, so a rerun overwrites the same rows.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, datetime
from typing import TYPE_CHECKING, Any

from cassandra.cluster import Session
from cassandra.concurrent import execute_concurrent

from streamfit.cassandra import partition_batches
from streamfit.domains import ENTITY_ID, EVENT_TIME, HORIZON, Domain

if TYPE_CHECKING:
    import pandas as pd  # the client reads without it: the CLI starts faster

COLUMNS = ("entity_id, horizon_min, day, event_time, attributes, probability, model_version, "
           "scored_at")
#: the freshest horizon's prediction: the partition's first row
SELECT_LATEST = f"SELECT {COLUMNS} FROM {{ks}}.predictions_by_horizon WHERE entity_id = ? LIMIT 1"
#: one row per entity, its freshest horizon (a group's first row)
SELECT_BY_DAY = (f"SELECT {COLUMNS} FROM {{ks}}.day_predictions_by_horizon WHERE day = ? "
                 "GROUP BY day, entity_id")
#: every horizon's (monitoring judges each)
SELECT_DAY_ALL = ("SELECT entity_id, horizon_min, probability, model_version "
                  "FROM {ks}.day_predictions_by_horizon WHERE day = ?")
#: what a rescoring compares before it writes (``PredictionWriter.changed``)
SELECT_DAY_STORED = ("SELECT entity_id, horizon_min, event_time, attributes, probability, "
                     "model_version FROM {ks}.day_predictions_by_horizon WHERE day = ?")
SELECT_HISTORY = """
SELECT model_version, horizon_min, probability, scored_at FROM {ks}.prediction_history_by_horizon
WHERE entity_id = ? LIMIT 100"""
INSERT_LATEST = """
INSERT INTO {ks}.predictions_by_horizon (entity_id, horizon_min, day, event_time, attributes,
                                         probability, model_version, scored_at)
VALUES (?, ?, ?, ?, ?, ?, ?, ?)"""
INSERT_BY_DATE = """
INSERT INTO {ks}.day_predictions_by_horizon (day, entity_id, horizon_min, event_time, attributes,
                                             probability, model_version, scored_at)
VALUES (?, ?, ?, ?, ?, ?, ?, ?)"""
INSERT_HISTORY = """
INSERT INTO {ks}.prediction_history_by_horizon (entity_id, model_version, horizon_min,
                                                probability, scored_at)
VALUES (?, ?, ?, ?, ?)"""


#: The keyspace's page-token secret, made once (see ``page_token_secret``).
SELECT_PAGE_SECRET = "SELECT value FROM {ks}.pipeline_config WHERE name = 'page_token_secret'"
INSERT_PAGE_SECRET = """
INSERT INTO {ks}.pipeline_config (name, value, set_at) VALUES ('page_token_secret', %s, %s)
IF NOT EXISTS"""


def page_token_secret(session: Session, keyspace: str) -> bytes:
    """The key that signs page tokens: 32 random bytes, made by the first reader of a keyspace
    and kept in its ``pipeline_config`` table. A compare-and-set insert makes every server
    process and CLI agree on one, and nothing outside Cassandra (not the keyspace's name)
    predicts it, so a token cannot be forged even with no API key set."""
    import secrets
    from datetime import UTC

    row = session.execute(SELECT_PAGE_SECRET.format(ks=keyspace)).one()
    if row is not None:
        return bytes.fromhex(row.value)
    mine = secrets.token_hex(32)
    made = session.execute(INSERT_PAGE_SECRET.format(ks=keyspace), (mine, datetime.now(UTC))).one()
    value = mine if made.applied else made.value  # another process's won the race
    return bytes.fromhex(value)


#: Rows of one day_predictions_by_horizon partition per unlogged batch (small enough to stay well
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
        self._stored = session.prepare(SELECT_DAY_STORED.format(ks=keyspace))

    def _rows(self, frame: pd.DataFrame) -> Iterator[tuple[str, int, datetime, float,
                                                             dict[str, str]]]:
        """Per scored row: entity, horizon, event time (UTC), probability, attributes."""
        import pandas as pd

        attrs = frame[self.columns].astype(str).to_numpy() if self.columns else None
        times = pd.to_datetime(frame[EVENT_TIME], utc=True)
        for i, (entity, horizon, when, p) in enumerate(zip(
                frame[ENTITY_ID], frame[HORIZON].astype(int), times, frame["probability"],
                strict=True)):
            attributes = dict(zip(self.columns, attrs[i], strict=True)) if attrs is not None \
                else {}
            yield entity, int(horizon), when.to_pydatetime(), float(p), attributes

    def changed(self, day: date, frame: pd.DataFrame, version: int) -> Any:
        """Per row of ``frame`` (scored, with ``probability``): whether it differs from the
        prediction stored for its entity and horizon on ``day`` (its model version,
        probability, event time or attributes), or none is stored. One partition read: a
        rescoring after a build writes only the entities whose features (and so prediction)
        changed, not the whole day again, and keeps the stored rows' score times."""
        import numpy as np

        # Cassandra keeps milliseconds, naive in UTC
        stored = {(r.entity_id, r.horizon_min): (r.model_version, r.probability,
                                                 r.event_time, dict(r.attributes or {}))
                  for r in self.session.execute(self._stored, (day,))}
        out = np.ones(len(frame), dtype=bool)
        if not stored:
            return out
        for i, (entity, horizon, when, p, attributes) in enumerate(self._rows(frame)):
            had = stored.get((entity, horizon))
            if had is not None:
                kept = when.replace(microsecond=when.microsecond // 1000 * 1000, tzinfo=None)
                out[i] = had != (version, p, kept, attributes)
        return out

    def write(self, day: date, frame: pd.DataFrame, version: int, scored_at: datetime) -> None:
        from cassandra.query import BatchStatement, BatchType

        # An entity's latest and history rows share its partition key (entity_id): one
        # unlogged batch per entity is one request and one mutation for all its horizons.
        by_entity: dict[str, Any] = {}
        by_date: list[tuple[Any, ...]] = []
        for entity, horizon, when, p, attributes in self._rows(frame):
            common = (when, attributes, p, version, scored_at)
            batch = by_entity.get(entity)
            if batch is None:
                batch = by_entity[entity] = BatchStatement(batch_type=BatchType.UNLOGGED)
            batch.add(self._latest, (entity, horizon, day, *common))
            batch.add(self._history, (entity, version, horizon, p, scored_at))
            by_date.append((day, entity, horizon, *common))
        # One date is one partition of day_predictions_by_horizon: its rows travel in
        # unlogged batches too.
        statements: list[Any] = partition_batches(self._by_date, by_date, BY_DATE_BATCH,
                                                  lambda row: row[0])
        statements.extend((batch, ()) for batch in by_entity.values())
        execute_concurrent(self.session, statements, concurrency=self.concurrency,
                           raise_on_first_error=True, results_generator=False)
