"""``train_model``: retrain when features change; promote only a better model.

Scheduled on the ``features`` asset. Runs ``training.train.train_and_maybe_promote`` (also
``streamfit train``): it skips (and logs why) when too little new labelled data arrived, and emits
the ``model`` asset only when the champion changed.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import dag, task
from streamfit_assets import FEATURES, MODEL


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
          retry_exponential_backoff=True)
    def train(outlet_events=None) -> dict[str, object]:  # noqa: ANN001
        from streamfit.settings import get_settings
        from training.train import train_and_maybe_promote

        result = train_and_maybe_promote(get_settings())
        outlet_events[MODEL].extra = {"version": result.version, "promoted": result.promoted,
                                      "champion": result.champion}
        if not result.promoted:
            # Nothing changed for consumers of the model asset: emit no event.
            from airflow.sdk.exceptions import AirflowSkipException

            raise AirflowSkipException(result.reason)
        return {"version": result.version, "metrics": result.metrics}

    train()


train_model()
