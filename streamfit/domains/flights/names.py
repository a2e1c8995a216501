"""The flights domain's feature names, without pandas: the ingest workers load the domain (for its
schemas) and must not pay for importing pandas (py-spy: up to 3.5 s of a worker's start)."""

from __future__ import annotations

#: The label measure (``Label.measures``): minutes on the ground, known with the arrival.
GROUND = "ground_min"
LATE_MINUTES = 15.0
WINDOW_DAYS: dict[str, int] = {"7d": 7, "28d": 28}
GROUPS: dict[str, list[str]] = {
    "carrier": ["carrier"], "origin": ["origin"], "route": ["origin", "dest"], "hour": ["sched_hour"],
    "flight": ["carrier", "flight", "origin"],
}
WEATHER_COLS = ["temp", "dewp", "humid", "wind_speed", "wind_gust", "precip", "pressure", "visib"]
#: over the three hours up to the latest observation (``pointintime._weather_trends``)
WEATHER_TRENDS = ["precip_3h", "visib_min_3h", "pressure_change_3h"]
PLANE_COLS = ["plane_year", "plane_seats", "plane_engines"]
#: Signals of the day itself: congestion at the origin and the aircraft's previous leg.
SAME_DAY = ["origin_dep_delay_2h", "origin_late_share_2h", "origin_scheduled_1h",
            "carrier_late_share_3h", "late_rate_dest_3h", "rotation_legs", "rotation_gap_min",
            "rotation_prev_delay", "rotation_propagated", "dest_late_share_3h",
            "origin_late_share_6h", "sched_block_min", "block_slack_min",
            "mean_delay_flight_28d", "mean_delay_route_7d",
            "air_excess_dest_3h", "air_excess_dest_24h", "air_excess_origin_2h",
            "air_excess_all_2h", "delay_gained_dest_3h", "delay_gained_all_2h"]

#: The trailing aggregates of the features, as tile families (``streamfit.tiles``): family ->
#: (key columns, value). The late share of each grouping and of all arrivals (the prior), the
#: mean clipped delay of a flight number and of a route, and the mean air time of a route.
TILE_FAMILIES: dict[str, tuple[tuple[str, ...], str]] = {
    **{f"late_{g}": (tuple(cols), "late") for g, cols in GROUPS.items()},
    "late_all": ((), "late"),
    "delay_flight": (tuple(GROUPS["flight"]), "delay_c"),
    "delay_route": (tuple(GROUPS["route"]), "delay_c"),
    "air_route": (("origin", "dest"), "air_time"),
}


def feature_names() -> list[str]:
    rates = [f"late_rate_{g}_{w}" for g in GROUPS for w in WINDOW_DAYS]
    counts = [f"n_{g}_{w}" for g in GROUPS for w in WINDOW_DAYS]
    calendar = ["sched_hour", "day_of_week", "month", "day_of_year", "distance"]
    weather = [f"wx_{c}" for c in [*WEATHER_COLS, *WEATHER_TRENDS]]
    return rates + counts + weather + PLANE_COLS + SAME_DAY + calendar


def model_features() -> list[str]:
    """The stored features a model is trained on.

    Left out, though stored: the trailing counts, which grow with the history a stream has
    accumulated (during a new pipeline's first 28 days they rise day by day), the day of the
    year, a time index, and the month, which on a 60- or 90-day window is one too. They let a
    model learn *when* instead of *what*, and a linear model then extrapolates them past its
    training window (seen: mean predictions of 0.53 against a 0.2 late share a week after
    training). The month did not help either: ``bench/backtest.py --without month`` (trained
    on Jan-Mar 2013) gave a realised ROC AUC on Apr 1-7 of 0.6468 without it, 0.6467 with it."""
    return [n for n in feature_names()
            if not n.startswith("n_") and n not in ("day_of_year", "month")]
