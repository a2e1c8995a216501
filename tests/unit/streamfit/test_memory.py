"""The pandas engine's memory budget: the process's peak RSS, checked after every step."""

from __future__ import annotations

from pathlib import Path

import pytest

from streamfit.memory import MemoryBudgetExceeded, budget

MIB = 1024 * 1024


def rss_mb() -> float:
    line = next(x for x in Path("/proc/self/status").read_text().splitlines()
                if x.startswith("VmRSS:"))
    return int(line.split()[1]) / 1024


def grow_past(limit_mb: int) -> list[bytes]:
    """Memory held until this process's RSS is past ``limit_mb`` (freed memory the process
    still holds is reused first, so allocate until the RSS really moves)."""
    held = []
    while rss_mb() <= limit_mb + 16:
        held.append(b"\x01" * (64 * MIB))  # every page written: resident
    return held


def test_the_step_that_passes_the_budget_is_named_and_the_next_never_starts() -> None:
    limit = int(rss_mb()) + 64
    started = []
    with pytest.raises(MemoryBudgetExceeded) as caught, budget(limit, "the build") as work:
        for day in ("2013-02-04", "2013-02-05", "2013-02-06"):
            work.step(f"the feature build of {day}")
            started.append(day)
            if day == "2013-02-05":
                held = grow_past(limit)
    message = str(caught.value)
    assert started == ["2013-02-04", "2013-02-05"]
    assert message.startswith("the feature build of 2013-02-05 took this process to ")
    assert f"past STREAMFIT_PANDAS_MEMORY_MB={limit};" in message
    assert "STREAMFIT_ENGINE=spark" in message
    assert held


def test_the_last_step_is_checked_too() -> None:
    limit = int(rss_mb()) + 64
    with pytest.raises(MemoryBudgetExceeded, match="batch scoring of 2013-02-06"), \
            budget(limit, "batch scoring") as work:
        work.step("batch scoring of 2013-02-06")
        held = grow_past(limit)
    assert held


def test_the_peak_is_the_works_own_and_no_limit_means_none() -> None:
    before = b"\x01" * (256 * MIB)  # an earlier peak of the same process
    del before
    limit = int(rss_mb()) + 128
    with budget(limit, "scoring") as work:  # judged from here: the earlier peak is not its own
        work.step("scoring of 2013-02-04")
        small = bytearray(16 * MIB)
    with budget(0, "scoring") as work:
        work.step("scoring of 2013-02-05")
        big = bytearray(512 * MIB)
    assert len(small) + len(big) == 528 * MIB
