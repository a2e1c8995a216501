"""The dead-letter topic: its record format (written by the ingest workers), ``streamfit dlq
list`` and ``streamfit dlq replay``.

Every dead letter is the original message (key and bytes) with headers saying where it came from
(``dlq.source.topic/partition/offset``), why it was refused (``dlq.reason``, ``dlq.detail``) and
when. One exception: a message refused for its size keeps only its first ``OVERSIZE_KEPT_BYTES``,
with ``dlq.original_bytes`` giving the full size. A full copy plus headers may not fit the topic
at all (a message near the broker's limit stalled its partition), and copying every oversize
payload again made a poison flood slower. The original stays in the source
topic for its retention (7 days by default), and replay reads it from there.

``replay`` re-validates each pending dead letter: those that pass now (the producer, the domain
schema or the size limit was fixed) go back to their source topic; the others are appended to the
DLQ again with the current reason, so they stay pending for the next replay. An oversize letter
whose original the source topic no longer holds is counted as expired and not kept pending, since
nothing can bring it back. The replay consumer group ``<ingest group>-dlq-replay`` remembers how
far replay got.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import groupby
from typing import Any

from kafka import TopicPartition
from kafka.structs import OffsetAndMetadata

from ingest.envelope import Rejection, decode
from streamfit import kafka as kafka_io
from streamfit.domains import load_domain
from streamfit.settings import Settings

# What an oversize dead letter keeps of its message: enough to see what it was.
OVERSIZE_KEPT_BYTES = 4096
# Room for the headers and the record batch around the largest message a dead letter copies.
_HEADROOM_BYTES = 65536


def dlq_max_message_bytes(settings: Settings) -> int:
    """The largest dead letter: the dead-letter topic is created to accept it."""
    return max(1048588, settings.ingest_max_message_bytes + _HEADROOM_BYTES)


def dead_letter_headers(msg: Any, why: Rejection, now: datetime) -> list[tuple[str, bytes]]:
    return [
        ("dlq.reason", why.reason.encode()),
        ("dlq.detail", why.detail.encode("utf-8", "replace")[:2000]),
        ("dlq.source.topic", msg.topic.encode()),
        ("dlq.source.partition", str(msg.partition).encode()),
        ("dlq.source.offset", str(msg.offset).encode()),
        ("dlq.failed_at", now.isoformat().encode()),
    ]


def dead_letter(source: Any, value: bytes | None, why: Rejection, now: datetime
                ) -> dict[str, Any]:
    """Value and headers of the dead letter for ``source`` (a record's topic/partition/offset)."""
    headers = dead_letter_headers(source, why, now)
    if why.reason == "oversize" and value is not None and len(value) > OVERSIZE_KEPT_BYTES:
        headers.append(("dlq.original_bytes", str(len(value)).encode()))
        value = value[:OVERSIZE_KEPT_BYTES]
    return {"value": value, "headers": headers}


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

    @property
    def origin(self) -> tuple[str, int, int]:
        """(topic, partition, offset) of the message this letter was made from."""
        h = self.headers
        return (h.get("dlq.source.topic", "?"), int(h.get("dlq.source.partition", "-1")),
                int(h.get("dlq.source.offset", "-1")))

    @property
    def truncated(self) -> bool:
        """Only the start of an oversize message was kept; the original is in its source."""
        return "dlq.original_bytes" in self.headers


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
    expired: int = 0  # oversize letters whose original the source topic no longer holds


class OriginalUnreadable(RuntimeError):
    """The source record of an oversize dead letter could not be read back; nothing was replayed."""


def replay_dead_letters(settings: Settings, dry_run: bool = False) -> ReplayResult:
    domain = load_domain(settings.domain)
    group = f"{settings.ingest_group}-dlq-replay"
    letters, consumer = _read(settings, group, None, from_committed=True)
    producer = kafka_io.producer(settings, client_id="streamfit-dlq-replay",
                                 max_request_size=dlq_max_message_bytes(settings))
    resubmitted = still_invalid = expired = 0
    reasons: dict[str, int] = {}
    now = datetime.now(UTC)
    try:
        originals = _originals(settings, letters)
        futures = []
        for letter in letters:
            value = letter.value
            if letter.truncated:
                value = originals[letter.origin]
                if value is None:
                    expired += 1
                    continue
            verdict = decode(value, domain, settings.ingest_max_message_bytes, now)
            if isinstance(verdict, Rejection):
                still_invalid += 1
                reasons[verdict.reason] = reasons.get(verdict.reason, 0) + 1
                if not dry_run:
                    again = dead_letter(_SourceRecord(letter), value, verdict, now)
                    again["headers"].append(("dlq.replayed_from", str(letter.offset).encode()))
                    futures.append(producer.send(settings.dead_letter_topic, key=letter.key,
                                                 **again))
                continue
            resubmitted += 1
            if not dry_run:
                futures.append(producer.send(
                    letter.headers.get("dlq.source.topic") or settings.events_topic,
                    key=letter.key, value=value))
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
    return ReplayResult(len(letters), resubmitted, still_invalid, reasons, expired)


def _originals(settings: Settings, letters: list[DeadLetter]
               ) -> dict[tuple[str, int, int], bytes | None]:
    """The full bytes of the truncated (oversize) letters, read back from their source topic;
    None where retention has deleted the record."""
    wanted = sorted({letter.origin for letter in letters if letter.truncated})
    if not wanted:
        return {}
    found: dict[tuple[str, int, int], bytes | None] = {}
    consumer = kafka_io.consumer(settings, group_id=None, client_id="streamfit-dlq-originals")
    try:
        for (topic, partition), group in groupby(wanted, key=lambda o: o[:2]):
            tp = TopicPartition(topic, partition)
            consumer.assign([tp])
            first = consumer.beginning_offsets([tp])[tp]
            end = consumer.end_offsets([tp])[tp]
            for _t, _p, offset in group:
                if first <= offset < end:
                    consumer.seek(tp, offset)
                    found[(topic, partition, offset)] = _value_at(consumer, tp, offset)
                else:
                    found[(topic, partition, offset)] = None
    finally:
        consumer.close(autocommit=False)
    return found


def _value_at(consumer: Any, tp: TopicPartition, offset: int, timeout_s: float = 30.0
              ) -> bytes | None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for record in consumer.poll(timeout_ms=1000, max_records=1).get(tp, []):
            return record.value if record.offset == offset else None  # else compacted away
    raise OriginalUnreadable(
        f"could not read {tp.topic}[{tp.partition}]@{offset}, the original of an oversize dead "
        f"letter, within {timeout_s:.0f}s; check the broker and run `streamfit dlq replay` again")


class _SourceRecord:
    """The original source coordinates of a dead letter, shaped like a consumer record."""

    def __init__(self, letter: DeadLetter) -> None:
        self.topic, self.partition, self.offset = letter.origin
