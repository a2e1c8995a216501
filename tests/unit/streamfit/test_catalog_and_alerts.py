"""Routing of asset-event extras to keyspaces, and the failure alert (pure, no services)."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from types import SimpleNamespace

from streamfit.alerts import alert_of, send
from streamfit.catalog import by_keyspace


def test_extras_are_grouped_by_the_keyspace_they_name() -> None:
    extras = [
        {"keyspace": "a", "event_dates": ["2013-01-02"]},            # an ingest signal
        {"by_keyspace": {"a": {"dates": ["2013-01-03"]},
                         "b": {"dates": ["2013-01-04"]}}},           # a streamfit DAG's event
        {"event_dates": ["2013-01-05"]},                             # posted by hand: default
    ]
    groups = by_keyspace(extras, default="streamfit")
    assert groups == {"a": [{"keyspace": "a", "event_dates": ["2013-01-02"]},
                            {"dates": ["2013-01-03"]}],
                      "b": [{"dates": ["2013-01-04"]}],
                      "streamfit": [{"event_dates": ["2013-01-05"]}]}
    assert by_keyspace([], default="streamfit") == {}


def test_the_alert_names_the_task_the_error_and_what_to_check() -> None:
    ti = SimpleNamespace(dag_id="train_model", task_id="train", run_id="r1", try_number=3,
                         log_url="http://x/log")
    alert = alert_of({"ti": ti, "exception": ValueError("bad window")},
                     hint="check the feature tables")
    assert alert_of({"ti": ti})["hint"] == "see the task log"
    assert alert["dag_id"] == "train_model" and alert["task_id"] == "train"
    assert alert["error"] == "ValueError: bad window" and alert["try_number"] == 3
    assert "feature tables" in alert["hint"]


def test_the_alert_is_posted_to_the_webhook_and_a_dead_webhook_does_not_raise() -> None:
    received: list[dict] = []

    class Hook(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802
            received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Hook)
    thread = threading.Thread(target=server.handle_request, daemon=True)
    thread.start()
    alert = {"dag_id": "score_batch", "task_id": "score", "error": "E: x", "hint": "h"}
    assert send(f"http://127.0.0.1:{server.server_port}/hook", alert)
    thread.join(5)
    server.server_close()
    assert received and received[0]["dag_id"] == "score_batch"
    assert "score_batch.score failed" in received[0]["text"]
    assert send("http://127.0.0.1:9/nothing-listens", alert) is False
