from __future__ import annotations

import uuid

import pytest

from ingest.service import ensure_topics
from streamfit.settings import Settings


@pytest.fixture(autouse=True)
def _require_stack(stack: Settings) -> None:
    """Every integration test runs against the real stack."""


@pytest.fixture
def pipeline_settings(fresh_keyspace_settings: Settings) -> Settings:
    """A keyspace, topic and consumer group of this test's own (DAG runs are matched to it by
    the keyspace in their asset events)."""
    tag = uuid.uuid4().hex[:10]
    s = fresh_keyspace_settings.model_copy(update={
        "events_topic": f"t.events.{tag}", "ingest_group": f"t-ingest-{tag}",
        "ingest_metrics_port": 0, "signal_interval_s": 1.0, "ingest_batch_size": 2000})
    ensure_topics(s)
    return s
