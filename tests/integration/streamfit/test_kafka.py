from __future__ import annotations

import time

from kafka import TopicPartition

from streamfit import kafka as kafka_io
from streamfit.settings import Settings


def test_produce_consume_round_trip(stack: Settings, topic_name: str) -> None:
    assert kafka_io.ensure_topic(stack, topic_name, partitions=3)
    assert not kafka_io.ensure_topic(stack, topic_name, partitions=3)  # idempotent
    sent = {f"key-{i}": f"value-{i}" for i in range(50)}
    producer = kafka_io.producer(stack)
    try:
        futures = [producer.send(topic_name, key=k.encode(), value=v.encode())
                   for k, v in sent.items()]
        partitions = {f.get(timeout=30).partition for f in futures}
    finally:
        producer.close()
    assert partitions == {0, 1, 2}  # keys spread over all partitions

    consumer = kafka_io.consumer(stack, group_id=f"g-{topic_name}")
    received: dict[str, str] = {}
    try:
        consumer.subscribe([topic_name])
        deadline = time.monotonic() + 60
        while len(received) < len(sent) and time.monotonic() < deadline:
            for records in consumer.poll(timeout_ms=1000).values():
                for r in records:
                    received[r.key.decode()] = r.value.decode()
        consumer.commit()
        committed = {p: consumer.committed(TopicPartition(topic_name, p)) for p in range(3)}
    finally:
        consumer.close()
    assert received == sent
    assert sum(committed.values()) == len(sent)  # manual commit covered exactly what was read

    # An admin asks the group's coordinator, which kafka-python caches for the client's life;
    # forgetting it makes the next call look it up again, with the same answer.
    group = f"g-{topic_name}"
    admin = kafka_io.admin(stack)
    try:
        assert kafka_io.committed_offsets(admin, group, topic_name) == committed
        assert kafka_io.forget_coordinator(admin, group)
        assert not kafka_io.forget_coordinator(admin, group)  # nothing cached any more
        assert kafka_io.committed_offsets(admin, group, topic_name) == committed
        assert kafka_io.forget_coordinator(admin, group)  # looked up and cached again
    finally:
        admin.close()


def test_selfcheck_reads_back_what_it_wrote(stack: Settings) -> None:
    from streamfit.selfcheck import kafka_round_trip

    result = kafka_round_trip(stack)
    assert result.received == result.sent
    assert result.where.startswith("streamfit.selfcheck[0]@")


def test_topics_are_created_with_the_configured_replication_factor(stack: Settings,
                                                                   topic_name: str) -> None:
    import pytest
    from kafka.errors import InvalidReplicationFactorError

    # the local stack has one broker: a factor of 2 cannot be met, and must not be quietly 1
    with pytest.raises(InvalidReplicationFactorError):
        kafka_io.ensure_topic(stack.model_copy(update={"kafka_replication_factor": 2}),
                              topic_name, partitions=1)
    assert kafka_io.ensure_topic(stack, topic_name, partitions=1)
    admin = kafka_io.admin(stack)
    try:
        [meta] = admin.describe_topics([topic_name])
        assert {len(p["replica_nodes"]) for p in meta["partitions"]} == {1}
    finally:
        admin.close()
