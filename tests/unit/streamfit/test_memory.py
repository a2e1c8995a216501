"""The pandas engine's memory budget: an address-space limit while the work runs, lifted after."""

from __future__ import annotations

import resource

import pytest

from streamfit.memory import MIB, MemoryBudgetExceeded, budget


def test_work_past_its_budget_fails_naming_what_it_did_and_the_process_carries_on() -> None:
    before = resource.getrlimit(resource.RLIMIT_AS)
    with pytest.raises(MemoryBudgetExceeded) as caught, budget(64, "the build") as work:
        work.doing = "the feature build of 2013-02-05"
        small = bytearray(8 * MIB)  # within the budget
        assert resource.getrlimit(resource.RLIMIT_AS)[0] != resource.RLIM_INFINITY
        bytearray(512 * MIB)
    message = str(caught.value)
    assert "the feature build of 2013-02-05" in message
    assert "STREAMFIT_PANDAS_MEMORY_MB=64" in message and "STREAMFIT_ENGINE=spark" in message
    assert len(small) == 8 * MIB
    assert resource.getrlimit(resource.RLIMIT_AS) == before
    assert len(bytearray(512 * MIB)) == 512 * MIB  # the limit is gone


def test_work_within_its_budget_or_without_one_runs_unchanged() -> None:
    before = resource.getrlimit(resource.RLIMIT_AS)
    with budget(256, "scoring"):
        assert len(bytearray(32 * MIB)) == 32 * MIB
    with budget(0, "scoring"):
        assert resource.getrlimit(resource.RLIMIT_AS) == before
        assert len(bytearray(512 * MIB)) == 512 * MIB
    assert resource.getrlimit(resource.RLIMIT_AS) == before


def test_other_errors_pass_through_and_lift_the_limit() -> None:
    before = resource.getrlimit(resource.RLIMIT_AS)
    with pytest.raises(KeyError), budget(64, "scoring"):
        raise KeyError("x")
    assert resource.getrlimit(resource.RLIMIT_AS) == before
