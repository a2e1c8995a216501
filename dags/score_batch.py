"""``score_batch``: write champion predictions for flights that have not departed yet.

Scheduled on ``model | features`` (a new champion rescores; new data is scored even when the
champion stays) or daily when the stream is quiet. Scores the dates named by the triggering
feature events (or, on the daily run, today and tomorrow) with ``scoring.batch.score_dates``
(also ``streamfit score``) and emits the ``predictions`` asset.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import dag, task
from airflow.timetables.assets import AssetOrTimeSchedule
from airflow.timetables.trigger import CronTriggerTimetable
from streamfit_assets import FEATURES, MODEL, PREDICTIONS


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
          retry_exponential_backoff=True)
    def score(triggering_asset_events=None, outlet_events=None) -> dict[str, object]:  # noqa: ANN001
        from airflow.sdk.exceptions import AirflowSkipException

        from scoring.batch import NoChampion, score_dates, scoring_dates
        from streamfit.catalog import event_extras
        from streamfit.settings import get_settings

        extras = event_extras(triggering_asset_events)
        dates, as_of = scoring_dates(extras)
        try:
            result = score_dates(get_settings(), dates, as_of)
        except NoChampion as exc:  # nothing to score with until a model exists
            raise AirflowSkipException(str(exc)) from None
        summary = {"model_version": result.model_version, "dates": result.dates,
                   "scored": result.scored}
        outlet_events[PREDICTIONS].extra = summary
        return summary

    score()


score_batch()
