"""The test session's choice of services: external ones when the settings name them."""

from __future__ import annotations

import pytest

from streamfit.settings import Settings
from tests.conftest import _require_external, external_services


def test_the_local_stack_unless_the_settings_name_external_services() -> None:
    local = Settings(kafka_bootstrap_servers=None, cassandra_hosts=None, airflow_url=None)
    assert external_services(local) == set()
    given = Settings(kafka_bootstrap_servers="broker-1:9092,broker-2:9092",
                     cassandra_hosts="10.0.0.5", airflow_url="http://airflow:8080")
    assert external_services(given) == {"kafka", "cassandra", "airflow"}
    assert external_services(local.model_copy(update={"cassandra_hosts": "10.0.0.5"})) == {
        "cassandra"}


def test_an_external_service_that_does_not_answer_fails_the_session_loudly() -> None:
    nowhere = Settings(airflow_url="http://127.0.0.1:9")
    with pytest.raises(pytest.fail.Exception, match="STREAMFIT_AIRFLOW_URL=http://127.0.0.1:9"):
        _require_external(nowhere, {"airflow"})
