"""The dead-letter topic: ``streamfit dlq list`` and ``streamfit dlq replay``.

Every dead letter is the original message (key and bytes) with headers saying where it came from
(``dlq.source.topic/partition/offset``), why it was refused (``dlq.reason``, ``dlq.detail``) and
when. ``replay`` re-validates each pending dead letter: those that pass now (the producer or the
domain schema was fixed) go back to their source topic; the others are appended to the DLQ again
with the current reason, so they stay pending for the next replay. The replay consumer group
``<ingest group>-dlq-replay`` remembers how far replay got.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from kafka import TopicPartition
from kafka.structs import OffsetAndMetadata

from ingest.envelope import Rejection, decode
from ingest.worker import dead_letter_headers
from streamfit import kafka as kafka_io
from streamfit.domains import load_domain
from streamfit.settings import Settings


@dataclass(frozen=True)
class DeadLetter:
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: dict[str, str]

    @property
    def reason(self) -> str:
        return self.headers.get("dlq.reason", "?")

    @property
    def source(self) -> str:
        h = self.headers
        return f"{h.get('dlq.source.topic')}[{h.get('dlq.source.partition')}]@" \
               f"{h.get('dlq.source.offset')}"


def _headers(raw: list[tuple[str, bytes]] | None) -> dict[str, str]:
    return {k: v.decode("utf-8", "replace") for k, v in raw or []}


def _read(settings: Settings, group: str | None, limit: int | None,
          from_committed: bool) -> tuple[list[DeadLetter], Any]:
    topic = settings.dead_letter_topic
    consumer = kafka_io.consumer(settings, group_id=group, client_id="streamfit-dlq")
    partitions = consumer.partitions_for_topic(topic) or set()
    tps = [TopicPartition(topic, p) for p in sorted(partitions)]
    consumer.assign(tps)
    end = consumer.end_offsets(tps)
    for tp in tps:
        committed = consumer.committed(tp) if from_committed else None
        if committed is None:
            consumer.seek_to_beginning(tp)
        else:
            consumer.seek(tp, committed)
    letters: list[DeadLetter] = []
    remaining = {tp for tp in tps if consumer.position(tp) < end[tp]}
    deadline = time.monotonic() + 60
    while remaining and time.monotonic() < deadline and (limit is None or len(letters) < limit):
        for tp, records in consumer.poll(timeout_ms=1000).items():
            for r in records:
                if r.offset < end[tp]:
                    letters.append(DeadLetter(r.partition, r.offset, r.key, r.value, _headers(r.headers)))
            if consumer.position(tp) >= end[tp]:
                remaining.discard(tp)
    if limit is not None:
        letters = letters[:limit]
    return letters, consumer


def list_dead_letters(settings: Settings, limit: int | None = 100,
                      pending_only: bool = False) -> list[DeadLetter]:
    group = f"{settings.ingest_group}-dlq-replay" if pending_only else None
    letters, consumer = _read(settings, group, limit, from_committed=pending_only)
    consumer.close(autocommit=False)
    return letters


@dataclass(frozen=True)
class ReplayResult:
    read: int
    resubmitted: int
    still_invalid: int
    reasons: dict[str, int]


def replay_dead_letters(settings: Settings, dry_run: bool = False) -> ReplayResult:
    domain = load_domain(settings.domain)
    group = f"{settings.ingest_group}-dlq-replay"
    letters, consumer = _read(settings, group, None, from_committed=True)
    producer = kafka_io.producer(settings, client_id="streamfit-dlq-replay")
    resubmitted = still_invalid = 0
    reasons: dict[str, int] = {}
    now = datetime.now(UTC)
    try:
        futures = []
        for letter in letters:
            verdict = decode(letter.value, domain, settings.ingest_max_message_bytes, now)
            if isinstance(verdict, Rejection):
                still_invalid += 1
                reasons[verdict.reason] = reasons.get(verdict.reason, 0) + 1
                if not dry_run:
                    source = _SourceRecord(letter)
                    futures.append(producer.send(
                        settings.dead_letter_topic, key=letter.key, value=letter.value,
                        headers=[*dead_letter_headers(source, verdict, now),
                                 ("dlq.replayed_from", str(letter.offset).encode())]))
                continue
            resubmitted += 1
            if not dry_run:
                futures.append(producer.send(
                    letter.headers.get("dlq.source.topic") or settings.events_topic,
                    key=letter.key, value=letter.value))
        if not dry_run:
            producer.flush(timeout=60)
            for fut in futures:
                fut.get(timeout=30)  # all re-sent before the replay position moves on
            done: dict[TopicPartition, OffsetAndMetadata] = {}
            for letter in letters:
                done[TopicPartition(settings.dead_letter_topic, letter.partition)] = \
                    OffsetAndMetadata(letter.offset + 1, "", -1)
            if done:
                consumer.commit(done)
    finally:
        producer.close(timeout=10)
        consumer.close(autocommit=False)
    return ReplayResult(len(letters), resubmitted, still_invalid, reasons)


class _SourceRecord:
    """The original source coordinates of a dead letter, shaped like a consumer record."""

    def __init__(self, letter: DeadLetter) -> None:
        self.topic = letter.headers.get("dlq.source.topic", "?")
        self.partition = int(letter.headers.get("dlq.source.partition", "-1"))
        self.offset = int(letter.headers.get("dlq.source.offset", "-1"))
