"""``streamfit ingest status``: lag per partition and the landing rate, from Kafka's own view
(the group's committed offsets against the log end), so it works with or without the service."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

from kafka import TopicPartition
from kafka.admin import OffsetSpec

from streamfit import kafka as kafka_io
from streamfit.settings import Settings


def _committed(admin: Any, settings: Settings) -> dict[int, int]:
    return kafka_io.committed_offsets(admin, settings.ingest_group, settings.events_topic)


def _partitions(admin: Any, topic: str) -> list[int]:
    return sorted(p["partition_index"] for t in admin.describe_topics([topic])
                  for p in t.get("partitions", []))


def _ends(admin: Any, topic: str, partitions: list[int]) -> dict[int, int]:
    if not partitions:
        return {}
    specs = {TopicPartition(topic, p): OffsetSpec.LATEST for p in partitions}
    return {tp.partition: ot.offset for tp, ot in admin.list_partition_offsets(specs).items()}


def end_offsets(settings: Settings, topic: str | None = None) -> dict[int, int]:
    """Partition -> log end offset of ``topic`` (default: the events topic)."""
    admin = kafka_io.admin(settings, client_id="streamfit-status")
    try:
        topic = topic or settings.events_topic
        return _ends(admin, topic, _partitions(admin, topic))
    finally:
        admin.close()


def committed(settings: Settings) -> dict[int, int]:
    """Partition -> offset the ingest group committed on the events topic."""
    admin = kafka_io.admin(settings, client_id="streamfit-status")
    try:
        return _committed(admin, settings)
    finally:
        admin.close()


def group_status(settings: Settings, sample_s: float = 2.0) -> dict[str, Any]:
    admin = kafka_io.admin(settings, client_id="streamfit-status")
    try:
        partitions = _partitions(admin, settings.events_topic)
        first = _committed(admin, settings)
        started = time.monotonic()
        if sample_s:
            time.sleep(sample_s)
        second = _committed(admin, settings)
        elapsed = time.monotonic() - started
        ends = _ends(admin, settings.events_topic, partitions)
        dlq = settings.dead_letter_topic
        dead = sum(_ends(admin, dlq, _partitions(admin, dlq)).values())
    finally:
        admin.close()
    offsets = {p: (second.get(p, 0), ends.get(p, 0)) for p in partitions}
    stalled = stalled_partitions(offsets, _last_landed(settings, offsets), datetime.now(UTC),
                                 settings.pipeline_stall_after_s)
    rows = [{"partition": p, "committed": second.get(p, 0), "end": ends.get(p, 0),
             "lag": max(0, ends.get(p, 0) - second.get(p, 0)), "stalled": stalled.get(p)}
            for p in partitions]
    moved = sum(second.values()) - sum(first.values())
    return {"partitions": rows, "lag": sum(r["lag"] for r in rows), "stalled": len(stalled),
            "rate": moved / elapsed if sample_s and elapsed else 0.0, "dead_letters": dead}


def _last_landed(settings: Settings, offsets: dict[int, tuple[int, int]]
                 ) -> dict[int, datetime | None]:
    """When the newest batch below each lagging partition's committed offset landed."""
    from streamfit.cassandra import connect
    from streamfit.store import IngestStore

    lagging = [p for p, (committed, end) in offsets.items() if end > committed]
    if not lagging:
        return {}
    with connect(settings) as session:
        store = IngestStore(session, settings.keyspace)
        return {p: store.last_landed(settings.ingest_group, settings.events_topic, p,
                                     offsets[p][0]) for p in lagging}


def source_offsets(admin: Any, group: str, topic: str) -> dict[int, tuple[int, int]]:
    """Partition -> (committed offset, log end) of ``group`` on ``topic``."""
    committed = kafka_io.committed_offsets(admin, group, topic)
    ends = _ends(admin, topic, _partitions(admin, topic))
    return {p: (committed.get(p, 0), end) for p, end in ends.items()}


def stalled_partitions(offsets: dict[int, tuple[int, int]],
                       last_landed: dict[int, datetime | None], now: datetime,
                       after_s: float) -> dict[int, str]:
    """Partitions with lag whose newest landed batch is older than ``after_s`` (or that never
    landed one), with a reason: the committed offset stopped moving while data waits."""
    out = {}
    for p, (committed, end) in sorted(offsets.items()):
        if end <= committed:
            continue
        landed = last_landed.get(p)
        if landed is None:
            out[p] = f"lag {end - committed}, nothing landed yet"
        elif (now - landed).total_seconds() > after_s:
            out[p] = (f"lag {end - committed}, committed offset {committed} unchanged for "
                      f"{(now - landed).total_seconds():.0f}s")
    return out
