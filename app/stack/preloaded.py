"""``python -m app.stack.preloaded <airflow arguments>``: the ``airflow`` command, after importing
what the pipeline's tasks import.

Run by ``streamfit stack up`` for the scheduler (its LocalExecutor workers fork every task
process) and for the cluster topology's Celery workers (whose pool forks them), unless
``STREAMFIT_STACK_AIRFLOW_PRELOAD`` is off. A forked task inherits these modules instead of
importing pandas, the Cassandra driver, scikit-learn and skops again on every start (see
docs/benchmarks.md, "Pipeline"). An Airflow of your own gets the same from an
``airflow_local_settings.py`` that calls ``preload()`` in those two components.
"""

from __future__ import annotations

import importlib
import sys
import time

#: The heavy imports of the build_features, train_model and score_batch tasks.
MODULES = ("features.run", "features.build", "scoring.run", "scoring.batch", "training.run",
           "training.train", "streamfit.registry")


def preload() -> float:
    """Import ``MODULES`` and skops' loader; returns the seconds it took."""
    from streamfit.registry import skops_io

    t0 = time.perf_counter()
    for name in MODULES:
        importlib.import_module(name)
    skops_io()
    return time.perf_counter() - t0


def main() -> None:
    took = preload()
    print(f"streamfit: preloaded the pipeline tasks' modules in {took:.1f}s", file=sys.stderr)
    from airflow.__main__ import main as airflow_main

    sys.argv = ["airflow", *sys.argv[1:]]
    airflow_main()


if __name__ == "__main__":
    main()
