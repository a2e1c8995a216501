"""``streamfit ingest status``: lag per partition and the landing rate, from Kafka's own view
(the group's committed offsets against the log end), so it works with or without the service."""

from __future__ import annotations

import time
from typing import Any

from kafka import TopicPartition
from kafka.admin import OffsetSpec

from streamfit import kafka as kafka_io
from streamfit.settings import Settings


def _committed(admin: Any, settings: Settings) -> dict[int, int]:
    return kafka_io.committed_offsets(admin, settings.ingest_group, settings.events_topic)


def _ends(admin: Any, topic: str, partitions: list[int]) -> dict[int, int]:
    specs = {TopicPartition(topic, p): OffsetSpec.LATEST for p in partitions}
    return {tp.partition: ot.offset for tp, ot in admin.list_partition_offsets(specs).items()}


def group_status(settings: Settings, sample_s: float = 2.0) -> dict[str, Any]:
    admin = kafka_io.admin(settings, client_id="streamfit-status")
    try:
        meta = admin.describe_topics([settings.events_topic])
        partitions = sorted(p["partition_index"] for t in meta for p in t["partitions"])
        first = _committed(admin, settings)
        started = time.monotonic()
        if sample_s:
            time.sleep(sample_s)
        second = _committed(admin, settings)
        elapsed = time.monotonic() - started
        ends = _ends(admin, settings.events_topic, partitions)
        dlq = settings.dead_letter_topic
        dlq_meta = admin.describe_topics([dlq])
        dlq_parts = [p["partition_index"] for t in dlq_meta for p in t.get("partitions", [])]
        dead = sum(_ends(admin, dlq, dlq_parts).values()) if dlq_parts else 0
    finally:
        admin.close()
    rows = [{"partition": p, "committed": second.get(p, 0), "end": ends.get(p, 0),
             "lag": max(0, ends.get(p, 0) - second.get(p, 0))} for p in partitions]
    moved = sum(second.values()) - sum(first.values())
    return {"partitions": rows, "lag": sum(r["lag"] for r in rows),
            "rate": moved / elapsed if sample_s and elapsed else 0.0, "dead_letters": dead}
