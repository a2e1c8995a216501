"""Stalled-partition detection (no services): lag plus a committed offset that stopped moving."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from ingest.stalls import StallWatch
from ingest.status import stalled_partitions


def test_the_watch_reports_a_partition_only_while_it_lags_without_moving() -> None:
    watch = StallWatch(after_s=60)
    assert watch.observe({0: (10, 50), 1: (5, 5)}, now=0.0) == {}
    assert watch.observe({0: (10, 50), 1: (5, 5)}, now=59.0) == {}
    stalled = watch.observe({0: (10, 50), 1: (5, 5)}, now=61.0)
    assert list(stalled) == [0] and "lag 40" in stalled[0] and "unchanged for 61s" in stalled[0]
    # it moves again: no longer stalled, and the clock starts over
    assert watch.observe({0: (11, 50), 1: (5, 5)}, now=62.0) == {}
    assert watch.observe({0: (11, 50), 1: (5, 5)}, now=100.0) == {}
    # caught up is never stalled, however long nothing moves
    assert watch.observe({0: (50, 50), 1: (5, 5)}, now=1000.0) == {}
    assert watch.observe({0: (50, 50), 1: (5, 5)}, now=5000.0) == {}


def test_status_reports_lagging_partitions_whose_newest_landed_batch_is_old() -> None:
    now = datetime(2026, 12, 1, 12, tzinfo=UTC)
    offsets = {0: (100, 200), 1: (100, 200), 2: (300, 300), 3: (0, 10)}
    landed = {0: now - timedelta(seconds=500), 1: now - timedelta(seconds=5), 3: None}
    stalled = stalled_partitions(offsets, landed, now, after_s=120)
    assert set(stalled) == {0, 3}
    assert "unchanged for 500s" in stalled[0] and "nothing landed yet" in stalled[3]
