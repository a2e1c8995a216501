"""``summarize_arrivals``: runs whenever the ingest service announces landed raw events.

Scheduled on the ``raw_events`` asset. Its one task reads the triggering asset events (their
``extra`` is the ingest ledger summary: rows, event dates, offsets) and counts the rows now in
Cassandra for each event date named, proving the data-arrival trigger end to end.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import dag, task
from streamfit_assets import RAW_EVENTS

from streamfit.alerts import on_task_failure


@dag(
    dag_id="summarize_arrivals",
    schedule=[RAW_EVENTS],
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    tags=["streamfit", "ingest"],
    doc_md=__doc__,
)
def summarize_arrivals() -> None:
    @task(retries=2, retry_delay=pendulum.duration(seconds=10), retry_exponential_backoff=True,
          on_failure_callback=on_task_failure)
    def count_landed(triggering_asset_events=None) -> dict[str, object]:  # noqa: ANN001
        from ingest.arrivals import summarize_arrivals as summarize
        from streamfit.catalog import event_extras
        from streamfit.settings import get_settings

        extras = event_extras(triggering_asset_events)
        return summarize(get_settings(), extras)

    count_landed()


summarize_arrivals()
