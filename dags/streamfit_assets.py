"""The one registry of streamfit's Airflow assets. DAG files import their schedules and outlets
from here; nothing else defines an asset. Also the two things every pipeline task shares: its time
fallback, its failure alert, and how it ends when it did nothing.

The names and URIs come from ``streamfit.catalog`` so that processes outside Airflow (the ingest
service announcing new data) use exactly the same identities without importing ``dags/``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, NoReturn

from airflow.sdk import Asset

from streamfit import catalog

RAW_EVENTS = Asset(name=catalog.RAW_EVENTS.name, uri=catalog.RAW_EVENTS.uri, group="streamfit")
FEATURES = Asset(name=catalog.FEATURES.name, uri=catalog.FEATURES.uri, group="streamfit")
MODEL = Asset(name=catalog.MODEL.name, uri=catalog.MODEL.uri, group="streamfit")
PREDICTIONS = Asset(name=catalog.PREDICTIONS.name, uri=catalog.PREDICTIONS.uri, group="streamfit")


def on_failure(hint: str) -> Callable[[dict[str, Any]], None]:
    """A task's ``on_failure_callback``: the alert (``streamfit.alerts``) with what to check."""
    from streamfit.alerts import on_task_failure

    return functools.partial(on_task_failure, hint=hint)


def fallback():  # noqa: ANN201 - an Airflow timetable
    """Every pipeline DAG also runs on this cron (``STREAMFIT_PIPELINE_FALLBACK_CRON``): Airflow
    3.3.2 may attach an asset event to no run, and a run reads its work from Cassandra, so a
    lost trigger delays work by at most this interval and never drops it."""
    from airflow.timetables.trigger import CronTriggerTimetable

    from streamfit.settings import get_settings

    return CronTriggerTimetable(get_settings().pipeline_fallback_cron, timezone="UTC")


def skip(what: str, summary: dict[str, Any]) -> NoReturn:
    """End a pipeline task that did nothing in any keyspace as skipped, leaving why per keyspace
    (``summary["skipped"]``) in the ``SKIPPED_XCOM`` XCom, where ``pipeline_runs`` reads it."""
    from airflow.sdk import get_current_context
    from airflow.sdk.exceptions import AirflowSkipException

    from streamfit.airflow_api import SKIPPED_XCOM

    get_current_context()["ti"].xcom_push(SKIPPED_XCOM, summary["skipped"])
    raise AirflowSkipException(f"{what}: {summary['skipped']}")
