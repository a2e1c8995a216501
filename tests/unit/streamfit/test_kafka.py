"""kafka-python's log noise: only its sub-second slow-step warnings are dropped."""

from __future__ import annotations

import logging

import pytest

from streamfit.kafka import quiet_contention_warnings

# the text kafka-python 3 logs from kafka.net.selector, with the task, elapsed and threshold
SLOW = ("Task <kafka.net.selector.Task object at 0x7fa330347910> ran for %.3fs (>0.100s "
        "threshold). It is blocking the event loop -- likely a tight sync loop inside a "
        "coroutine. Other pollers will time out.")


def test_a_sub_second_slow_step_is_dropped_and_a_longer_one_or_anything_else_kept(
        caplog: pytest.LogCaptureFixture) -> None:
    logger = logging.getLogger("kafka.net.selector")
    quiet_contention_warnings()
    quiet_contention_warnings()  # idempotent: one filter however often a process calls it
    assert len(logger.filters) == 1
    with caplog.at_level(logging.WARNING, logger="kafka.net.selector"):
        logger.warning(SLOW % 0.117)
        logger.warning(SLOW % 0.996)
        logger.warning(SLOW % 1.5)
        logger.warning("Task %s left RUNNING after step; demoting to UNSCHEDULED", "t")
    assert [r.getMessage()[:60] for r in caplog.records] == [
        (SLOW % 1.5)[:60], "Task t left RUNNING after step; demoting to UNSCHEDULED"]
