"""Ingest benchmark: our Kafka -> Cassandra service against the bare-driver write ceiling.

    .venv/bin/python bench/ingest.py [--from 2013-01-01 --to 2013-05-05 --scale 3]
                                     [--workers 2] [--batch-size 2000] [--concurrency 48]

Needs the local stack (`streamfit stack up`). In one run, on the same machine and data:

(a) the events/s the ingest service sustains from Kafka to Cassandra (events pre-produced, so the
    consumer side is measured), from service start to the last commit;
(b) the events/s of writing the same rows straight from memory with the bare driver
    (prepared statement, execute_concurrent_with_args), in as many processes as (a) has workers:
    the Cassandra ceiling here;
(c) p50/p99 produce-to-landed latency at a fixed rate below saturation, seen by an independent
    observer polling Cassandra for sampled events by primary key;
(d) the peak RSS of the worker processes.

Prints a table; ratios matter more than absolute numbers on a shared 2-core machine.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import statistics
import subprocess
import sys
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, date, datetime
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import contextlib

from ingest.envelope import Envelope, decode, encode  # noqa: E402
from ingest.producer import send_events  # noqa: E402
from ingest.service import IngestService, ensure_topics  # noqa: E402
from streamfit import kafka as kafka_io  # noqa: E402
from streamfit.cassandra import connect  # noqa: E402
from streamfit.domains import ReplayOptions, load_domain  # noqa: E402
from streamfit.progress import set_retired  # noqa: E402
from streamfit.schema import migrate  # noqa: E402
from streamfit.settings import Settings, get_settings  # noqa: E402
from streamfit.store import INSERT_RAW, IngestStore, bucket_of  # noqa: E402


def committed_total(settings: Settings) -> int:
    admin = kafka_io.admin(settings)
    try:
        return sum(kafka_io.committed_offsets(admin, settings.ingest_group,
                                              settings.events_topic).values())
    finally:
        admin.close()


def profile_workers(pids: list[int], seconds: int, out: Path) -> list[subprocess.Popen[bytes]]:
    """py-spy on each worker for ``seconds`` (collapsed stacks, one file per worker; ``--idle``
    off, so the samples are where the workers spend CPU)."""
    out.mkdir(parents=True, exist_ok=True)
    return [subprocess.Popen(  # noqa: S603 - py-spy from the venv, fixed arguments
        [str(Path(sys.executable).parent / "py-spy"), "record", "--pid", str(pid), "--duration",
         str(seconds), "--rate", "50", "--format", "raw", "--nonblocking", "--output",
         str(out / f"worker-{pid}.txt")], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for pid in pids]


def profile_summary(out: Path, top: int = 14) -> list[tuple[str, float]]:
    """The share of samples under each of the ingest path's parts (inclusive), across the
    workers' collapsed stacks: where a worker's CPU goes."""
    parts = {  # substring of a frame -> part; the first match from the leaf up names the sample
        "orjson": "JSON parse/serialise", "json": "JSON parse/serialise",
        "pydantic": "payload validation (pydantic)", "envelope.py": "envelope decode/validate",
        "cassandra": "Cassandra driver", "kafka/": "Kafka consumer (kafka-python)",
        "crc32c": "Kafka consumer (kafka-python)", "store.py": "row building (store)",
    }
    totals: dict[str, float] = {}
    n = 0
    for f in out.glob("worker-*.txt"):
        for line in f.read_text().splitlines():
            stack, _, count = line.rpartition(" ")
            if not count.isdigit():
                continue
            n += int(count)
            frames = stack.split(";")[::-1]
            part = next((p for fr in frames for key, p in parts.items() if key in fr), "other")
            totals[part] = totals.get(part, 0) + int(count)
    return sorted(((k, v / max(n, 1)) for k, v in totals.items()), key=lambda kv: -kv[1])[:top]


def measure_service(settings: Settings, workers: int, total: int, profile: Path | None = None
                    ) -> tuple[float, float]:
    """Seconds from service start until everything is committed; peak worker RSS (MiB).
    ``profile``: py-spy the workers for 20 s once they run, into that folder."""
    service = IngestService(settings, workers, on_event=lambda _m: None)
    thread = threading.Thread(target=service.run, kwargs={"install_signals": False}, daemon=True)
    peak = 0.0
    start = time.perf_counter()
    thread.start()
    spies: list[subprocess.Popen[bytes]] = []
    try:
        while committed_total(settings) < total:
            if profile is not None and not spies and len(service.procs) == workers \
                    and committed_total(settings) > 0:
                spies = profile_workers([p.pid for p in service.procs.values()
                                         if p.pid], 20, profile)
            rss = 0
            for proc in service.procs.values():
                with contextlib.suppress(psutil.Error, TypeError):
                    rss += psutil.Process(proc.pid).memory_info().rss
            peak = max(peak, rss / 2**20)
            time.sleep(0.25)
        took = time.perf_counter() - start
    finally:
        for spy in spies:
            spy.wait(60)
        service.stop()
        thread.join(120)
    return took, peak


def _rows(envelopes: list[Envelope], topic: str) -> list[tuple[object, ...]]:
    now = datetime.now(UTC)
    return [(e.event_date, bucket_of(e.entity_key), e.event_type, e.event_time, e.event_id,
             e.entity_key, e.schema_version, e.payload_json, topic, 0, i, now)
            for i, e in enumerate(envelopes)]


def _bare_writer(settings: Settings, opts: ReplayOptions, share: int, shares: int,
                 concurrency: int, batched: bool,
                 out: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    from cassandra.concurrent import execute_concurrent_with_args

    domain = load_domain(settings.domain)
    now = datetime.now(UTC)
    envs = [decode(encode(ev), domain, 1 << 20, now)
            for i, ev in enumerate(domain.replay("nycflights13", opts)) if i % shares == share]
    rows = _rows([e for e in envs if isinstance(e, Envelope)], "bare")
    with connect(settings) as session:
        insert = session.prepare(INSERT_RAW.format(ks=settings.keyspace))
        store = IngestStore(session, settings.keyspace, concurrency)
        start = time.perf_counter()
        for i in range(0, len(rows), 20000):  # bounded memory of result lists
            if batched:  # the same unlogged per-partition batches as the ingest service
                store.write_events(rows[i:i + 20000])
                continue
            results = execute_concurrent_with_args(session, insert, rows[i:i + 20000],
                                                   concurrency=concurrency)
            assert all(ok for ok, _ in results)
        out.put((len(rows), time.perf_counter() - start))


def measure_ceiling(settings: Settings, opts: ReplayOptions, procs: int,
                    concurrency: int, batched: bool = False) -> tuple[int, float]:
    ctx = multiprocessing.get_context("spawn")
    out = ctx.Queue()
    workers = [ctx.Process(target=_bare_writer,
                           args=(settings, opts, i, procs, concurrency, batched, out))
               for i in range(procs)]
    for w in workers:
        w.start()
    results = [out.get() for _ in workers]
    for w in workers:
        w.join()
    return sum(n for n, _ in results), max(t for _, t in results)


def measure_latency(settings: Settings, rate: float, seconds: float, sample_every: int
                    ) -> list[float]:
    """Produce at a fixed rate; an observer polls Cassandra for every Nth event by key."""
    domain = load_domain(settings.domain)
    events = list(domain.replay("nycflights13", ReplayOptions(date(2013, 9, 1), date(2013, 9, 30))))
    n = int(rate * seconds)
    events = events[:n]
    latencies: list[float] = []
    service = IngestService(settings, 2, on_event=lambda _m: None)
    thread = threading.Thread(target=service.run, kwargs={"install_signals": False}, daemon=True)
    thread.start()
    time.sleep(8)  # group joined, partitions assigned
    with connect(settings) as session:
        select = session.prepare(
            f"SELECT event_id FROM {settings.keyspace}.raw_events WHERE event_date = ? AND "
            "bucket = ? AND event_type = ? AND event_time = ? AND event_id = ?")
        producer = kafka_io.producer(settings, linger_ms=0)

        def observe(env: Envelope, sent_at: float) -> None:
            key = (env.event_date, bucket_of(env.entity_key), env.event_type, env.event_time,
                   env.event_id)
            while time.perf_counter() - sent_at < 30:
                if session.execute(select, key).one():
                    latencies.append(time.perf_counter() - sent_at)
                    return
                time.sleep(0.002)

        now = datetime.now(UTC)
        with ThreadPoolExecutor(max_workers=32) as pool:
            start = time.perf_counter()
            for i, ev in enumerate(events):
                due = start + i / rate
                while time.perf_counter() < due:
                    time.sleep(max(0.0, min(0.001, due - time.perf_counter())))
                sent_at = time.perf_counter()
                producer.send(settings.events_topic, key=ev["entity_key"].encode(),
                              value=encode(ev))
                if i % sample_every == 0:
                    env = decode(encode(ev), domain, 1 << 20, now)
                    assert isinstance(env, Envelope)
                    pool.submit(observe, env, sent_at)
            producer.flush()
        producer.close()
    service.stop()
    thread.join(120)
    return latencies


def driver_facts() -> dict[str, object]:
    """Is the driver running compiled (Cython) and on libev? Both matter several-fold."""
    import cassandra.cluster
    import kafka.record.util

    from streamfit.cassandra import CONNECTION_CLASS

    return {"driver_compiled": cassandra.cluster.__file__.endswith(".so"),
            "driver_event_loop": CONNECTION_CLASS.__name__ if CONNECTION_CLASS else "default",
            "kafka_crc32c_c": kafka.record.util._crc32c.__module__ != "kafka.record._crc32c"}


def cleanup(base: Settings, keyspaces: list[str], topics: list[str]) -> None:
    with connect(base, keyspace=None) as session:
        for ks in keyspaces:
            session.execute(f"DROP KEYSPACE IF EXISTS {ks}", timeout=120)
    admin = kafka_io.admin(base)
    try:
        admin.delete_topics(topics)
    finally:
        admin.close()


SWEEP = [  # (workers, batch size, write concurrency)
    (1, 2000, 48), (2, 500, 48), (2, 2000, 48), (2, 5000, 48), (3, 2000, 48),
    (2, 2000, 16), (2, 2000, 128),
]


def sweep(settings: Settings, total: int) -> None:
    print("\n| workers | batch size | concurrency | ev/s | seconds | peak worker RSS MiB |")
    print("|---|---|---|---|---|---|")
    for i, (workers, batch, conc) in enumerate(SWEEP):
        s = settings.model_copy(update={"ingest_group": f"{settings.ingest_group}-s{i}",
                                        "ingest_batch_size": batch,
                                        "ingest_write_concurrency": conc})
        took, rss = measure_service(s, workers, total)
        print(f"| {workers} | {batch} | {conc} | {total / took:,.0f} | {took:.1f} | {rss:.0f} |",
              flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--from", dest="start", default="2013-01-01")
    ap.add_argument("--to", dest="end", default="2013-05-05")  # x3: just over 1M events
    ap.add_argument("--scale", type=int, default=3)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=2000)
    ap.add_argument("--concurrency", type=int, default=48)
    ap.add_argument("--latency-rate", type=float, default=1000.0)
    ap.add_argument("--latency-seconds", type=float, default=20.0)
    ap.add_argument("--json", type=Path, help="also write the figures here")
    ap.add_argument("--profile", type=Path, metavar="DIR",
                    help="py-spy the workers for 20 s of (a) into DIR, and print where their "
                         "CPU goes")
    ap.add_argument("--sweep", action="store_true",
                    help="produce once, then time the service for several worker counts, batch "
                         "sizes and concurrencies (each a fresh consumer group)")
    args = ap.parse_args()

    tag = uuid.uuid4().hex[:8]
    base = get_settings()
    settings = base.model_copy(update={
        "keyspace": f"bench_{tag}", "events_topic": f"bench.events.{tag}",
        "ingest_group": f"bench-{tag}", "ingest_metrics_port": 0,
        "ingest_batch_size": args.batch_size, "ingest_write_concurrency": args.concurrency,
        # No Airflow traffic here: a data-arrival signal would announce the keyspace, and the
        # DAGs (which serve every announced keyspace) would build its features while we measure.
        "signal_interval_s": 3600.0, "signal_max_rows": 10**12,
        "airflow_url": "http://127.0.0.1:9",
    })
    opts = ReplayOptions(date.fromisoformat(args.start), date.fromisoformat(args.end), args.scale)
    with connect(settings, keyspace=None) as session:
        migrate(session, settings)
        set_retired(session, settings.keyspace, True)  # stages run here, not by Airflow
    ensure_topics(settings)

    print(f"producing {args.start}..{args.end} x{args.scale} to {settings.events_topic} ...",
          flush=True)
    domain = load_domain(settings.domain)
    stats = send_events(settings, domain.replay("nycflights13", opts))
    total = stats.sent
    print(f"  {total:,} events in {stats.seconds:.1f}s ({stats.rate:,.0f} ev/s produced)", flush=True)

    if args.sweep:
        try:
            sweep(settings, total)
        finally:
            cleanup(base, [settings.keyspace], [settings.events_topic])
        return

    print(f"(a) ingest service, {args.workers} workers ...", flush=True)
    took, peak_rss = measure_service(settings, args.workers, total, args.profile)
    ours = total / took
    print(f"  {ours:,.0f} ev/s ({took:.1f}s)", flush=True)
    if args.profile:
        print("  where the workers' CPU goes (py-spy, 20 s, share of samples):")
        for part, share in profile_summary(args.profile):
            print(f"    {share:6.1%}  {part}", flush=True)

    print(f"(b) bare driver, {args.workers} processes, concurrency {args.concurrency} ...",
          flush=True)
    ceiling_settings = settings.model_copy(update={"keyspace": f"bench_{tag}_bare"})
    with connect(ceiling_settings, keyspace=None) as session:
        migrate(session, ceiling_settings)
        set_retired(session, ceiling_settings.keyspace, True)  # stages run here, not by Airflow
    rows, secs = measure_ceiling(ceiling_settings, opts, args.workers, args.concurrency)
    ceiling = rows / secs
    print(f"  {ceiling:,.0f} rows/s ({rows:,} rows in {secs:.1f}s)", flush=True)
    print("(b2) bare driver with the same unlogged per-partition batches ...", flush=True)
    batched_settings = settings.model_copy(update={"keyspace": f"bench_{tag}_bat"})
    with connect(batched_settings, keyspace=None) as session:
        migrate(session, batched_settings)
        set_retired(session, batched_settings.keyspace, True)  # stages run here, not by Airflow
    rows_b, secs_b = measure_ceiling(batched_settings, opts, args.workers, args.concurrency,
                                     batched=True)
    ceiling_b = rows_b / secs_b
    print(f"  {ceiling_b:,.0f} rows/s ({rows_b:,} rows in {secs_b:.1f}s)", flush=True)

    print(f"(c) latency at {args.latency_rate:,.0f} ev/s ...", flush=True)
    lat_settings = settings.model_copy(update={
        "events_topic": f"bench.latency.{tag}", "ingest_group": f"bench-lat-{tag}",
        "ingest_batch_size": 500})
    ensure_topics(lat_settings)
    lat = measure_latency(lat_settings, args.latency_rate, args.latency_seconds, 20)
    q = statistics.quantiles(lat, n=100) if len(lat) > 2 else [float("nan")] * 99

    figures = {
        "events": total, "workers": args.workers, "batch_size": args.batch_size,
        "concurrency": args.concurrency, "ingest_ev_s": round(ours),
        "bare_driver_rows_s": round(ceiling), "ratio": round(ours / ceiling, 3),
        "bare_driver_batched_rows_s": round(ceiling_b),
        "ratio_vs_batched": round(ours / ceiling_b, 3),
        "latency_rate_ev_s": args.latency_rate, "latency_samples": len(lat),
        "latency_p50_ms": round(q[49] * 1000, 1), "latency_p99_ms": round(q[98] * 1000, 1),
        "worker_peak_rss_mib": round(peak_rss), "produce_ev_s": round(stats.rate),
        **driver_facts(),
    }
    print()
    print("| figure | value |\n|---|---|")
    for k, v in figures.items():
        print(f"| {k} | {v:,} |" if isinstance(v, int) else f"| {k} | {v} |")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))
    cleanup(base, [settings.keyspace, ceiling_settings.keyspace, batched_settings.keyspace],
            [settings.events_topic, lat_settings.events_topic])


if __name__ == "__main__":
    main()
