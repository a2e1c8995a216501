"""``transient_score``: score a request with a model trained only for it (triggered with a conf).

Triggered by ``POST /transient`` of the HTTP API, or by hand with a conf such as
``{"request_id": "...", "dates": ["2013-03-02"], "entities": [...], "keyspace": "..."}``. Runs
``training.transient.run_transient``: train on the current feature window, score, store the
predictions under the request id, discard the model (never registered). The CLI equivalent is
``streamfit score --transient``.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import dag, task
from streamfit_assets import on_failure


@dag(
    dag_id="transient_score",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=2,
    tags=["streamfit", "scoring"],
    doc_md=__doc__,
)
def transient_score() -> None:
    @task(retries=1, retry_delay=pendulum.duration(seconds=10),
          on_failure_callback=on_failure(
              "check the request's conf (dates, entities, keyspace) and the feature window"))
    def train_score_discard(dag_run=None) -> dict[str, object]:  # noqa: ANN001
        from streamfit.settings import get_settings
        from training.transient import run_transient_conf

        return run_transient_conf(get_settings(), dict(dag_run.conf or {}))

    train_score_discard()


transient_score()
