"""``check_stack``: a manually triggered DAG whose one task runs ``streamfit selfcheck``.

It proves that Airflow tasks really execute (scheduler, LocalExecutor and the execution API agree
on the API port) and that a task process reaches Kafka and Cassandra with the streamfit settings.
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

    round_trip()


check_stack()
