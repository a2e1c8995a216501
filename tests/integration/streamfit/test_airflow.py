from __future__ import annotations

import time
from datetime import UTC, datetime

import pytest

from streamfit.airflow_api import AirflowAPIError, AirflowClient, airflow_client
from streamfit.progress import NOTHING_PENDING
from streamfit.settings import Settings
from tests.support.airflow import run_dag, xcom


@pytest.fixture
def airflow(stack: Settings):
    with airflow_client(stack) as client:
        yield client


def test_api_health_and_version(airflow: AirflowClient) -> None:
    body = airflow.health()
    for part in ("metadatabase", "scheduler", "triggerer", "dag_processor"):
        assert body[part]["status"] == "healthy", body
    assert airflow.version().startswith("3.3.")


def test_wrong_password_gives_a_clear_error(stack: Settings) -> None:
    with AirflowClient(stack.airflow_api_url, stack.airflow_username, "wrong") as client, \
            pytest.raises(AirflowAPIError, match="refused the login"):
        client.version()


def _wait_for_dag(airflow: AirflowClient, dag_id: str, timeout: float = 120) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        try:
            return airflow.request("GET", f"/api/v2/dags/{dag_id}")
        except AirflowAPIError:
            if time.monotonic() > deadline:
                raise
            time.sleep(2)


def test_dag_processor_parsed_our_dags_without_errors(airflow: AirflowClient) -> None:
    dag = _wait_for_dag(airflow, "check_stack")
    assert dag["is_paused"] is False  # unpaused at creation
    errors = airflow.request("GET", "/api/v2/importErrors")
    assert errors["total_entries"] == 0, errors["import_errors"]


def test_a_task_really_runs_and_reaches_kafka_and_cassandra(airflow: AirflowClient,
                                                            stack: Settings) -> None:
    """Proves scheduler, executor and execution API (its URL must match the API port) agree,
    and that a task is given the hosts and replication this process uses."""
    _wait_for_dag(airflow, "check_stack")
    run_id = run_dag(airflow, "check_stack")
    value = xcom(airflow, "check_stack", run_id, "round_trip")
    assert any(k.startswith("streamfit.selfcheck[0]@") for k in value), value
    assert xcom(airflow, "check_stack", run_id, "placement") == stack.placement()


def test_dag_runs_are_listed_past_the_first_page(airflow: AirflowClient) -> None:
    """A long-lived Airflow holds more runs than one page: none may be missed (the newest were,
    once, and a test waited for a run it could not see)."""
    _wait_for_dag(airflow, "check_stack")
    since = datetime.now(UTC).isoformat()
    created = [airflow.request("POST", "/api/v2/dags/check_stack/dagRuns",
                               json={"logical_date": None})["dag_run_id"] for _ in range(3)]
    listed = [r["dag_run_id"] for r in airflow.dag_runs("check_stack", since, page_size=2)]
    assert listed == created  # all three, over two pages, oldest first


def test_a_skipped_pipeline_run_says_why_per_keyspace(airflow: AirflowClient,
                                                     stack: Settings) -> None:
    """A train_model run with nothing to do skips and leaves why, per keyspace it looked at (the
    default one always): ``pipeline_runs`` lists it there with that reason, and not for a
    keyspace it never looked at. Asked for runs that *ended* after a moment just after it was
    created (it cannot have ended yet: a task takes seconds), it is listed; asked for runs
    created after that moment, it is not."""
    _wait_for_dag(airflow, "train_model")
    since = datetime.now(UTC).isoformat()
    run_id = airflow.request("POST", "/api/v2/dags/train_model/dagRuns",
                             json={"logical_date": None})["dag_run_id"]
    created = datetime.now(UTC).isoformat()
    deadline = time.monotonic() + 240
    while (airflow.request("GET", f"/api/v2/dags/train_model/dagRuns/{run_id}")["state"]
           not in ("success", "failed")):
        assert time.monotonic() < deadline, "the manual train_model run did not finish"
        time.sleep(2)
    ours = [r for r in airflow.pipeline_runs("train_model", since, stack.keyspace)
            if r.run_id == run_id]
    assert [(r.state, r.summary, r.reason) for r in ours] == [("skipped", None, NOTHING_PENDING)]
    assert not [r for r in airflow.pipeline_runs("train_model", since, "t_never_looked_at")
                if r.run_id == run_id]
    assert run_id in {r.run_id for r in airflow.pipeline_runs("train_model", created,
                                                              stack.keyspace, ended=True)}
    assert run_id not in {r.run_id for r in airflow.pipeline_runs("train_model", created,
                                                                  stack.keyspace)}
