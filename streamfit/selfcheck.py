"""Prove the stack works end to end at the lowest level: ``streamfit selfcheck``.

Run by ``make demo`` after ``stack up`` and ``db migrate``: one event produced to Kafka is read
back, and one row written to Cassandra is read back. Each check returns what it saw, so the tests
assert on real values.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

from cassandra import InvalidRequest
from kafka import TopicPartition

from streamfit import kafka as kafka_io
from streamfit.cassandra import connect
from streamfit.settings import Settings

SELFCHECK_TOPIC = "streamfit.selfcheck"


class SelfCheckFailed(RuntimeError):
    pass


@dataclass(frozen=True)
class RoundTrip:
    sent: str
    received: str
    where: str
    millis: float


def kafka_round_trip(settings: Settings, timeout_s: float = 30.0) -> RoundTrip:
    """Produce one message and read that exact message back from its partition and offset."""
    kafka_io.ensure_topic(settings, SELFCHECK_TOPIC, partitions=1)
    token = json.dumps({"check_id": str(uuid.uuid4()), "at": datetime.now(UTC).isoformat()})
    start = time.perf_counter()
    producer = kafka_io.producer(settings, client_id="streamfit-selfcheck")
    try:
        meta = producer.send(SELFCHECK_TOPIC, token.encode()).get(timeout=timeout_s)
    finally:
        producer.close()
    consumer = kafka_io.consumer(settings, group_id=None, client_id="streamfit-selfcheck")
    try:
        tp = TopicPartition(meta.topic, meta.partition)
        consumer.assign([tp])
        consumer.seek(tp, meta.offset)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for records in consumer.poll(timeout_ms=1000).values():
                for record in records:
                    if record.offset == meta.offset:
                        return RoundTrip(token, record.value.decode(),
                                         f"{meta.topic}[{meta.partition}]@{meta.offset}",
                                         (time.perf_counter() - start) * 1000)
    finally:
        consumer.close()
    raise SelfCheckFailed(f"message sent to {SELFCHECK_TOPIC}@{meta.offset} was not read back")


def cassandra_round_trip(settings: Settings) -> RoundTrip:
    """Write one row to ``stack_checks`` and read it back by its key."""
    check_id = str(uuid.uuid4())
    payload = json.dumps({"check_id": check_id})
    table = f"{settings.keyspace}.stack_checks"
    start = time.perf_counter()
    with connect(settings, keyspace=None) as session:
        try:
            insert = session.prepare(
                f"INSERT INTO {table} (check_id, written_at, payload) VALUES (?, ?, ?)")
        except InvalidRequest as exc:
            raise SelfCheckFailed(
                f"{table} does not exist ({exc}): run `streamfit db migrate` first") from None
        select = session.prepare(f"SELECT payload FROM {table} WHERE check_id = ?")
        session.execute(insert, (check_id, datetime.now(UTC), payload))
        row = session.execute(select, (check_id,)).one()
    if row is None:
        raise SelfCheckFailed(f"row {check_id} written to {table} was not read back")
    return RoundTrip(payload, row.payload, table,
                     (time.perf_counter() - start) * 1000)


def run_selfcheck(settings: Settings) -> list[RoundTrip]:
    """Both round trips; raises SelfCheckFailed unless each read back exactly what it wrote."""
    results = [kafka_round_trip(settings), cassandra_round_trip(settings)]
    for result in results:
        if result.received != result.sent:
            raise SelfCheckFailed(
                f"{result.where}: read back {result.received!r}, sent {result.sent!r}")
    return results
