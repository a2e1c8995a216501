"""Prometheus metrics of an ingest worker (one HTTP endpoint per worker process).

Served on ``STREAMFIT_INGEST_METRICS_PORT + worker index`` while ``streamfit ingest run`` runs.
"""

from __future__ import annotations

import logging
from typing import Any

from prometheus_client import Counter, Gauge, Histogram, start_http_server

CONSUMED = Counter("streamfit_ingest_consumed", "Messages polled from Kafka")
LANDED = Counter("streamfit_ingest_landed", "Events written to Cassandra and committed")
DEAD_LETTERED = Counter("streamfit_ingest_dead_lettered", "Messages sent to the dead-letter topic",
                        ["reason"])
WRITE_FAILURES = Counter("streamfit_ingest_write_failures", "Failed landing attempts (retried)")
WRITE_LATENCY = Histogram(
    "streamfit_ingest_write_seconds", "Time to land one batch (DLQ + events + ledger)",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30))
LAG = Gauge("streamfit_ingest_lag", "Messages behind the log end, per partition",
            ["topic", "partition"])


STALLED = Gauge("streamfit_ingest_partition_stalled",
                "1 while a partition has lag and its committed offset has not moved for "
                "STREAMFIT_PIPELINE_STALL_AFTER_S (served by the ingest supervisor)", ["partition"])


def observe_lag(consumer: Any) -> None:
    """Lag from the high watermark the last fetch saw (no extra requests to the broker)."""
    for tp in consumer.assignment():
        high = consumer.highwater(tp)
        if high is None:
            continue
        try:
            position = consumer.position(tp, timeout_ms=100)
        except Exception:  # noqa: BLE001 - metrics must never break landing
            continue
        if position is not None:
            LAG.labels(topic=tp.topic, partition=str(tp.partition)).set(max(0, high - position))


def serve(port: int) -> None:
    try:
        start_http_server(port, addr="127.0.0.1")
    except OSError as exc:  # metrics must never stop landing
        logging.getLogger("streamfit.ingest").warning(
            "metrics port %d not served (%s); set STREAMFIT_INGEST_METRICS_PORT", port, exc)
