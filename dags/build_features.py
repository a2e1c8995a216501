"""``build_features``: rebuild flight features when raw events land.

Scheduled on the ``raw_events`` asset. The triggering asset events' ``extra`` (from the ingest
ledger) names the keyspace and the event dates that received data; only the feature partitions
those dates affect are rebuilt (``features.build.run_for_events``; the CLI is
``streamfit features build``). Emits the ``features`` asset with the rebuilt dates per keyspace in
its ``extra``; when nothing was built it skips and emits nothing.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import dag, task
from streamfit_assets import FEATURES, RAW_EVENTS

from streamfit.alerts import on_task_failure


@dag(
    dag_id="build_features",
    schedule=[RAW_EVENTS],
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    tags=["streamfit", "features"],
    doc_md=__doc__,
)
def build_features() -> None:
    @task(outlets=[FEATURES], retries=3, retry_delay=pendulum.duration(seconds=10),
          retry_exponential_backoff=True, on_failure_callback=on_task_failure)
    def rebuild(triggering_asset_events=None, outlet_events=None) -> dict[str, object]:  # noqa: ANN001
        from features.build import run_for_events
        from streamfit.catalog import event_extras
        from streamfit.settings import get_settings

        summary = run_for_events(get_settings(), event_extras(triggering_asset_events))
        if not summary["by_keyspace"]:
            # Nothing was rebuilt: emit no features event (training and scoring stay idle).
            from airflow.sdk.exceptions import AirflowSkipException

            raise AirflowSkipException(f"nothing built: {summary['skipped']}")
        outlet_events[FEATURES].extra = summary
        return summary

    rebuild()


build_features()
