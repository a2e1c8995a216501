"""Names and URIs of streamfit's data assets, shared by Airflow (``dags/streamfit_assets.py``)
and by the processes that announce asset events through Airflow's REST API (ingest).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class AssetId:
    name: str
    uri: str


RAW_EVENTS = AssetId("raw_events", "cassandra://streamfit/raw_events")
FEATURES = AssetId("features", "cassandra://streamfit/flight_features")
MODEL = AssetId("model", "cassandra://streamfit/model_registry/champion")
PREDICTIONS = AssetId("predictions", "cassandra://streamfit/predictions")
