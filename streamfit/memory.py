"""A memory budget for the work a process does in pandas (``STREAMFIT_PANDAS_MEMORY_MB``).

Entered by the pandas engine's feature build (``features.build.build_days``) and batch scoring
(``scoring.batch.score_here``), in whatever process runs them: an Airflow task, the CLI. The
work goes in steps (a date each); after every step the process's peak resident memory is read,
and past the budget the work stops with ``MemoryBudgetExceeded`` naming the step that passed it
and the way out (a larger budget, or the Spark engine), so a run that outgrows the worker fails
clearly instead of going on until the kernel's OOM killer takes the whole worker.

It is a check between steps, not a hard limit: a step may pass the budget by what that one
step needs. A hard limit on the address space (what Spark's ``spark.executor.pyspark.memory``
sets for its Python workers) was tried first and dropped: threads, malloc arenas and lazy imports
reserve address space far beyond what is resident: a `features build` of three small dates
added 1.6 GiB of address space to a process whose RSS peaked at 287 MiB.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

SETTING = "STREAMFIT_PANDAS_MEMORY_MB"


class MemoryBudgetExceeded(MemoryError):
    """Work inside ``budget`` took the process past its memory budget."""


def status_mb(field: str) -> float:
    """A size of this process from /proc/self/status in MiB, e.g. VmHWM (peak RSS)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no {field} in /proc/self/status")


def _reset_peak() -> bool:
    """Start this process's peak RSS (VmHWM) afresh, so the work is judged on its own peak,
    not on an earlier one of the same process; False where the kernel does not allow it."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


class Budget:
    """The steps of work inside ``budget``: ``step()`` before each one."""

    def __init__(self, limit_mb: int, doing: str) -> None:
        self.limit_mb = limit_mb
        self.doing = doing
        self._peak_field = "VmHWM" if limit_mb > 0 and _reset_peak() else "VmRSS"

    def peak_mb(self) -> float:
        """The process's peak RSS since the work began (where the peak cannot be reset: now)."""
        return status_mb(self._peak_field)

    def step(self, doing: str) -> None:
        """Check the step done so far, then name the next one."""
        self.check()
        self.doing = doing

    def check(self) -> None:
        if self.limit_mb <= 0:
            return
        peak = self.peak_mb()
        if peak > self.limit_mb:
            raise MemoryBudgetExceeded(
                f"{self.doing} took this process to {peak:.0f} MiB of memory, past "
                f"{SETTING}={self.limit_mb}; raise {SETTING} (0: no limit), or run the work on "
                "Spark (STREAMFIT_ENGINE=spark), which keeps it out of this process")


@contextmanager
def budget(limit_mb: int, doing: str) -> Iterator[Budget]:
    """Work whose process may reach at most ``limit_mb`` MiB of resident memory (0: no limit),
    checked at every ``step()`` and at the end."""
    work = Budget(limit_mb, doing)
    yield work
    work.check()
