"""A small client for Airflow 3's public REST API (``/api/v2``).

Used by ``streamfit stack up|status`` (health, version), by the tests, by the ingest service to
announce data arrival as asset events, and by the HTTP server to start transient runs. Tokens come
from ``POST /auth/token`` (SimpleAuthManager). ``airflow_client`` builds one from the settings
alone, so production code never needs the local stack's code to reach Airflow.
"""

from __future__ import annotations

import json
import ssl
import time
from dataclasses import dataclass
from typing import Any

import httpx

from streamfit.settings import Settings

#: The XCom a pipeline task that did nothing leaves before it skips: keyspace -> why (Airflow
#: keeps no result of a skipped task, and its skip message is only in the log). It is the key of
#: ``progress.run_stage``'s summary: a successful task returns that dict, and Airflow (inferring
#: multiple_outputs from the dict return type) pushes this XCom for it too, with the same meaning.
SKIPPED_XCOM = "skipped"

class AirflowAPIError(RuntimeError):
    """Airflow's API refused or failed a request; the message carries its status and answer."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


def airflow_password(settings: Settings) -> str | None:
    """``STREAMFIT_AIRFLOW_PASSWORD``, else the password that Airflow's SimpleAuthManager generated
    into its passwords file (``<STREAMFIT_HOME>/airflow/passwords.json``, where the local stack's
    Airflow keeps it)."""
    if settings.airflow_password is not None:
        return settings.airflow_password.get_secret_value()
    try:
        generated = json.loads((settings.home / "airflow" / "passwords.json").read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None
    return generated.get(settings.airflow_username) if isinstance(generated, dict) else None


def airflow_client(settings: Settings, timeout: float = 5.0) -> AirflowClient:
    """A client for the Airflow API the settings name (``STREAMFIT_AIRFLOW_URL``, user, password)."""
    return AirflowClient(settings.airflow_api_url, settings.airflow_username,
                         airflow_password(settings), timeout=timeout,
                         verify=str(settings.airflow_ssl_cafile or "") or True)


class AirflowClient:
    def __init__(self, base_url: str, username: str, password: str | None,
                 timeout: float = 10.0, verify: str | bool = True) -> None:
        """``verify``: a PEM CA file to check an https server against, or True (the system's)."""
        self.base_url = base_url.rstrip("/")
        self._username = username
        self._password = password
        context = ssl.create_default_context(cafile=verify) if isinstance(verify, str) else verify
        self._http = httpx.Client(base_url=self.base_url, timeout=timeout, verify=context)
        self._token: str | None = None
        self._token_at = 0.0

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> AirflowClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def health(self) -> dict[str, Any]:
        """``/api/v2/monitor/health``: metadatabase, scheduler, triggerer, dag_processor."""
        resp = self._http.get("/api/v2/monitor/health")
        resp.raise_for_status()
        return resp.json()  # type: ignore[no-any-return]

    def healthy(self) -> bool:
        body = self.health()
        parts = ("metadatabase", "scheduler", "triggerer", "dag_processor")
        return all((body.get(p) or {}).get("status") == "healthy" for p in parts)

    def _auth_headers(self) -> dict[str, str]:
        # Tokens last 24 h by default; renew hourly so a long-running ingest never holds a stale one.
        if self._token is None or time.monotonic() - self._token_at > 3600:
            if not self._password:
                raise AirflowAPIError(
                    "no Airflow password: set STREAMFIT_AIRFLOW_PASSWORD, or start the local stack "
                    "(`streamfit stack up`), which generates one"
                )
            resp = self._http.post(
                "/auth/token", json={"username": self._username, "password": self._password}
            )
            if resp.status_code >= 400:
                raise AirflowAPIError(
                    f"Airflow refused the login of {self._username!r} ({resp.status_code}): "
                    "check STREAMFIT_AIRFLOW_USERNAME / STREAMFIT_AIRFLOW_PASSWORD"
                )
            self._token = resp.json()["access_token"]
            self._token_at = time.monotonic()
        return {"Authorization": f"Bearer {self._token}"}

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        resp = self._http.request(method, path, headers=self._auth_headers(), **kwargs)
        if resp.status_code >= 400:
            raise AirflowAPIError(f"{method} {path} -> {resp.status_code}: {resp.text[:500]}",
                                  resp.status_code)
        return resp.json() if resp.content else None

    def version(self) -> str:
        return str(self.request("GET", "/api/v2/version")["version"])

    def asset_id(self, uri: str) -> int:
        """The id Airflow gave the asset with this URI (it exists once a DAG file declares it)."""
        body = self.request("GET", "/api/v2/assets", params={"uri_pattern": uri, "limit": 100})
        for asset in body.get("assets", []):
            if asset["uri"] == uri:
                return int(asset["id"])
        raise AirflowAPIError(f"Airflow knows no asset {uri!r} yet: no DAG file declares it, or "
                              "the dag-processor has not parsed the dags folder")

    def create_asset_event(self, uri: str, extra: dict[str, Any]) -> dict[str, Any]:
        """``POST /api/v2/assets/events``: the scheduler then queues DAGs scheduled on it."""
        return self.request(  # type: ignore[no-any-return]
            "POST", "/api/v2/assets/events",
            json={"asset_id": self.asset_id(uri), "extra": extra})

    def asset_events(self, uri: str, limit: int = 100) -> list[dict[str, Any]]:
        body = self.request("GET", "/api/v2/assets/events",
                            params={"asset_id": self.asset_id(uri), "limit": limit,
                                    "order_by": "-timestamp"})
        return body.get("asset_events", [])  # type: ignore[no-any-return]

    def pipeline_busy(self, dag_ids: tuple[str, ...]) -> bool:
        """Whether any of these DAGs has a queued or running run."""
        for dag_id in dag_ids:
            for state in ("queued", "running"):
                if self.request("GET", f"/api/v2/dags/{dag_id}/dagRuns",
                                params={"state": state, "limit": 1})["total_entries"]:
                    return True
        return False

    def pipeline_runs(self, dag_id: str, since: str, keyspace: str, ended: bool = False
                      ) -> list[PipelineRun]:
        """Finished runs of a streamfit pipeline DAG created after ``since`` (``ended``: that
        ended after it) that concern ``keyspace``: runs whose result names it, and skipped runs
        whose skip reasons (``SKIPPED_XCOM``) do. A fallback run is filed under its cron tick,
        which may come just before ``since`` while the run reads what landed after it: a
        watcher that must see it asks for ``ended``."""
        out = []
        for run in self.dag_runs(dag_id, since, field="end_date_gte" if ended else "run_after_gte"):
            if run["state"] not in ("success", "failed"):
                continue
            base = f"/api/v2/dags/{dag_id}/dagRuns/{run['dag_run_id']}/taskInstances"
            ti = self.request("GET", base)["task_instances"][0]
            summary: dict[str, Any] | None = None
            reason: str | None = None
            if ti["state"] == "success":
                summary = (self._xcom(base, ti["task_id"], "return_value") or {}).get(
                    "by_keyspace", {}).get(keyspace)
                if summary is None:
                    continue
            elif ti["state"] == "skipped":
                reason = (self._xcom(base, ti["task_id"], SKIPPED_XCOM) or {}).get(keyspace)
                if reason is None:  # it did nothing here because it never looked here
                    continue
            out.append(PipelineRun(dag_id, run["dag_run_id"], run["run_type"], ti["state"],
                                   run.get("start_date"), run.get("end_date"), summary, reason))
        return out

    def _xcom(self, task_instances: str, task_id: str, key: str) -> Any:
        """A task's XCom ``key``, None when it left none."""
        try:
            return self.request("GET", f"{task_instances}/{task_id}/xcomEntries/{key}")["value"]
        except AirflowAPIError as exc:
            if exc.status == 404:
                return None
            raise

    def dag_runs(self, dag_id: str, since: str, page_size: int = 100,
                 field: str = "run_after_gte") -> list[dict[str, Any]]:
        """Every run of ``dag_id`` created after ``since`` (or by another of the API's ``*_gte``
        filters, e.g. ``end_date_gte``), oldest first, page by page (one page of 100 once hid the
        newest runs from a long-lived Airflow)."""
        runs: list[dict[str, Any]] = []
        while True:
            page = self.request("GET", f"/api/v2/dags/{dag_id}/dagRuns",
                                params={"limit": page_size, "offset": len(runs), "order_by": "id",
                                        field: since})
            runs.extend(page["dag_runs"])
            if not page["dag_runs"] or len(runs) >= page["total_entries"]:
                return runs


@dataclass(frozen=True)
class PipelineRun:
    dag_id: str
    run_id: str
    run_type: str
    state: str  # task state: success | skipped | failed | upstream_failed
    start_date: str | None
    end_date: str | None
    #: the task's summary for the keyspace (None for skipped or failed runs)
    summary: dict[str, Any] | None
    #: why a skipped run did nothing in the keyspace, e.g. "nothing pending" (None otherwise)
    reason: str | None = None
