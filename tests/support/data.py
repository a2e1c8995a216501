"""Events of the settings' domain, as the demo and the benchmarks send them."""

from __future__ import annotations

from datetime import date
from typing import Any

from streamfit.domains import load_domain
from streamfit.settings import Settings


def events_of_days(settings: Settings, first: date, last: date, scale: int = 1
                   ) -> list[dict[str, Any]]:
    return load_domain(settings.domain).events_of_days(first, last, scale)
