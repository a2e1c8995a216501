from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

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


@pytest.fixture(scope="session")
def spark_jars(stack: Settings) -> Settings:
    """The Spark Cassandra Connector's jars, fetched from Maven Central as `stack up` does."""
    from app.stack.services import install_connector

    install_connector(stack)
    return stack


@pytest.fixture(scope="session")
def spark(spark_jars: Settings) -> Iterator[Any]:
    """One local[2] SparkSession with the connector for the session's Spark tests (a JVM start
    costs seconds): jobs' functions are called on it directly; `submit` is tested apart."""
    from pyspark import SparkContext

    from streamfit.spark import session

    spark = session(spark_jars.model_copy(update={"engine": "spark"}), "streamfit tests")
    yield spark
    # stop() ends the context, not the JVM py4j started: end that too, or it outlives the stack
    gateway = spark.sparkContext._gateway
    spark.stop()
    gateway.shutdown()
    proc = getattr(gateway, "proc", None)
    if proc is not None:
        proc.terminate()
        proc.wait(timeout=60)
    SparkContext._gateway = SparkContext._jvm = None
