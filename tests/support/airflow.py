"""Running a DAG through the real Airflow API and reading what its tasks returned."""

from __future__ import annotations

import time
from typing import Any

from streamfit.airflow_api import AirflowClient


def run_dag(airflow: AirflowClient, dag_id: str, timeout: float = 240) -> str:
    """Trigger ``dag_id`` now and wait for the run to end; return its run id (it must succeed)."""
    run = airflow.request("POST", f"/api/v2/dags/{dag_id}/dagRuns", json={"logical_date": None})
    run_id: str = run["dag_run_id"]
    deadline = time.monotonic() + timeout
    state = run["state"]
    while state not in ("success", "failed") and time.monotonic() < deadline:
        time.sleep(2)
        state = airflow.request("GET", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}")["state"]
    assert state == "success", f"{dag_id} run {run_id} ended {state}"
    return run_id


def xcom(airflow: AirflowClient, dag_id: str, run_id: str, task_id: str) -> Any:
    return airflow.request(
        "GET", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/"
        "xcomEntries/return_value")["value"]
