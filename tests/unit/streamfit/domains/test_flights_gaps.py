"""The flights domain's coverage rule: a flight that arrived departed."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date
from typing import Any

import pandas as pd

from streamfit.domains.flights import DOMAIN


class Landed:
    """Landed payloads by (event date, event type), read as a feature builder reads them."""

    def __init__(self, rows: dict[tuple[date, str], list[dict[str, Any]]]) -> None:
        self.rows = rows

    def payloads(self, day: date, event_type: str) -> list[dict[str, Any]]:
        return self.rows.get((day, event_type), [])

    def frame(self, days: Iterable[date], event_type: str) -> pd.DataFrame:
        return pd.DataFrame([p for d in days for p in self.payloads(d, event_type)])


def test_arrivals_without_departures_name_their_carrier() -> None:
    day, next_day = date(2013, 3, 11), date(2013, 3, 12)
    ev = [f"EV{i}-EWR-20130311" for i in range(40)]
    ua = [f"UA{i}-EWR-20130311" for i in range(40)]
    copies = [f"B6{i}-JFK-20130311~2" for i in range(40)]  # --scale copies count too
    other_day = [f"EV{i}-EWR-20130312" for i in range(40)]  # not this entity date
    assert DOMAIN.gaps is not None
    raw = Landed({
        # the evening's flights arrive (and some depart) after midnight UTC: the next date
        (day, "flight_arrived"): [{"flight_id": f} for f in ev[:20] + ua + copies],
        (next_day, "flight_arrived"): [{"flight_id": f} for f in ev[20:] + other_day],
        (day, "flight_departed"): [{"flight_id": f} for f in ua[:30] + copies[:39]],
        (next_day, "flight_departed"): [{"flight_id": f} for f in ua[30:]]})
    [gap] = DOMAIN.gaps(raw, day)
    assert (gap.event_type, gap.group, gap.missing, gap.of) == ("flight_departed",
                                                                 "carrier EV", 40, 40)
