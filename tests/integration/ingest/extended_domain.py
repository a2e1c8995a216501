"""A domain derived from flights with a version 2 of flight_departed (adds a gate): used to test
that dead letters refused by the old schema are re-submitted once the schema is fixed."""

from __future__ import annotations

from dataclasses import replace

from pydantic import Field

from streamfit.domains import flights
from streamfit.domains.flights.events import SCHEMAS, FlightDeparted


class FlightDepartedV2(FlightDeparted):
    gate: str = Field(min_length=1, max_length=8)


# The same domain (same name, so a keyspace of flights may move to it), one schema newer.
DOMAIN = replace(flights.DOMAIN, schemas={
    **SCHEMAS, "flight_departed": {1: FlightDeparted, 2: FlightDepartedV2}})
