"""The deliveries domain: a deterministic replay, valid events, and features that are
point-in-time (nothing after a parcel's pickup changes them)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pandas as pd
import pytest

from ingest.envelope import Envelope, decode, encode
from streamfit.domains import ENTITY_ID, LABEL, ReplayOptions, load_domain

DOMAIN = load_domain("deliveries")
START, END = date(2024, 1, 1), date(2024, 1, 14)
HORIZON = DOMAIN.features.horizons["6 h before pickup"]


class Landed:
    """Events as the feature store would hand them to a builder: payloads by event date and
    type (the builder's only input; in the pipeline they come from Cassandra)."""

    def __init__(self, events: Iterable[dict[str, Any]]) -> None:
        self.rows: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
        for e in events:
            self.rows[(e["event_time"][:10], e["event_type"])].append(e["payload"])

    def payloads(self, day: date, event_type: str) -> list[dict[str, Any]]:
        return self.rows.get((day.isoformat(), event_type), [])

    def frame(self, days: Iterable[date], event_type: str) -> pd.DataFrame:
        return pd.DataFrame([r for d in days for r in self.payloads(d, event_type)])


@pytest.fixture(scope="module")
def events() -> list[dict[str, Any]]:
    return list(DOMAIN.replay("synthetic", ReplayOptions(START, END)))


def test_the_replay_is_deterministic_ordered_and_valid(events: list[dict[str, Any]]) -> None:
    again = list(DOMAIN.replay("synthetic", ReplayOptions(START, END)))
    assert again == events
    times = [e["event_time"] for e in events]
    assert times == sorted(times) and START.isoformat() <= times[0] and times[-1] < "2024-01-15"
    assert len({e["event_id"] for e in events}) == len(events)
    now = datetime.now(UTC)
    decoded = [decode(encode(e), DOMAIN, 262_144, now) for e in events[::50]]
    assert all(isinstance(d, Envelope) for d in decoded)
    # a later start replays the same events of the days they share
    later = list(DOMAIN.replay("synthetic", ReplayOptions(date(2024, 1, 8), END)))
    assert later == [e for e in events if e["event_time"] >= "2024-01-08"]


def test_scaled_copies_are_distinct_parcels(events: list[dict[str, Any]]) -> None:
    scaled = list(DOMAIN.replay("synthetic", ReplayOptions(START, date(2024, 1, 2), scale=2)))
    base = [e for e in events if e["event_time"] < "2024-01-03"]
    assert len(scaled) == 2 * len(base)
    assert len({e["event_id"] for e in scaled}) == len(scaled)
    copies = [e for e in scaled if e["entity_key"].endswith("~1")]
    assert copies and all(e["payload"]["parcel_id"] == e["entity_key"] for e in copies)


def test_a_day_has_its_parcels_labels_and_every_feature(events: list[dict[str, Any]]) -> None:
    day = date(2024, 1, 8)
    frame = DOMAIN.features.build_day(Landed(events), day, HORIZON)
    booked = {e["entity_key"] for e in events if e["event_type"] == "parcel_booked"
              and e["payload"]["pickup_at"][:10] == day.isoformat()}
    assert set(frame[ENTITY_ID]) == booked
    assert set(DOMAIN.features.names) <= set(frame.columns)
    assert frame[LABEL].notna().all()  # all delivered by the end of the replay
    late = frame[LABEL].astype(bool)
    assert ((frame["outcome"] > 0) == late).all() and 0.1 < late.mean() < 0.5
    # the last day's parcels are not delivered yet: no label
    last = DOMAIN.features.build_day(Landed(events), END, HORIZON)
    assert last[LABEL].isna().mean() > 0.5


def test_features_use_nothing_after_the_as_of_time(events: list[dict[str, Any]]) -> None:
    """Leakage test of the horizon: the features of a parcel built from all events equal those
    built from only the events before its as-of time (6 h before pickup)."""
    day = date(2024, 1, 10)
    full = DOMAIN.features.build_day(Landed(events), day, HORIZON).set_index(ENTITY_ID)
    names = list(DOMAIN.features.names)
    for parcel in full.sample(15, random_state=0).index:
        t = full.loc[parcel, "event_time"] - HORIZON
        cut = (t.astimezone(UTC)).strftime("%Y-%m-%dT%H:%M:%S.%f")[:23] + "Z"
        before = Landed(e for e in events if e["event_time"] < cut)
        row = next(e["payload"] for e in events if e["entity_key"] == parcel
                   and e["event_type"] == "parcel_booked")
        alone = DOMAIN.features.build_for(before, pd.DataFrame([row]),  # type: ignore[misc]
                                          HORIZON)
        assert alone[names].iloc[0].tolist() == pytest.approx(full.loc[parcel, names].tolist())


def test_a_booking_and_a_delivery_change_the_right_days() -> None:
    got = DOMAIN.features.days_affected([date(2024, 1, 10)])
    assert got == [date(2024, 1, 10) + timedelta(days=i) for i in range(-4, 3)]
