"""``build_features``: featurize everything landed and not yet featurized.

Scheduled on the ``raw_events`` asset or the time fallback (``STREAMFIT_PIPELINE_FALLBACK_CRON``).
The task runs ``features.run.build_pending`` (also ``streamfit pipeline run``): per keyspace the
pipeline serves, the ingest-ledger ranges past the feature watermark are built, then the
watermark moves. The triggering events are hints only. Then (``STREAMFIT_PIPELINE_SCORE_ON_BUILD``)
``scoring.run.score_built`` has the current champion score what was built, in the same task.
Emits the ``features`` asset with the built dates per keyspace in its ``extra``; a run with
nothing pending skips.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import dag, task
from airflow.timetables.assets import AssetOrTimeSchedule
from streamfit_assets import FEATURES, RAW_EVENTS, fallback, on_failure, skip


@dag(
    dag_id="build_features",
    schedule=AssetOrTimeSchedule(timetable=fallback(), assets=RAW_EVENTS),
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    tags=["streamfit", "features"],
    doc_md=__doc__,
)
def build_features() -> None:
    @task(outlets=[FEATURES], retries=3, retry_delay=pendulum.duration(seconds=10),
          retry_exponential_backoff=True, on_failure_callback=on_failure(
              "check Cassandra (`streamfit stack status`) and the raw events of the dates"))
    def rebuild(triggering_asset_events=None, outlet_events=None) -> dict[str, object]:  # noqa: ANN001
        from features.run import build_pending
        from scoring.run import score_built
        from streamfit.catalog import hinted_keyspaces
        from streamfit.settings import get_settings

        settings = get_settings()
        summary = build_pending(settings, hinted_keyspaces(triggering_asset_events))
        if not summary["by_keyspace"]:
            skip("nothing built", summary)
        if settings.pipeline_score_on_build:
            score_built(settings, summary["by_keyspace"])
        outlet_events[FEATURES].extra = summary
        return summary

    rebuild()


build_features()
