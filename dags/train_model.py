"""``train_model``: retrain when features change; promote only a better model.

Scheduled on the ``features`` asset. Runs ``training.train.train_for_events``, which is
``train_and_maybe_promote`` (also ``streamfit train``) for each keyspace the feature events name: it
skips (and logs why) when too little new labelled data arrived, and emits the ``model`` asset only
when a champion changed, with the new version and the dates to rescore in its ``extra``.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import dag, task
from streamfit_assets import FEATURES, MODEL

from streamfit.alerts import on_task_failure


@dag(
    dag_id="train_model",
    schedule=[FEATURES],
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    tags=["streamfit", "training"],
    doc_md=__doc__,
)
def train_model() -> None:
    @task(outlets=[MODEL], retries=2, retry_delay=pendulum.duration(seconds=30),
          retry_exponential_backoff=True, on_failure_callback=on_task_failure)
    def train(triggering_asset_events=None, outlet_events=None) -> dict[str, object]:  # noqa: ANN001
        from streamfit.catalog import event_extras
        from streamfit.settings import get_settings
        from training.train import train_for_events

        summary = train_for_events(get_settings(), event_extras(triggering_asset_events))
        if not summary["by_keyspace"]:
            # No champion changed: emit no model event (scoring runs on the features event).
            from airflow.sdk.exceptions import AirflowSkipException

            raise AirflowSkipException(f"no promotion: {summary['skipped']}")
        outlet_events[MODEL].extra = summary
        return summary

    train()


train_model()
