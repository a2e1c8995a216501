"""Names and URIs of streamfit's data assets, shared by Airflow (``dags/streamfit_assets.py``)
and by the processes that announce asset events through Airflow's REST API (ingest).
"""

from __future__ import annotations

from collections.abc import Callable
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


def for_each_keyspace(settings: Any, extras: list[dict[str, Any]],
                      step: Callable[[Any, list[dict[str, Any]]], dict[str, Any] | str],
                      default_when_empty: bool = True) -> dict[str, Any]:
    """Run ``step(settings_for_keyspace, its_extras)`` once per keyspace the extras name.

    ``step`` returns a summary, or a string saying why it did nothing. Returns
    ``{"by_keyspace": {keyspace: summary}}`` (the ``extra`` of the DAG's outlet event) and
    ``"skipped": {keyspace: why}`` for the others. A
    keyspace that is not a valid name or does not exist is skipped, never created.
    """
    import logging

    from streamfit.cassandra import connect

    log = logging.getLogger("streamfit.pipeline")
    groups = by_keyspace(extras, settings.keyspace)
    if not groups and default_when_empty:
        groups = {settings.keyspace: []}
    with connect(settings, keyspace=None) as session:
        existing = set(session.cluster.metadata.keyspaces)
    done: dict[str, Any] = {}
    skipped: dict[str, str] = {}
    for keyspace, group in sorted(groups.items()):
        if not valid_keyspace(keyspace) or keyspace not in existing:
            skipped[keyspace] = "no such keyspace (run `streamfit db migrate` for it)"
            log.warning("skipping keyspace %r: it does not exist", keyspace)
            continue
        result = step(settings.model_copy(update={"keyspace": keyspace}), group)
        if isinstance(result, str):
            skipped[keyspace] = result
        else:
            done[keyspace] = result
    return {"by_keyspace": done, "skipped": skipped}


def valid_keyspace(name: str) -> bool:
    return bool(name) and name.replace("_", "").isalnum() and name[0].isalpha() and len(name) <= 48
