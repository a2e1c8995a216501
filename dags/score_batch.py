"""``score_batch``: write champion predictions for flights that have not departed yet.

Scheduled on ``model | features`` (a new champion rescores; new data is scored even when the
champion stays) or daily when the stream is quiet. ``scoring.batch.score_for_events`` scores the
dates named by the triggering events per keyspace (on the daily run, today and tomorrow) with
``score_dates`` (also ``streamfit score``), records drift and evaluates matured predictions, and the
task emits the ``predictions`` asset.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import dag, task
from airflow.timetables.assets import AssetOrTimeSchedule
from airflow.timetables.trigger import CronTriggerTimetable
from streamfit_assets import FEATURES, MODEL, PREDICTIONS

from streamfit.alerts import on_task_failure


@dag(
    dag_id="score_batch",
    schedule=AssetOrTimeSchedule(timetable=CronTriggerTimetable("0 3 * * *", timezone="UTC"),
                                 assets=(MODEL | FEATURES)),
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    tags=["streamfit", "scoring"],
    doc_md=__doc__,
)
def score_batch() -> None:
    @task(outlets=[PREDICTIONS], retries=2, retry_delay=pendulum.duration(seconds=30),
          retry_exponential_backoff=True, on_failure_callback=on_task_failure)
    def score(triggering_asset_events=None, outlet_events=None) -> dict[str, object]:  # noqa: ANN001
        from scoring.batch import score_for_events
        from streamfit.catalog import event_extras
        from streamfit.settings import get_settings

        summary = score_for_events(get_settings(), event_extras(triggering_asset_events))
        if not summary["by_keyspace"]:  # e.g. no champion yet
            from airflow.sdk.exceptions import AirflowSkipException

            raise AirflowSkipException(f"nothing scored: {summary['skipped']}")
        outlet_events[PREDICTIONS].extra = summary
        return summary

    score()


score_batch()
