"""`streamfit stack` against the running stack: status, idempotent up, clean down."""

from __future__ import annotations

import socket

import psutil
import pytest

from app.stack import control
from app.stack.process import PortInUseError
from streamfit.settings import Settings


def test_status_shows_versions_and_health(stack: Settings) -> None:
    rows = control.status(stack)
    by_service = {r.service: r for r in rows}
    assert by_service["kafka"].version.startswith("4.")
    assert by_service["cassandra"].version.startswith("5.0.")
    assert by_service["airflow"].version.startswith("3.3.")
    assert {r.component for r in rows} == {
        "kafka", "cassandra", "airflow-api-server", "airflow-scheduler",
        "airflow-dag-processor", "airflow-triggerer"}
    assert all(r.healthy and r.pid and r.rss_mb for r in rows), rows


def test_second_up_reuses_everything(stack: Settings) -> None:
    before = {r.component: r.pid for r in control.status(stack)}
    events: list[str] = []
    took = control.up(stack, on_event=events.append)
    assert took == {"cassandra": 0.0, "kafka": 0.0, "airflow": 0.0}
    assert {r.component: r.pid for r in control.status(stack)} == before
    assert sum("reused" in e for e in events) == 3


def test_taken_port_fails_fast_with_the_holder(stack: Settings, tmp_path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        other = stack.model_copy(update={"home": tmp_path, "kafka_port": port})
        with pytest.raises(PortInUseError, match=f"port {port}.*pid {psutil.Process().pid}"):
            control.up(other, ["kafka"])
    assert not (tmp_path / "kafka").exists()  # nothing was prepared or started


def test_down_and_up_kafka_leaves_no_process(stack: Settings) -> None:
    sup = control.supervisor(stack)
    proc = sup.process("kafka")
    assert proc is not None
    family = [proc, *proc.children(recursive=True)]
    assert control.down(stack, ["kafka"]) == ["kafka"]
    assert not any(p.is_running() and p.status() != psutil.STATUS_ZOMBIE for p in family)
    assert not control.running(stack, "kafka")
    took = control.up(stack, ["kafka"])
    assert took["kafka"] > 0  # really restarted, from the same (not re-formatted) storage
    assert control.status(stack, ["kafka"])[0].healthy
