"""``score_batch``: write champion predictions for the entities still ahead of the stream.

Scheduled on ``model | features`` (a new champion rescores; new data is scored even when the
champion stays) or the time fallback (``STREAMFIT_PIPELINE_FALLBACK_CRON``). The task runs
``scoring.run.score_pending`` (also ``streamfit pipeline run``): per keyspace, the feature builds
past the scoring watermark and a champion change since the last scoring run; drift is recorded and
matured predictions evaluated. Emits the ``predictions`` asset.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import dag, task
from airflow.timetables.assets import AssetOrTimeSchedule
from streamfit_assets import FEATURES, MODEL, PREDICTIONS, fallback, on_failure, skip


@dag(
    dag_id="score_batch",
    schedule=AssetOrTimeSchedule(timetable=fallback(), assets=(MODEL | FEATURES)),
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    tags=["streamfit", "scoring"],
    doc_md=__doc__,
)
def score_batch() -> None:
    @task(outlets=[PREDICTIONS], retries=2, retry_delay=pendulum.duration(seconds=30),
          retry_exponential_backoff=True, on_failure_callback=on_failure(
              "check the champion (`streamfit models show`) and its artifact digest"))
    def score(triggering_asset_events=None, outlet_events=None) -> dict[str, object]:  # noqa: ANN001
        from scoring.run import score_pending
        from streamfit.catalog import hinted_keyspaces
        from streamfit.settings import get_settings

        summary = score_pending(get_settings(), hinted_keyspaces(triggering_asset_events))
        if not summary["by_keyspace"]:
            skip("nothing scored", summary)
        outlet_events[PREDICTIONS].extra = summary
        return summary

    score()


score_batch()
