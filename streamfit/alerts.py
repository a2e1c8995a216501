"""Failure alerts for the pipeline DAGs: every task's ``on_failure_callback``.

Airflow calls ``on_task_failure`` in the task's process once a task has failed for good (its
retries used up). It logs one ERROR line that says which DAG, task and run failed, why, and where
the log is, and POSTs the same alert as JSON to ``STREAMFIT_ALERT_WEBHOOK_URL`` when that is set.
"""

from __future__ import annotations

import logging
from typing import Any

log = logging.getLogger("streamfit.alerts")

#: What to look at first, per DAG.
HINTS = {
    "build_features": "check Cassandra (`streamfit stack status`) and the raw events of the dates",
    "train_model": "check the feature tables (`streamfit features build --date D`) and settings",
    "score_batch": "check the champion (`streamfit models show`) and its artifact digest",
}


def alert_of(context: dict[str, Any]) -> dict[str, Any]:
    """The alert for a task-failure callback context (pure: testable without Airflow)."""
    ti = context.get("ti") or context.get("task_instance")
    dag_id = getattr(ti, "dag_id", None) or str(context.get("dag_id", "?"))
    exc = context.get("exception")
    return {
        "dag_id": dag_id,
        "task_id": getattr(ti, "task_id", "?"),
        "run_id": getattr(ti, "run_id", None) or str(context.get("run_id", "?")),
        "try_number": getattr(ti, "try_number", None),
        "error": f"{type(exc).__name__}: {exc}" if exc is not None else "unknown error",
        "log_url": getattr(ti, "log_url", None),
        "hint": HINTS.get(dag_id, "see the task log"),
    }


def on_task_failure(context: dict[str, Any]) -> None:
    alert = alert_of(context)
    log.error("streamfit task failed: %(dag_id)s.%(task_id)s run %(run_id)s try %(try_number)s: "
              "%(error)s; %(hint)s; log: %(log_url)s", alert)
    from streamfit.settings import get_settings

    url = get_settings().alert_webhook_url
    if url:
        send(url, alert)


def send(url: str, alert: dict[str, Any]) -> bool:
    """POST the alert; a broken webhook is logged, never raised (the task already failed)."""
    import httpx

    text = (f"streamfit: {alert['dag_id']}.{alert['task_id']} failed ({alert['error']}). "
            f"{alert['hint']}")
    try:
        httpx.post(url, json={"text": text, **alert}, timeout=5.0).raise_for_status()
        return True
    except httpx.HTTPError as exc:
        log.warning("could not send the alert to the webhook: %s", exc)
        return False
