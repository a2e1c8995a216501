"""A domain derived from flights with a version 2 of flight_departed (adds a gate): used to test
that dead letters refused by the old schema are re-submitted once the schema is fixed."""

from __future__ import annotations

from dataclasses import replace

from pydantic import Field

from streamfit.domains import flights


class FlightDepartedV2(flights.FlightDeparted):
    gate: str = Field(min_length=1, max_length=8)


DOMAIN = replace(flights.DOMAIN, name="flights-v2", schemas={
    **flights.SCHEMAS, "flight_departed": {1: flights.FlightDeparted, 2: FlightDepartedV2}})
