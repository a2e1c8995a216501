"""The synthetic parcel stream (``streamfit produce replay`` with ``STREAMFIT_DOMAIN=deliveries``).

Deterministic: the same options give the same events with the same ids. Each day, ``PER_DAY``
parcels are picked up at six depots between 06:00 and 20:00 UTC by one of twelve couriers, each
booked 6 to 30 hours before. The replay holds every event from ``start`` to the end of ``end``:
the bookings made on ``end`` for the next day's pickups included, their deliveries not. Whether a parcel
is late depends on things its features can see before it ships (its courier's reliability, its
depot's current storm, its distance and service) plus noise.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Any

import numpy as np

from streamfit.domains import ReplayOptions

PER_DAY = 400
DEPOTS = [f"D{i:02d}" for i in range(1, 7)]
COURIERS = [f"C{i:02d}" for i in range(1, 13)]
EPOCH = date(2024, 1, 1)
NAMESPACE = uuid.UUID("2b0c7e9e-3d1f-4a56-9a77-5f1c2f4b8e01")
#: a courier's reliability: fixed for the data set (the seed says so)
RELIABILITY = np.random.default_rng(11).normal(0.0, 1.0, len(COURIERS))


def _storms(last: date) -> np.ndarray:
    """Per day since EPOCH and depot, a storm level that lasts a few days (an AR(1) process)."""
    days = (last - EPOCH).days + 1
    rng = np.random.default_rng(7)
    level = np.zeros((max(days, 1), len(DEPOTS)))
    for d in range(1, days):
        level[d] = 0.85 * level[d - 1] + rng.normal(0.0, 0.5, len(DEPOTS))
    return level


def _iso(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _day_events(day: date, storms: np.ndarray) -> list[tuple[datetime, str, str, dict[str, Any]]]:
    rng = np.random.default_rng((day - EPOCH).days + 1_000)
    out = []
    storm = storms[(day - EPOCH).days]
    for i in range(PER_DAY):
        depot, courier = int(rng.integers(len(DEPOTS))), int(rng.integers(len(COURIERS)))
        express = bool(rng.uniform() < 0.25)
        weight, distance = float(rng.gamma(2.0, 2.5)) + 0.1, float(rng.uniform(5, 600))
        pickup = datetime(day.year, day.month, day.day, 6, tzinfo=UTC) + timedelta(
            seconds=int(rng.integers(14 * 3600)))
        booked = pickup - timedelta(seconds=int(rng.integers(6 * 3600, 30 * 3600)))
        promised = pickup + timedelta(hours=24 if express else 48)
        odds = -1.8 + 1.0 * RELIABILITY[courier] + 1.2 * storm[depot] + 0.002 * distance \
            + (0.7 if express else 0.0)
        late = rng.uniform() < 1.0 / (1.0 + np.exp(-odds))
        slack = float(rng.uniform(1, 30)) if late else -float(rng.uniform(1, 20))
        delivered = promised + timedelta(hours=slack)
        pid = f"P{day:%Y%m%d}-{i:04d}"
        common = {"parcel_id": pid, "depot": DEPOTS[depot], "courier": COURIERS[courier]}
        out.append((booked, "parcel_booked", pid, {
            **common, "service": "express" if express else "standard",
            "weight_kg": round(weight, 2), "distance_km": round(distance, 1),
            "booked_at": _iso(booked), "pickup_at": _iso(pickup), "promised_by": _iso(promised)}))
        out.append((delivered, "parcel_delivered", pid, {
            **common, "promised_by": _iso(promised), "delivered_at": _iso(delivered)}))
    return out


def synthetic(options: ReplayOptions) -> Iterator[dict[str, Any]]:
    """Envelopes in event-time order of everything that happened from ``start`` to ``end``."""
    start = options.start or EPOCH
    end = options.end or start + timedelta(days=27)
    if start < EPOCH or end < start:
        raise ValueError(f"the synthetic deliveries start on {EPOCH}; give --from on or after "
                         "it and --to on or after --from")
    lo = datetime(start.year, start.month, start.day, tzinfo=UTC)
    hi = datetime(end.year, end.month, end.day, tzinfo=UTC) + timedelta(days=1)
    storms = _storms(end + timedelta(days=2))
    # pickups up to two days later are booked by the end; earlier ones still deliver inside it
    days = [start - timedelta(days=4) + timedelta(days=d) for d in range((end - start).days + 7)]
    events = sorted((e for day in days if day >= EPOCH for e in _day_events(day, storms)
                     if lo <= e[0] < hi),
                    key=lambda e: (e[0], e[1] == "parcel_delivered", e[2]))
    shift = datetime.now(UTC) - events[0][0] if options.shift_to_now and events else None
    for when, etype, key, payload in events:
        for k in range(options.scale):
            suffix = f"~{k}" if k else ""
            body = dict(payload, parcel_id=key + suffix) if k else payload
            if shift is not None:
                body = {f: (_iso(datetime.fromisoformat(v) + shift) if f.endswith(("_at", "_by"))
                            else v) for f, v in body.items()}
            yield {"event_id": str(uuid.uuid5(NAMESPACE, f"{etype}|{key}{suffix}")),
                   "event_type": etype, "event_time": _iso(when + (shift or timedelta(0))),
                   "entity_key": key + suffix, "schema_version": 1, "payload": body}
