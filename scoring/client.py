"""The typed Python client for predictions in Cassandra (also behind the CLI and the HTTP API).

Used by applications, ``streamfit predictions get|list`` and ``streamfit serve``. Every query is a
prepared statement that reads one partition, and every list is paged, so no call is unbounded:

    from scoring.client import PredictionClient
    with PredictionClient.open() as client:          # settings from STREAMFIT_* / .env
        p = client.latest("UA1545-EWR-20130101")
        page = client.for_date(date(2013, 1, 2), {"carrier": "UA"}, page_size=100)
        more = client.for_date(date(2013, 1, 2), {"carrier": "UA"}, page_token=page.next_token)
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from cassandra.cluster import Session

from scoring.predictions import SELECT_BY_DAY, SELECT_HISTORY, SELECT_LATEST, page_token_secret
from streamfit.cassandra import aexecute, as_utc, cql_date
from streamfit.domains import Domain, Entity
from streamfit.settings import Settings

MAX_PAGE_SIZE = 1000

#: A value of a descriptive column in a filter (``GET /predictions?carrier=UA``,
#: ``streamfit predictions list --where carrier=UA``).
COLUMN_VALUE = r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$"


class BadPageToken(ValueError):
    """The page token was not one this client handed out (copy ``next_token`` as it is)."""


@dataclass(frozen=True)
class Prediction:
    entity_id: str
    day: date
    event_time: datetime
    #: the entity's descriptive columns (for flights: carrier, origin, dest)
    attributes: dict[str, str]
    probability: float
    model_version: int
    scored_at: datetime
    #: made this many minutes before the event time, with features as of then
    horizon_min: int = 0

    @property
    def as_of(self) -> datetime:
        return self.event_time - timedelta(minutes=self.horizon_min)

    def as_dict(self, entity: Entity | None = None) -> dict[str, Any]:
        """A JSON-ready dict. With the domain's ``entity``, keyed by the domain's own names
        (for flights: flight_id, sched_date, scheduled_departure, carrier, origin, dest)."""
        key, day, when = (entity.key, entity.day, entity.time) if entity else \
            ("entity_id", "day", "event_time")
        return {key: self.entity_id, day: self.day.isoformat(),
                when: self.event_time.isoformat(), **self.attributes,
                "probability": self.probability, "model_version": self.model_version,
                "horizon_min": self.horizon_min, "as_of": self.as_of.isoformat(),
                "scored_at": self.scored_at.isoformat()}


@dataclass(frozen=True)
class Page:
    """One page of a date's predictions. With filters, a page holds the matching rows of one
    stored page, so it may be short (or empty) while ``next_token`` still leads to more."""

    items: list[Prediction]
    #: pass back as ``page_token`` for the next page; None on the last page
    next_token: str | None


@dataclass(frozen=True)
class HistoryEntry:
    model_version: int
    probability: float
    scored_at: datetime
    horizon_min: int = 0


@dataclass(frozen=True)
class ChampionInfo:
    version: int
    algorithm: str
    created_at: datetime
    train_window: dict[str, str]
    metrics: dict[str, float]
    features: list[str]


def _prediction(r: Any) -> Prediction:
    return Prediction(r.entity_id, cql_date(r.day), as_utc(r.event_time), dict(r.attributes or {}),
                      r.probability, r.model_version, as_utc(r.scored_at), r.horizon_min)


class PredictionClient:
    """Reads of the prediction tables. Each call has an ``async`` twin (``latest_async``,
    ``for_date_async``) for event-loop code such as the HTTP server: it awaits the driver's
    own future instead of holding a thread."""

    def __init__(self, session: Session, keyspace: str, domain: Domain) -> None:
        ks = keyspace
        self.session = session
        self.keyspace = keyspace
        self.domain = domain
        # Page tokens carry Cassandra's paging state with an HMAC over it and the query. A
        # forged or corrupted paging state must never reach Cassandra: the driver treats the
        # protocol error as a broken connection and marks the node down for every caller. The
        # key is the keyspace's random secret, so no one without it can make a valid token.
        self._token_key = page_token_secret(session, ks)
        self._latest = session.prepare(SELECT_LATEST.format(ks=ks))
        self._by_date = session.prepare(SELECT_BY_DAY.format(ks=ks))
        self._history = session.prepare(SELECT_HISTORY.format(ks=ks))
        self._registry: Any = None

    @classmethod
    @contextmanager
    def open(cls, settings: Settings | None = None) -> Iterator[PredictionClient]:
        from streamfit.settings import get_settings
        from streamfit.workspace import open_workspace

        with open_workspace(settings or get_settings()) as ws:
            yield cls(ws.session, ws.keyspace, ws.domain)

    def latest(self, entity_id: str) -> Prediction | None:
        """The entity's freshest prediction: of its nearest horizon scored so far."""
        row = self.session.execute(self._latest, (entity_id,)).one()
        return _prediction(row) if row else None

    async def latest_async(self, entity_id: str) -> Prediction | None:
        row = (await aexecute(self.session, self._latest, (entity_id,))).one()
        return _prediction(row) if row else None

    def for_date(self, day: date, filters: dict[str, str] | None = None, page_size: int = 100,
                 page_token: str | None = None) -> Page:
        """A page of ``day``'s predictions (one partition), each entity's freshest one.
        ``filters``: descriptive columns that must match (e.g. ``{"carrier": "UA"}``), applied
        inside the page read."""
        bound, state, scope, filters = self._page_query(day, filters, page_size, page_token)
        return self._page(self.session.execute(bound, paging_state=state), scope, filters)

    async def for_date_async(self, day: date, filters: dict[str, str] | None = None,
                             page_size: int = 100, page_token: str | None = None) -> Page:
        bound, state, scope, filters = self._page_query(day, filters, page_size, page_token)
        return self._page(await aexecute(self.session, bound, paging_state=state), scope,
                          filters)

    def _page_query(self, day: date, filters: dict[str, str] | None, page_size: int,
                    page_token: str | None) -> tuple[Any, bytes | None, bytes, dict[str, str]]:
        if not 1 <= page_size <= MAX_PAGE_SIZE:
            raise ValueError(f"page_size must be 1..{MAX_PAGE_SIZE}, got {page_size}")
        filters = {k: v for k, v in (filters or {}).items() if v is not None}
        unknown = set(filters) - set(self.domain.entity.columns)
        if unknown:
            raise ValueError(f"cannot filter on {sorted(unknown)}: the {self.domain.name} "
                             f"domain's columns are {list(self.domain.entity.columns)}")
        bound = self._by_date.bind((day,))
        bound.fetch_size = page_size
        scope = f"{day.isoformat()}|{sorted(filters.items())}".encode()
        state = self._open(page_token, scope) if page_token else None
        return bound, state, scope, filters

    def _page(self, result: Any, scope: bytes, filters: dict[str, str]) -> Page:
        items = [p for p in map(_prediction, result.current_rows)
                 if all(p.attributes.get(k) == v for k, v in filters.items())]
        token = result.paging_state
        return Page(items, self._seal(token, scope) if token else None)

    def _seal(self, state: bytes, scope: bytes) -> str:
        mac = hmac.new(self._token_key, scope + b"|" + state, hashlib.sha256).digest()[:16]
        return base64.urlsafe_b64encode(mac + state).decode()

    def _open(self, token: str, scope: bytes) -> bytes:
        try:
            raw = base64.urlsafe_b64decode(token.encode())
        except (binascii.Error, ValueError):
            raw = b""
        mac, state = raw[:16], raw[16:]
        expected = hmac.new(self._token_key, scope + b"|" + state, hashlib.sha256).digest()[:16]
        if not state or not hmac.compare_digest(mac, expected):
            raise BadPageToken("page token is not valid for this query: pass next_token back "
                               "unchanged, with the same date and filters")
        return state

    def history(self, entity_id: str) -> list[HistoryEntry]:
        return [HistoryEntry(r.model_version, r.probability, as_utc(r.scored_at), r.horizon_min)
                for r in self.session.execute(self._history, (entity_id,))]

    def champion(self) -> ChampionInfo | None:
        from streamfit.registry import Registry

        if self._registry is None:  # its statements are prepared once, on first use
            self._registry = Registry(self.session, self.keyspace, self.domain.model_name)
        registry = self._registry
        version = registry.aliases().get("champion")
        if version is None:
            return None
        v = next(v for v in registry.versions() if v.version == version)
        return ChampionInfo(v.version, v.algorithm, as_utc(v.created_at), v.train_window,
                            v.metrics, v.features)
