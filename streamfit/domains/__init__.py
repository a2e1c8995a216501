"""Pluggable event domains. A domain is the only place that knows what the events mean.

A domain supplies (1) the payload schema of each event type and version, used by the ingest edge
to validate every Kafka message, and (2) a replay source that turns a data set into events in
event-time order (``streamfit produce replay``). The ingest core, the DLQ and the ledger never look
inside a payload. ``STREAMFIT_DOMAIN`` selects the domain: ``flights`` (built in) or
``package.module:DOMAIN`` for your own.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, Protocol

from pydantic import BaseModel


@dataclass(frozen=True)
class ReplayOptions:
    """What part of a data set to replay, and how many distinct copies (for load tests)."""

    start: date | None = None
    end: date | None = None  # inclusive
    scale: int = 1
    #: move event times (and the times inside payloads) so that the first event is "now"
    shift_to_now: bool = False


@dataclass(frozen=True)
class Domain:
    name: str
    #: event_type -> schema_version -> pydantic model of the payload
    schemas: dict[str, dict[int, type[BaseModel]]]
    #: dataset name -> function yielding envelope dicts in event-time order
    datasets: dict[str, Any] = field(default_factory=dict)
    description: str = ""

    def payload_model(self, event_type: str, version: int) -> type[BaseModel] | None:
        return self.schemas.get(event_type, {}).get(version)

    def replay(self, dataset: str, options: ReplayOptions) -> Iterator[dict[str, Any]]:
        if dataset not in self.datasets:
            raise ValueError(f"unknown dataset {dataset!r} for domain {self.name}; "
                             f"choose from {', '.join(sorted(self.datasets))}")
        return self.datasets[dataset](options)  # type: ignore[no-any-return]


class _HasDomain(Protocol):
    DOMAIN: Domain


def load_domain(spec: str) -> Domain:
    """``flights`` or ``package.module:ATTRIBUTE``."""
    module_name, _, attr = spec.partition(":")
    if "." not in module_name and not attr:
        module_name = f"streamfit.domains.{module_name}"
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ValueError(f"cannot load domain {spec!r}: {exc}; set STREAMFIT_DOMAIN to "
                         "'flights' or 'package.module:DOMAIN'") from None
    domain = getattr(module, attr or "DOMAIN", None)
    if not isinstance(domain, Domain):
        raise ValueError(f"{spec!r} does not name a streamfit Domain object")
    return domain


def parse_time(value: str) -> datetime:
    """ISO-8601 with a time zone (``Z`` or an offset); naive times are refused."""
    parsed = datetime.fromisoformat(value)
    if parsed.tzinfo is None:
        raise ValueError(f"{value!r} has no time zone; write e.g. 2013-01-01T10:15:00Z")
    return parsed
