"""Alerts: failed pipeline tasks, and serving models whose quality or inputs went wrong.

Airflow calls ``on_task_failure`` (every task's ``on_failure_callback``, with the hint its DAG file
gives) in the task's process once a task has failed for good (its retries used up). It logs one
ERROR line that says which DAG, task and run failed, why, what to check and where the log is, and
POSTs the same alert as JSON to
``STREAMFIT_ALERT_WEBHOOK_URL`` when that is set. Batch scoring calls ``quality_alert`` when the
champion's realised quality or its inputs' drift crosses the configured lines.
"""

from __future__ import annotations

import logging
from typing import Any

log = logging.getLogger("streamfit.alerts")

def alert_of(context: dict[str, Any], hint: str = "see the task log") -> dict[str, Any]:
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
        "hint": hint,
    }


def on_task_failure(context: dict[str, Any], hint: str = "see the task log") -> None:
    """``hint``: what to look at first (the DAG file knows its task; ``functools.partial``)."""
    alert = alert_of(context, hint)
    log.error("streamfit task failed: %(dag_id)s.%(task_id)s run %(run_id)s try %(try_number)s: "
              "%(error)s; %(hint)s; log: %(log_url)s", alert)
    from streamfit.settings import get_settings

    url = get_settings().alert_webhook_url
    if url:
        send(url, alert)


def quality_alert(keyspace: str, model: str, version: int, problems: list[str],
                  webhook_url: str | None) -> dict[str, Any]:
    """Log (ERROR) and send what is wrong with serving model ``version``; returns the alert."""
    alert = {"kind": "model_quality", "keyspace": keyspace, "model": model, "version": version,
             # each problem says what to do about it (a realised-quality gap: retrain or roll
             # back; a gap in the events: the producer); the hint says where to look
             "problems": problems, "hint": f"see `streamfit models show {version}` and "
             "`streamfit report`"}
    log.error("streamfit model %s v%d in %s: %s; %s", model, version, keyspace,
              "; ".join(problems), alert["hint"])
    if webhook_url:
        send(webhook_url, alert, f"streamfit: {model} v{version} in {keyspace}: "
                                 f"{'; '.join(problems)}. {alert['hint']}")
    return alert


def send(url: str, alert: dict[str, Any], text: str | None = None) -> bool:
    """POST the alert with a one-line ``text`` (default: a failed task's, from ``alert_of``); a
    broken webhook is logged, never raised (the task already failed)."""
    import httpx

    if text is None:
        text = (f"streamfit: {alert['dag_id']}.{alert['task_id']} failed ({alert['error']}). "
                f"{alert['hint']}")
    try:
        httpx.post(url, json={"text": text, **alert}, timeout=5.0).raise_for_status()
        return True
    except httpx.HTTPError as exc:
        log.warning("could not send the alert to the webhook: %s", exc)
        return False
