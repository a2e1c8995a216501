"""A memory budget for the work a process does in pandas (``STREAMFIT_PANDAS_MEMORY_MB``).

Entered by the pandas engine's feature build (``features.build.build_days``) and batch scoring
(``scoring.batch.score_here``), in whatever process runs them: an Airflow task, the CLI. Inside,
the process may grow its address space by at most the budget; an allocation past it fails, and
the work stops with ``MemoryBudgetExceeded`` naming what it was doing, instead of growing until
the kernel's OOM killer takes the whole worker. The limit is the address-space rlimit, the
mechanism Spark uses for its Python workers (``spark.executor.pyspark.memory``); it is lifted
again on the way out, so the process carries on.
"""

from __future__ import annotations

import gc
import resource
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

MIB = 1024 * 1024


class MemoryBudgetExceeded(MemoryError):
    """Work inside ``budget`` needed more memory than it was given."""


def address_space() -> int:
    """This process's address space now, in bytes (VmSize)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmSize:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmSize in /proc/self/status")


class Budget:
    """What the work inside ``budget`` is doing now, for the error if it runs out."""

    def __init__(self, doing: str) -> None:
        self.doing = doing


@contextmanager
def budget(extra_mb: int, doing: str, setting: str = "STREAMFIT_PANDAS_MEMORY_MB"
           ) -> Iterator[Budget]:
    """Inside, the process may add at most ``extra_mb`` MiB to its address space (0: no limit).
    Set ``.doing`` on the yielded object as the work moves on (e.g. to the date being built):
    the error names it, the budget and ``setting``."""
    state = Budget(doing)
    if extra_mb <= 0:
        yield state
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    limit = address_space() + extra_mb * MIB
    if hard != resource.RLIM_INFINITY:
        limit = min(limit, hard)
    resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
    exhausted = False
    try:
        yield state
    except MemoryError:
        exhausted = True
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))
    if exhausted:
        # the failed work's frames are garbage now; free them before anything else allocates
        gc.collect()
        raise MemoryBudgetExceeded(
            f"{state.doing} needed more than {setting}={extra_mb} MiB of memory; raise "
            f"{setting} (0: no limit), or run the work on Spark (STREAMFIT_ENGINE=spark), "
            "which keeps it out of this process")
