"""Kafka client configuration shared by every streamfit producer, consumer and admin client.

One place sets the bootstrap servers, client ids and the durability settings (acks=all plus
idempotence on producers), so the ingest service, the replay producer and the tests agree.
"""

from __future__ import annotations

import time
from typing import Any

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
from kafka.errors import (
    CoordinatorLoadInProgressError,
    CoordinatorNotAvailableError,
    GroupIdNotFoundError,
    NotCoordinatorError,
    TopicAlreadyExistsError,
)

from streamfit.settings import Settings


def client_config(settings: Settings, client_id: str) -> dict[str, Any]:
    return {"bootstrap_servers": settings.bootstrap_servers.split(","), "client_id": client_id}


def producer(settings: Settings, client_id: str = "streamfit-producer",
             **overrides: Any) -> KafkaProducer:
    """A durable producer: every write acknowledged by all in-sync replicas, no duplicates on retry."""
    config: dict[str, Any] = {
        **client_config(settings, client_id),
        "acks": "all",
        "enable_idempotence": True,
        "linger_ms": 5,
        "compression_type": None,
    }
    config.update(overrides)
    return KafkaProducer(**config)


def consumer(settings: Settings, group_id: str | None, client_id: str = "streamfit-consumer",
             **overrides: Any) -> KafkaConsumer:
    """A consumer that never auto-commits: offsets are committed only after the work is durable."""
    config: dict[str, Any] = {
        **client_config(settings, client_id),
        "group_id": group_id,
        "enable_auto_commit": False,
        "auto_offset_reset": "earliest",
    }
    config.update(overrides)
    return KafkaConsumer(**config)


def admin(settings: Settings, client_id: str = "streamfit-admin") -> KafkaAdminClient:
    return KafkaAdminClient(**client_config(settings, client_id), request_timeout_ms=30000)


def ensure_topic(settings: Settings, name: str, partitions: int,
                 configs: dict[str, str] | None = None) -> bool:
    """Create ``name`` if missing (True if created). Existing topics are left as they are."""
    client = admin(settings)
    try:
        client.create_topics(
            {name: {"num_partitions": partitions, "replication_factor": 1,
                    "configs": configs or {}}},
            wait_for_metadata=True,
        )
        return True
    except TopicAlreadyExistsError:
        return False
    finally:
        client.close()


def committed_offsets(client: KafkaAdminClient, group: str, topic: str) -> dict[int, int]:
    """Partition -> committed offset of ``group`` on ``topic`` ({} before its first commit).

    On a fresh cluster the group coordinator (the __consumer_offsets topic) may not exist yet or
    may still be moving: retried briefly, then read as "nothing committed yet". Every caller
    polls, so the next call sees the real offsets.
    """
    offsets: dict[Any, Any] = {}
    for attempt in range(6):
        try:
            offsets = client.list_group_offsets(group).get(group, {})
            break
        except GroupIdNotFoundError:
            return {}
        except (CoordinatorNotAvailableError, NotCoordinatorError,
                CoordinatorLoadInProgressError):
            if attempt == 5:
                return {}
            time.sleep(0.2 * 2**attempt)
    return {tp.partition: om.offset for tp, om in offsets.items()
            if tp.topic == topic and om.offset is not None and om.offset >= 0}
