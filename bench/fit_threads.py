"""How many threads a model fit should use on cores it shares (``STREAMFIT_TRAIN_THREADS``).

    .venv/bin/python bench/fit_threads.py [--rows 34000] [--repeat 2] [--json FILE]

Fits the training grid's HistGradientBoosting candidates (``training.train.HGB_GRID``) on a
frame the size of three weeks of flights (34,000 rows, 48 features), with 1 thread and with
every core, side by side in one run: once on an otherwise idle machine, and once beside one
busy process (what the co-located services and a second Airflow task are to a fit). Needs no
services. The model is the same at any thread count (``tests/unit/training/test_train.py``).
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.pipeline import save  # noqa: E402
from training.train import HGB_GRID, fit_threads  # noqa: E402


def _spin() -> None:
    while True:
        pass


def _fits(x: np.ndarray, y: np.ndarray, threads: int, repeat: int) -> float:
    from sklearn.ensemble import HistGradientBoostingClassifier

    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        with fit_threads(threads):
            for params in HGB_GRID:
                HistGradientBoostingClassifier(random_state=0, **params).fit(x, y)
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, default=34_000)
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    x = rng.normal(size=(args.rows, 48))
    y = (x[:, :6].sum(axis=1) + rng.normal(scale=2.0, size=args.rows) > 1.0).astype(int)
    cores = os.cpu_count() or 1
    figures: dict[str, Any] = {"when": datetime.now(UTC).isoformat(), "cores": cores,
                               "rows": args.rows, "candidates": len(HGB_GRID)}
    print(f"| machine | threads | {len(HGB_GRID)} candidate fits (s) |\n|---|---|---|")
    for busy in (False, True):
        spinner = None
        if busy:
            spinner = multiprocessing.get_context("spawn").Process(target=_spin, daemon=True)
            spinner.start()
        try:
            for threads in (1, 0):
                took = _fits(x, y, threads, args.repeat)
                key = f"{'busy' if busy else 'idle'}, {'1 thread' if threads else 'all cores'}"
                figures[key] = round(took, 2)
                print(f"| {'beside one busy process' if busy else 'idle'} | "
                      f"{threads or cores} | {took:.1f} |", flush=True)
        finally:
            if spinner is not None:
                spinner.kill()
    for load in ("idle", "busy"):
        ratio = figures[f"{load}, all cores"] / figures[f"{load}, 1 thread"]
        figures[f"{load}: all cores / 1 thread"] = round(ratio, 2)
        print(f"{load}: all cores take {ratio:.2f}x the time of 1 thread")
    save(args.json, figures)


if __name__ == "__main__":
    main()
