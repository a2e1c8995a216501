"""``train_model``: retrain when features changed; promote only a better model.

Scheduled on the ``features`` asset or the time fallback (``STREAMFIT_PIPELINE_FALLBACK_CRON``).
The task runs ``training.run.train_pending`` (also ``streamfit pipeline run``): per keyspace with
feature builds past the training watermark, one ``train_and_maybe_promote`` (also
``streamfit train``), which skips (and says why) when too little new labelled data arrived. Emits
the ``model`` asset only when a champion changed.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import dag, task
from airflow.timetables.assets import AssetOrTimeSchedule
from streamfit_assets import FEATURES, MODEL, fallback, on_failure, skip


@dag(
    dag_id="train_model",
    schedule=AssetOrTimeSchedule(timetable=fallback(), assets=FEATURES),
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    tags=["streamfit", "training"],
    doc_md=__doc__,
)
def train_model() -> None:
    @task(outlets=[MODEL], retries=2, retry_delay=pendulum.duration(seconds=30),
          retry_exponential_backoff=True, on_failure_callback=on_failure(
              "check the feature tables (`streamfit features build --date D`) and settings"))
    def train(triggering_asset_events=None, outlet_events=None) -> dict[str, object]:  # noqa: ANN001
        from streamfit.catalog import hinted_keyspaces
        from streamfit.settings import get_settings
        from training.run import train_pending

        summary = train_pending(get_settings(), hinted_keyspaces(triggering_asset_events))
        if not summary["by_keyspace"]:
            # No champion changed: emit no model event (scoring runs on the features event).
            skip("no promotion", summary)
        outlet_events[MODEL].extra = summary
        return summary

    train()


train_model()
