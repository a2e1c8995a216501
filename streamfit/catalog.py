"""Names and URIs of streamfit's data assets, shared by Airflow (``dags/streamfit_assets.py``)
and by the processes that announce asset events through Airflow's REST API (ingest).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class AssetId:
    name: str
    uri: str


RAW_EVENTS = AssetId("raw_events", "cassandra://streamfit/raw_events")
FEATURES = AssetId("features", "cassandra://streamfit/features_by_horizon")
MODEL = AssetId("model", "cassandra://streamfit/model_registry/champion")
PREDICTIONS = AssetId("predictions", "cassandra://streamfit/predictions")


def event_extras(triggering_asset_events: Any) -> list[dict[str, Any]]:
    """The ``extra`` dicts of every asset event that triggered a DAG run (task context value)."""
    if not triggering_asset_events:
        return []
    return [dict(e.extra or {}) for group in triggering_asset_events.values() for e in group]


def by_keyspace(extras: list[dict[str, Any]], default: str) -> dict[str, list[dict[str, Any]]]:
    """Group triggering extras by the keyspace whose data they describe.

    Several pipelines (keyspaces) can share one Airflow: the ingest signal names its keyspace
    (``"keyspace"``), streamfit's DAGs pass theirs on as ``{"by_keyspace": {keyspace: summary}}``,
    and an event that names none (posted by hand, or the daily run) is for the default keyspace.
    """
    out: dict[str, list[dict[str, Any]]] = {}
    for extra in extras:
        nested = extra.get("by_keyspace")
        if isinstance(nested, dict):
            for keyspace, summary in nested.items():
                out.setdefault(str(keyspace), []).append(dict(summary or {}))
        else:
            out.setdefault(str(extra.get("keyspace") or default), []).append(extra)
    return out


def valid_keyspace(name: str) -> bool:
    return bool(name) and name.replace("_", "").isalnum() and name[0].isalpha() and len(name) <= 48


def hinted_keyspaces(triggering_asset_events: Any) -> list[str]:
    """The keyspaces the triggering events name: hints of where work may be, never what it is
    (``streamfit.progress`` reads that from Cassandra)."""
    return sorted(by_keyspace(event_extras(triggering_asset_events), ""))
