"""``check_stack``: a manually triggered DAG whose tasks run ``streamfit selfcheck`` and report
where the task's data lives.

It proves that Airflow tasks really execute (scheduler, executor and the execution API agree on
the API port), that a task process reaches Kafka and Cassandra with the streamfit settings, and
(``placement``) which hosts and replication factors a task was given: the same as the CLI's.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import dag, task


@dag(
    dag_id="check_stack",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    tags=["streamfit", "ops"],
    doc_md=__doc__,
)
def check_stack() -> None:
    @task(retries=0)
    def round_trip() -> dict[str, str]:
        from streamfit.selfcheck import run_selfcheck
        from streamfit.settings import get_settings

        return {r.where: r.received for r in run_selfcheck(get_settings())}

    @task(retries=0)
    def placement() -> dict[str, object]:
        from streamfit.settings import get_settings

        return get_settings().placement()

    round_trip()
    placement()


check_stack()
