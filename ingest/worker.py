"""One ingest worker: a kafka-python consumer that lands events in Cassandra, at least once.

Started by ``streamfit ingest run`` (one process per worker, all in one consumer group). For each
poll:

1. decode every message at the edge (``ingest.envelope``); refused ones go to the dead-letter
   topic with the original bytes and the reason in headers (``ingest.dlq``);
2. write the valid events to ``raw_events`` (idempotent keys, bounded concurrency);
3. write one ledger row per Kafka partition of the batch;
4. only then commit the batch's offsets.

If Cassandra (or the DLQ) fails, the worker pauses fetching, keeps its group membership alive
and retries with exponential backoff; it never commits past a failed write. Partitions revoked
meanwhile are dropped from the pending batch: their new owner reads them again from the committed
offset, and should a partition come back to this worker, it reads them again from the first one
it dropped (``IngestWorker.rewind``). On SIGTERM/SIGINT
it finishes the batch in flight, commits and closes.
"""

from __future__ import annotations

import logging
import os
import signal
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from kafka import ConsumerRebalanceListener, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.errors import CommitFailedError, KafkaError
from kafka.structs import OffsetAndMetadata

from ingest import metrics
from ingest.dlq import dead_letter, dlq_max_message_bytes
from ingest.envelope import Envelope, Rejection, decode
from streamfit import kafka as kafka_io
from streamfit.cassandra import connect
from streamfit.domains import Domain, load_domain
from streamfit.settings import Settings
from streamfit.store import IngestStore, LedgerEntry, WriteFailed, bucket_of

log = logging.getLogger("streamfit.ingest")


@dataclass
class Batch:
    """What one poll returned, decoded, per partition."""

    records: dict[TopicPartition, list[Any]]
    rows: list[tuple[object, ...]] = field(default_factory=list)
    rejected: list[tuple[Any, Rejection]] = field(default_factory=list)

    def drop(self, partitions: set[TopicPartition]) -> None:
        for tp in partitions:
            self.records.pop(tp, None)
        kept = {(tp.topic, tp.partition) for tp in self.records}
        self.rows = [r for r in self.rows if (r[8], r[9]) in kept]
        self.rejected = [(rec, why) for rec, why in self.rejected
                         if (rec.topic, rec.partition) in kept]

    def __len__(self) -> int:
        return sum(len(v) for v in self.records.values())


def decode_batch(records: dict[TopicPartition, list[Any]], domain: Domain, max_bytes: int,
                 now: datetime) -> Batch:
    batch = Batch(records)
    for tp, msgs in records.items():
        for msg in msgs:
            result = decode(msg.value, domain, max_bytes, now)
            if isinstance(result, Rejection):
                batch.rejected.append((msg, result))
                continue
            batch.rows.append(_row(result, tp, msg.offset, now))
    return batch


def _row(e: Envelope, tp: TopicPartition, offset: int, now: datetime) -> tuple[object, ...]:
    # Column order of streamfit.store.INSERT_RAW; index 8/9 (topic, partition) used by Batch.drop.
    return (e.event_date, bucket_of(e.entity_key), e.event_type, e.event_time, e.event_id,
            e.entity_key, e.schema_version, e.payload_json, tp.topic, tp.partition, offset, now)


def ledger_entries(batch: Batch, worker: str, now: datetime) -> list[LedgerEntry]:
    per_tp_rows: dict[tuple[str, int], list[tuple[object, ...]]] = defaultdict(list)
    for row in batch.rows:
        per_tp_rows[(row[8], row[9])].append(row)  # type: ignore[index]
    rejected: dict[tuple[str, int], int] = defaultdict(int)
    for rec, _why in batch.rejected:
        rejected[(rec.topic, rec.partition)] += 1
    entries = []
    for tp, msgs in batch.records.items():
        if not msgs:
            continue
        rows = per_tp_rows.get((tp.topic, tp.partition), [])
        times: list[datetime] = [r[3] for r in rows]  # type: ignore[misc]
        entries.append(LedgerEntry(
            topic=tp.topic, partition=tp.partition,
            first_offset=msgs[0].offset, last_offset=msgs[-1].offset,
            rows=len(rows), dead_lettered=rejected.get((tp.topic, tp.partition), 0),
            min_event_time=min(times) if times else None,
            max_event_time=max(times) if times else None,
            event_dates=frozenset(r[0] for r in rows),  # type: ignore[misc]
            landed_at=now, worker=worker))
    return entries


class _Rebalance(ConsumerRebalanceListener):
    def __init__(self, worker: IngestWorker) -> None:
        self.worker = worker

    def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        # Called inside poll(). Everything landed before was committed already; a batch still
        # retrying loses these partitions and must not commit them.
        self.worker.revoked |= set(revoked)
        log.info("worker %s: partitions revoked %s", self.worker.name, sorted(revoked))

    def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        self.worker.revoked -= set(assigned)
        log.info("worker %s: partitions assigned %s", self.worker.name, sorted(assigned))
        consumer = self.worker.consumer
        # A partition handed back to us keeps its fetch position (kafka-python 3 preserves the
        # state of a partition in both the old and the new assignment): past the records of a
        # batch we dropped when it was revoked. Read them again from the first dropped one, or
        # the next commit would move past records never landed (the rebalance-during-an-outage
        # chaos scenario lost 510 events so). A partition that went elsewhere starts at its
        # committed offset with its new owner.
        rewind, self.worker.rewind = self.worker.rewind, {}
        for tp in assigned:
            if tp in rewind and consumer is not None:
                consumer.seek(tp, rewind[tp])
                log.info("worker %s: %s handed back: reading again from offset %d",
                         self.worker.name, tp, rewind[tp])
        if self.worker.backing_off and consumer is not None and assigned:
            # A rebalance during a backoff hands over partitions unpaused: pause them too,
            # or the backoff's polls would fetch (and move past) their records.
            consumer.pause(*assigned)


class IngestWorker:
    def __init__(self, settings: Settings, index: int) -> None:
        self.settings = settings
        self.name = f"{os.uname().nodename}-w{index}-{os.getpid()}"
        self.index = index
        self.stopping = False
        self.revoked: set[TopicPartition] = set()
        #: per partition dropped from a batch when revoked, its first dropped offset: where to
        #: read again should the partition be handed back (``_Rebalance``)
        self.rewind: dict[TopicPartition, int] = {}
        self.domain = load_domain(settings.domain)
        self.consumer: KafkaConsumer | None = None
        #: True while a batch waits to be retried: every assigned partition stays paused
        self.backing_off = False

    def stop(self, *_args: object) -> None:
        self.stopping = True

    def run(self, consumer_factory: Callable[[], KafkaConsumer] | None = None) -> None:
        s = self.settings
        consumer = self.consumer = (consumer_factory or self._consumer)()
        # A flood is thousands of dead letters per poll. Each batch's are flushed before its
        # commit, so a long linger delays nothing: it puts them in one request instead of one per
        # 5 ms (py-spy: waking the sender per new batch cost more than appending the records).
        producer = kafka_io.producer(s, client_id=f"streamfit-dlq-{self.index}",
                                     max_request_size=dlq_max_message_bytes(s),
                                     batch_size=1048576, linger_ms=100)
        consumer.subscribe([s.events_topic], listener=_Rebalance(self))
        try:
            with connect(s) as session:
                store = IngestStore(session, s.keyspace, s.ingest_write_concurrency)
                while not self.stopping:
                    polled = consumer.poll(timeout_ms=500, max_records=s.ingest_batch_size)
                    if polled:
                        self.land(consumer, producer, store, polled)
                    metrics.observe_lag(consumer)
        finally:
            producer.close(timeout=10)
            consumer.close(autocommit=False)
            log.info("worker %s: closed", self.name)

    def _consumer(self) -> KafkaConsumer:
        s = self.settings
        return kafka_io.consumer(
            s, group_id=s.ingest_group, client_id=f"streamfit-ingest-{self.index}",
            max_poll_records=s.ingest_batch_size,
            # A killed worker's partitions move once the group stops hearing from it; its
            # restarted self rejoins at once. Heartbeats come from kafka-python's own thread, so
            # a slow batch does not count against this (max_poll_interval_ms bounds that).
            session_timeout_ms=s.ingest_session_timeout_ms,
            heartbeat_interval_ms=min(3000, s.ingest_session_timeout_ms // 3),
            # Poison messages bigger than our limit are still fetched (then dead-lettered); 8 MiB
            # per partition keeps a flood of them from cutting every fetch to a few messages.
            max_partition_fetch_bytes=max(8 * 1048576, s.ingest_max_message_bytes * 4))

    def land(self, consumer: KafkaConsumer, producer: KafkaProducer, store: IngestStore,
             polled: dict[TopicPartition, list[Any]]) -> bool:
        """Land one polled batch; True once committed. Retries until done, revoked or stopped."""
        now = datetime.now(UTC)
        batch = decode_batch(polled, self.domain, self.settings.ingest_max_message_bytes, now)
        metrics.CONSUMED.inc(len(batch))
        attempt = 0
        dead_letters: dict[tuple[str, int, int], Any] = {}  # once per batch, not per attempt
        try:
            while True:
                if self.revoked:
                    self.drop_revoked(batch)
                if not batch.records:
                    return False
                try:
                    started = time.perf_counter()
                    # Dead letters go out first and are acknowledged while Cassandra writes;
                    # both are durable before anything is committed. Sent futures that failed
                    # are sent again on the next attempt, those that succeeded are not.
                    self._send_dead_letters(producer, batch, now, dead_letters)
                    store.write_events(batch.rows)
                    store.write_ledger(self.settings.ingest_group,
                                       ledger_entries(batch, self.name, now))
                    self._await_dead_letters(producer, batch, list(dead_letters.values()))
                    metrics.WRITE_LATENCY.observe(time.perf_counter() - started)
                    break
                except (WriteFailed, KafkaError, OSError) as exc:
                    attempt += 1
                    metrics.WRITE_FAILURES.inc()
                    if self.stopping:
                        log.warning("worker %s: stopping with an unlanded batch (%s); its offsets "
                                    "stay uncommitted and will be redelivered", self.name, exc)
                        return False
                    delay = min(self.settings.ingest_retry_max_s, 0.5 * 2 ** min(attempt, 10))
                    log.warning("worker %s: landing failed (attempt %d: %s); pausing fetch, "
                                "retry in %.1fs", self.name, attempt, exc, delay)
                    if not self.backing_off:
                        self.backing_off = True
                        consumer.pause(*consumer.assignment())
                    self._sleep_in_group(consumer, delay)
            return self._commit(consumer, batch)
        finally:
            if self.backing_off:
                self.backing_off = False
                consumer.resume(*consumer.assignment())

    def drop_revoked(self, batch: Batch) -> None:
        """Drop the revoked partitions' records from ``batch`` (they are not ours to land or
        commit), noting where each dropped run starts (``rewind``)."""
        for tp in self.revoked:
            msgs = batch.records.get(tp)
            if msgs:
                self.rewind[tp] = min(self.rewind.get(tp, msgs[0].offset), msgs[0].offset)
        batch.drop(self.revoked)

    def _send_dead_letters(self, producer: KafkaProducer, batch: Batch, now: datetime,
                           sent: dict[tuple[str, int, int], Any]) -> None:
        """Send the batch's dead letters that were not sent yet, or whose send failed, into
        ``sent`` (futures by source topic, partition and offset). The producer's I/O thread
        sends them while we write to Cassandra."""
        topic = self.settings.dead_letter_topic
        kept = {(msg.topic, msg.partition, msg.offset) for msg, _why in batch.rejected}
        for key in set(sent) - kept:  # a revoked partition's: its new owner handles them
            del sent[key]
        for msg, why in batch.rejected:
            key = (msg.topic, msg.partition, msg.offset)
            previous = sent.get(key)
            if previous is None or previous.failed():
                sent[key] = producer.send(topic, key=msg.key,
                                          **dead_letter(msg, msg.value, why, now))

    def _await_dead_letters(self, producer: KafkaProducer, batch: Batch,
                            futures: list[Any]) -> None:
        if not futures:
            return
        producer.flush(timeout=30)
        for fut in futures:
            fut.get(timeout=30)  # raises if the DLQ write failed: then nothing is committed
        for _msg, why in batch.rejected:
            metrics.DEAD_LETTERED.labels(reason=why.reason).inc()
        log.info("worker %s: %d message(s) dead-lettered to %s", self.name,
                 len(batch.rejected), self.settings.dead_letter_topic)

    def _sleep_in_group(self, consumer: KafkaConsumer, seconds: float) -> None:
        """Wait while polling the paused consumer, so the group keeps this member. A partition
        a rebalance hands over is paused by the listener, but a poll may still return records
        (a fetch already in flight): each is rewound, so the next poll returns it again."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline and not self.stopping:
            polled = consumer.poll(timeout_ms=min(500, int((deadline - time.monotonic()) * 1000)
                                               + 1))
            assigned = consumer.assignment()
            for tp, msgs in polled.items():
                if msgs and tp in assigned:
                    consumer.seek(tp, msgs[0].offset)
                    consumer.pause(tp)

    def _commit(self, consumer: KafkaConsumer, batch: Batch) -> bool:
        offsets = {tp: OffsetAndMetadata(msgs[-1].offset + 1, "", -1)
                   for tp, msgs in batch.records.items() if msgs and tp not in self.revoked}
        try:
            consumer.commit(offsets)
        except (CommitFailedError, KafkaError) as exc:
            # Rebalanced (or the coordinator moved) meanwhile: the writes stand (idempotent) and
            # the uncommitted offsets are simply read again, by us or the partition's new owner.
            log.warning("worker %s: commit failed after landing (%s); batch will be redelivered",
                        self.name, exc)
            return False
        metrics.LANDED.inc(len(batch.rows))
        return True


def worker_main(settings: Settings, index: int) -> None:
    """Entry point of a worker process."""
    logging.basicConfig(level=settings.log_level,
                        format=f"%(asctime)s w{index} %(levelname)s %(name)s: %(message)s")
    logging.getLogger("kafka").setLevel(logging.WARNING)
    logging.getLogger("cassandra").setLevel(logging.ERROR)
    kafka_io.quiet_contention_warnings()
    worker = IngestWorker(settings, index)
    signal.signal(signal.SIGTERM, worker.stop)
    signal.signal(signal.SIGINT, worker.stop)
    if settings.ingest_metrics_port:
        metrics.serve(settings.ingest_metrics_port + index)
    worker.run()

