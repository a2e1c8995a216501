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
FEATURES = AssetId("features", "cassandra://streamfit/flight_features")
MODEL = AssetId("model", "cassandra://streamfit/model_registry/champion")
PREDICTIONS = AssetId("predictions", "cassandra://streamfit/predictions")


def event_extras(triggering_asset_events: Any) -> list[dict[str, Any]]:
    """The ``extra`` dicts of every asset event that triggered a DAG run (task context value)."""
    if not triggering_asset_events:
        return []
    return [dict(e.extra or {}) for group in triggering_asset_events.values() for e in group]
