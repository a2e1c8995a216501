"""Real Kafka + Cassandra fixtures for the ingest service: a topic, group and keyspace per test."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import date

from kafka import TopicPartition
from kafka.admin import OffsetSpec

from ingest.service import IngestService
from ingest.store import IngestStore
from streamfit import kafka as kafka_io
from streamfit.cassandra import connect
from streamfit.settings import Settings


@contextmanager
def running_ingest(settings: Settings, workers: int = 2) -> Iterator[IngestService]:
    """The real ingest service (worker processes) in a background thread of the test."""
    events: list[str] = []
    service = IngestService(settings, workers, on_event=events.append)
    thread = threading.Thread(target=service.run, kwargs={"install_signals": False}, daemon=True)
    thread.start()
    try:
        yield service
    finally:
        service.stop()
        thread.join(120)
        assert not thread.is_alive(), "ingest service did not stop"


def end_offsets(settings: Settings, topic: str | None = None) -> dict[int, int]:
    admin = kafka_io.admin(settings)
    try:
        topic = topic or settings.events_topic
        meta = admin.describe_topics([topic])
        specs = {TopicPartition(topic, p["partition_index"]): OffsetSpec.LATEST
                 for t in meta for p in t["partitions"]}
        return {tp.partition: o.offset for tp, o in admin.list_partition_offsets(specs).items()}
    finally:
        admin.close()


def committed(settings: Settings) -> dict[int, int]:
    admin = kafka_io.admin(settings)
    try:
        return kafka_io.committed_offsets(admin, settings.ingest_group, settings.events_topic)
    finally:
        admin.close()


def wait_for(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(1)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


def wait_caught_up(settings: Settings, timeout: float = 180) -> None:
    ends = end_offsets(settings)
    wait_for(lambda: all(committed(settings).get(p, 0) >= e for p, e in ends.items()),
             timeout, f"group {settings.ingest_group} to commit up to {ends}")


def landed_ids(settings: Settings, days: set[date]) -> list[str]:
    with connect(settings) as session:
        store = IngestStore(session, settings.keyspace)
        return [eid for d in sorted(days) for _t, eid in store.event_ids_of_day(d)]
