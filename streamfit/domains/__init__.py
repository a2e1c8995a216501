"""Pluggable event domains. A domain is the only place that knows what the events mean.

A domain declares everything the stages need to run the whole pipeline on its events:

- ``schemas``: the payload schema of each event type and version, used by the ingest edge to
  validate every Kafka message (the ingest core, the DLQ and the ledger never look inside one);
- ``entity``: what a prediction is about (its key, its date and time, its descriptive columns);
- ``label``: what is predicted, and the outcome it is derived from;
- ``features``: the point-in-time feature builder, the stored and the model feature lists, and
  the naive baseline feature;
- ``datasets``: replay sources that turn a data set into events in event-time order.

The stages, the registry, the prediction tables, the API and the CLI are generic over it.
``STREAMFIT_DOMAIN`` selects one: ``flights`` and ``deliveries`` are built in, or
``package.module:DOMAIN`` for your own. A keyspace records the domain it was created for
(``streamfit db migrate``), so one Airflow serves keyspaces of several domains.
"""

from __future__ import annotations

import functools
import importlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol

from pydantic import BaseModel

if TYPE_CHECKING:
    import pandas as pd

#: The standard columns of a feature frame, besides the entity's descriptive columns and the
#: features: what every builder returns and what ``streamfit.featurestore`` stores and reads.
ENTITY_ID, EVENT_TIME, OUTCOME, LABEL = "entity_id", "event_time", "outcome", "label"
#: The horizon of a feature row or a prediction, in minutes before the event time. The rows of
#: every horizon train one model, with the horizon as one of its inputs.
HORIZON = "horizon_min"


@dataclass(frozen=True)
class ReplayOptions:
    """What part of a data set to replay, and how many distinct copies (for load tests)."""

    start: date | None = None
    end: date | None = None  # inclusive
    scale: int = 1
    #: move event times (and the times inside payloads) so that the first event is "now"
    shift_to_now: bool = False


class RawEvents(Protocol):
    """What a feature builder reads: the landed payloads of one event date and event type (one
    raw-events partition family), as dicts or as a DataFrame of several dates."""

    def payloads(self, day: date, event_type: str) -> list[dict[str, Any]]: ...

    def frame(self, days: Iterable[date], event_type: str) -> pd.DataFrame: ...


@dataclass(frozen=True)
class Entity:
    """What one prediction is about. In the API and the CLI its fields keep the domain's names;
    in the tables they are ``entity_id``, ``day``, ``event_time`` and an ``attributes`` map."""

    name: str
    #: the prediction key's name, e.g. ``flight_id``, and the pattern a valid key matches
    key: str
    key_pattern: str
    #: the entity's date (the partition of its features and predictions), e.g. ``sched_date``
    day: str
    #: the moment a prediction is about, e.g. ``scheduled_departure``; later events are unknown
    time: str
    #: descriptive text columns carried by every prediction row, e.g. carrier, origin, dest
    columns: tuple[str, ...] = ()
    #: the pydantic model of one entity sent to ``POST /score`` (features computed on demand)
    request: type[BaseModel] | None = None


@dataclass(frozen=True)
class Label:
    #: e.g. ``late``: the label is True when the outcome says so
    name: str
    #: the numeric outcome the label is derived from, e.g. ``arr_delay`` (minutes)
    outcome: str
    description: str = ""
    #: name -> what it measures: numeric columns ``FeatureSpec.build_day`` returns beside the
    #: outcome, known with it (NaN before), that say how the outcome came about (flights: the
    #: minutes spent on the ground). Stored with the features, never a model input. Monitoring
    #: judges each completed day's lower tenth of each against the training days: a shift of
    #: every entity's outcome moves it, an ordinary bad day (a few entities far off) hardly.
    measures: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class TileSpec:
    """The trailing aggregates a domain's features read, kept as hourly tiles
    (``streamfit.tiles``): per family, a grouping of the source events and the value summed.

    ``source(raw, day)`` returns the events whose ``time`` falls on ``day`` (UTC), one row
    each, with every key column and value column of the families (for flights: the arrivals,
    joined with their schedules for the carrier, route and hour). It must read every raw
    partition an event of that day can sit in, so that a day's tiles are a function of the raw
    events alone and making them again gives the same tiles."""

    source: Callable[[RawEvents, date], pd.DataFrame]
    time: str
    #: family name -> (key columns, value column)
    families: dict[str, tuple[tuple[str, ...], str]]
    #: event dates whose events landed -> the days whose tiles they change
    days_affected: Callable[[Iterable[date]], list[date]]
    #: ``day`` -> every (event date, event type) raw partition ``FeatureSpec.build_day`` reads
    #: when the reader keeps tiles (``FeatureSpec.reads`` less what the tiles stand in for),
    #: and ``span``: ``day`` -> the first and last day of the tiles and kept source events it
    #: reads. The Spark engine fetches these for a date whose tiles are made; without them (or
    #: the tiles) it fetches ``FeatureSpec.reads`` and recomputes.
    reads: Callable[[date], Iterable[tuple[date, str]]] | None = None
    span: Callable[[date], tuple[date, date]] | None = None


@dataclass(frozen=True)
class FeatureSpec:
    """A domain's point-in-time features. ``build_day(raw, day, horizon)`` returns one row per
    entity of ``day``: ``entity_id``, ``event_time``, the entity's columns, every name in
    ``names``, and ``outcome``/``label`` (None until known). Every feature of a row may use only
    events that happened before its *as-of* time, ``horizon`` before its ``event_time``."""

    names: tuple[str, ...]
    #: the stored features a model is trained on (a subset of ``names``)
    model: tuple[str, ...]
    #: the feature that is itself a probability: the naive baseline every model must beat
    naive: str
    #: ``(raw, day, horizon)`` -> the rows of ``day`` as of ``horizon`` before each event time
    build_day: Callable[[RawEvents, date, timedelta], pd.DataFrame]
    #: event dates whose events landed -> the entity dates whose rows they change
    days_affected: Callable[[Iterable[date]], list[date]]
    #: ``(raw, entities, horizon)``: entities given as request rows -> their features as of
    #: ``horizon`` before each one's event time (``POST /score``); None: not offered
    build_for: Callable[[RawEvents, pd.DataFrame, timedelta], pd.DataFrame] | None = None
    #: ``(raw, entities)`` -> which request rows carry exactly the inputs the batch build used
    #: for that entity: their stored features are what ``build_for`` would compute, so a
    #: request may read them instead (``POST /score``). None: always computed on demand.
    built_as_given: Callable[[RawEvents, pd.DataFrame], Any] | None = None
    #: ``day`` -> every (event date, event type) raw partition ``build_day(raw, day, ...)``
    #: reads: an engine that fetches them up front (Spark) needs it. None: pandas engine only.
    reads: Callable[[date], Iterable[tuple[date, str]]] | None = None
    version: int = 1
    #: the trailing aggregates kept as hourly tiles (``TileSpec``); None: none
    tiles: TileSpec | None = None
    #: horizon name -> how long before the event time a prediction is made, freshest first.
    #: Features are stored and predictions made per horizon: an entity is scored at a horizon
    #: once the stream's event time passes its as-of time, until its own event time.
    horizons: dict[str, timedelta] = field(
        default_factory=lambda: {"1 h before the event": timedelta(hours=1)})

    def __post_init__(self) -> None:
        offsets = list(self.horizons.values())
        if not offsets or any(h <= timedelta(0) or h % timedelta(minutes=1) for h in offsets):
            raise ValueError("a domain's horizons must be whole minutes greater than 0 (a "
                             "prediction is made before the event time)")
        if offsets != sorted(offsets) or len(set(offsets)) != len(offsets):
            raise ValueError("list a domain's horizons freshest first, each once")

    @property
    def horizon_minutes(self) -> dict[int, str]:
        """Minutes -> horizon name, freshest first."""
        return {h // timedelta(minutes=1): name for name, h in self.horizons.items()}

    @property
    def inputs(self) -> list[str]:
        """What a trained model is fed: the model features, and the horizon of the row."""
        return [*self.model, HORIZON]


@dataclass(frozen=True)
class Domain:
    name: str
    #: event_type -> schema_version -> pydantic model of the payload
    schemas: dict[str, dict[int, type[BaseModel]]]
    entity: Entity
    label: Label
    features: FeatureSpec
    #: the registry's model family (one partition of ``model_versions``)
    model_name: str
    #: dataset name -> function yielding envelope dicts in event-time order
    datasets: dict[str, Any] = field(default_factory=dict)
    description: str = ""
    #: ``(raw, day)`` -> the ``streamfit.quality.Gap`` of a completed day: events its entities
    #: must have had that never landed (monitoring judges each completed day by it). None: the
    #: domain declares no such rule.
    gaps: Callable[[RawEvents, date], list[Any]] | None = None
    #: an entity column whose values are sites that feed features of their own (flights:
    #: ``origin``, whose weather station each flight's weather features read). Monitoring
    #: judges each feature's top share within each site too, so one site's sensor stuck at one
    #: value is seen on its first day. None: judged on the whole day only.
    segment: str | None = None

    def __post_init__(self) -> None:
        clash = set(self.label.measures) & {*self.features.names, OUTCOME, LABEL}
        if clash:
            raise ValueError(f"domain {self.name}: label measure(s) {sorted(clash)} share a "
                             "name with a feature or the outcome; rename the measure")
        if self.segment is not None and self.segment not in self.entity.columns:
            raise ValueError(f"domain {self.name}: segment {self.segment!r} is not one of the "
                             f"entity's columns {self.entity.columns}; name one of them or None")

    @property
    def stored(self) -> list[str]:
        """The values stored per row: every feature, then the label's measures."""
        return [*self.features.names, *self.label.measures]

    def payload_model(self, event_type: str, version: int) -> type[BaseModel] | None:
        return self.schemas.get(event_type, {}).get(version)

    def replay(self, dataset: str, options: ReplayOptions) -> Iterator[dict[str, Any]]:
        if dataset not in self.datasets:
            raise ValueError(f"unknown dataset {dataset!r} for domain {self.name}; "
                             f"choose from {', '.join(sorted(self.datasets))}")
        return self.datasets[dataset](options)  # type: ignore[no-any-return]

    def events_of_days(self, first: date, last: date, scale: int = 1,
                       dataset: str | None = None) -> list[dict[str, Any]]:
        """The events of ``dataset`` (default: the domain's first) whose event time falls on
        ``first``..``last`` (UTC); ``scale``: ``produce replay --scale``'s copies of every
        entity. The demo and the benchmarks send these."""
        lo, hi = first.isoformat(), last.isoformat()
        options = ReplayOptions(first, last + timedelta(days=1), scale)
        events = self.replay(dataset or next(iter(self.datasets)), options)
        return [e for e in events if lo <= e["event_time"][:10] <= hi]


class _HasDomain(Protocol):
    DOMAIN: Domain


@functools.cache
def load_domain(spec: str) -> Domain:
    """``flights``, ``deliveries`` or ``package.module:ATTRIBUTE`` (loaded once per process)."""
    module_name, _, attr = spec.partition(":")
    if "." not in module_name and not attr:
        module_name = f"streamfit.domains.{module_name}"
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ValueError(f"cannot load domain {spec!r}: {exc}; set STREAMFIT_DOMAIN to "
                         "'flights', 'deliveries' or 'package.module:DOMAIN'") from None
    domain = getattr(module, attr or "DOMAIN", None)
    if not isinstance(domain, Domain):
        raise ValueError(f"{spec!r} does not name a streamfit Domain object")
    return domain


def check_day(value: Any) -> Any:
    """A date (or a time's date) from a request, refused far outside any data and outside what
    pandas timestamps hold; returned unchanged. For request models' validators."""
    day = value.date() if isinstance(value, datetime) else value
    if not date(1970, 1, 1) <= day <= date(2100, 12, 31):
        raise ValueError("must be between 1970-01-01 and 2100-12-31")
    return value


def parse_time(value: str) -> datetime:
    """ISO-8601 with a time zone (``Z`` or an offset); naive times are refused."""
    parsed = datetime.fromisoformat(value)
    if parsed.tzinfo is None:
        raise ValueError(f"{value!r} has no time zone; write e.g. 2013-01-01T10:15:00Z")
    return parsed
