from __future__ import annotations

import uuid

import pytest

from ingest.service import ensure_topics
from streamfit.settings import Settings


@pytest.fixture(autouse=True)
def _require_stack(stack: Settings) -> None:
    """Every integration test runs against the real stack."""


@pytest.fixture
def ingest_settings(keyspace_settings: Settings) -> Settings:
    return _with_topic(keyspace_settings)


@pytest.fixture
def fresh_ingest_settings(fresh_keyspace_settings: Settings) -> Settings:
    """Like ingest_settings, in a keyspace of the test's own (nothing landed before it)."""
    return _with_topic(fresh_keyspace_settings)


def _with_topic(base: Settings) -> Settings:
    """A topic and consumer group of their own, the topic created."""
    tag = uuid.uuid4().hex[:10]
    settings = base.model_copy(update={
        "events_topic": f"t.events.{tag}", "ingest_group": f"t-ingest-{tag}",
        "ingest_metrics_port": 0, "signal_interval_s": 1.0, "ingest_batch_size": 500,
    })
    ensure_topics(settings)
    return settings
