"""Send events to Kafka: the Python API behind ``streamfit produce replay`` and ``produce file``.

The message key is the entity key (all events of one flight land on one partition, in order);
the producer is idempotent with acks=all, so its own retries never duplicate a message.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from ingest.envelope import Rejection, decode, encode
from streamfit import kafka as kafka_io
from streamfit.domains import Domain
from streamfit.settings import Settings


class ProduceFailed(RuntimeError):
    """Kafka did not acknowledge some messages; the message says how many and why."""


@dataclass
class ProduceStats:
    sent: int = 0
    seconds: float = 0.0
    first_event_time: str | None = None
    last_event_time: str | None = None
    rejected: list[str] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return self.sent / self.seconds if self.seconds else 0.0


def send_events(settings: Settings, events: Iterable[dict[str, Any]], *,
                speed: float | None = None, topic: str | None = None,
                on_progress: Callable[[int], None] = lambda _n: None) -> ProduceStats:
    """Send envelope dicts in order. ``speed``: N x real time by event time (None: max speed)."""
    topic = topic or settings.events_topic
    producer = kafka_io.producer(settings, client_id="streamfit-produce", linger_ms=20,
                                 batch_size=512 * 1024)
    stats = ProduceStats()
    errors: list[BaseException] = []
    start = time.monotonic()
    first: datetime | None = None
    try:
        for n, event in enumerate(events, 1):
            if speed is not None:
                t = datetime.fromisoformat(event["event_time"])
                first = first or t
                due = (t - first).total_seconds() / speed
                lag = due - (time.monotonic() - start)
                if lag > 0:
                    time.sleep(lag)
            key = event.get("entity_key")
            producer.send(topic, key=key.encode() if isinstance(key, str) else None,
                          value=encode(event)).add_errback(errors.append)
            stats.first_event_time = stats.first_event_time or event.get("event_time")
            stats.last_event_time = event.get("event_time")
            stats.sent = n
            if n % 5000 == 0:
                on_progress(n)
                if errors:
                    break
        producer.flush(timeout=120)
    finally:
        producer.close(timeout=30)
    stats.seconds = time.monotonic() - start
    on_progress(stats.sent)
    if errors:
        raise ProduceFailed(f"{len(errors)} message(s) were not acknowledged by Kafka; first: "
                            f"{errors[0]}")
    return stats


def read_jsonl(path: Path, domain: Domain, max_bytes: int,
               rejected: list[str]) -> Iterator[dict[str, Any]]:
    """Valid events of a JSON-lines file; each invalid line is reported (numbered) and skipped."""
    with open(path, "rb") as fh:
        for lineno, line in enumerate(fh, 1):
            line = line.strip()
            if not line:
                continue
            result = decode(line, domain, max_bytes)
            if isinstance(result, Rejection):
                rejected.append(f"line {lineno}: {result}")
                continue
            yield json.loads(line)
