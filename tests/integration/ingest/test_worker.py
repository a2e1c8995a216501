"""The ingest worker's rebalance bookkeeping against the real Kafka (a real consumer and its
fetch positions): a batch's partition revoked while the batch waits to land, then handed back."""

from __future__ import annotations

import time
from datetime import UTC, date, datetime

from ingest.producer import send_events
from ingest.worker import IngestWorker, _Rebalance, decode_batch
from streamfit.domains import ReplayOptions, load_domain
from streamfit.settings import Settings


def test_a_partition_handed_back_is_read_again_from_the_batch_it_dropped(
        ingest_settings: Settings) -> None:
    """Cassandra is down, so a polled batch waits to land. The group rebalances in two polls
    (kafka-python calls the revoke listener in one, the assign listener in a later one). In
    between, the batch drops its revoked partitions. When the same partitions come back,
    kafka-python keeps their fetch positions, which are past the dropped records. Unless the
    worker reads them again, its next commit skips records that never landed: the chaos
    scenario "rebalance during a Cassandra outage" lost 510 events this way."""
    s = ingest_settings
    domain = load_domain("flights")
    events = list(domain.replay("nycflights13", ReplayOptions(date(2013, 1, 1), date(2013, 1, 1))))
    send_events(s, events[:600])
    worker = IngestWorker(s, 0)
    consumer = worker.consumer = worker._consumer()
    listener = _Rebalance(worker)
    consumer.subscribe([s.events_topic], listener=listener)
    polled: dict = {}
    deadline = time.monotonic() + 60
    while not polled and time.monotonic() < deadline:
        polled = consumer.poll(timeout_ms=500, max_records=200)
    try:
        assert polled, "nothing polled from the topic"
        batch = decode_batch(polled, domain, s.ingest_max_message_bytes, datetime.now(UTC))
        first = {tp: msgs[0].offset for tp, msgs in polled.items()}
        ahead = {tp: consumer.position(tp) for tp in first}
        assert all(ahead[tp] > first[tp] for tp in first)
        # the rebalance's first half (what kafka-python does in the poll that starts a join) ...
        listener.on_partitions_revoked(set(consumer.assignment()))
        worker.drop_revoked(batch)  # ... the waiting batch lets the revoked partitions go ...
        assert not batch.records and not batch.rows
        # ... and its second half: the same partitions assigned again, their state (and fetch
        # position) kept, as kafka-python 3's assign_from_subscribed keeps it
        assigned = set(consumer.assignment())
        assert {tp: consumer.position(tp) for tp in first} == ahead
        listener.on_partitions_assigned(assigned)
        assert {tp: consumer.position(tp) for tp in first} == first
        assert not worker.rewind and not worker.revoked
        # the next poll returns the dropped records again, from the first one
        again: dict = {}
        while not again and time.monotonic() < deadline:
            again = consumer.poll(timeout_ms=500, max_records=200)
        assert {tp: msgs[0].offset for tp, msgs in again.items() if tp in first} == {
            tp: first[tp] for tp in again if tp in first}
        assert again
    finally:
        consumer.close(autocommit=False)
