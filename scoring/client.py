"""The typed Python client for predictions in Cassandra (also behind the CLI and the HTTP API).

Used by applications, ``streamfit predictions get|list`` and ``streamfit serve``. Every query is a
prepared statement that reads one partition, and every list is paged, so no call is unbounded:

    from scoring.client import PredictionClient
    with PredictionClient.open() as client:          # settings from STREAMFIT_* / .env
        p = client.latest("UA1545-EWR-20130101")
        page = client.for_date(date(2013, 1, 2), carrier="UA", page_size=100)
        more = client.for_date(date(2013, 1, 2), carrier="UA", page_token=page.next_token)
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from cassandra.cluster import Session

from ingest.store import as_utc, cql_date
from streamfit.settings import Settings

MAX_PAGE_SIZE = 1000
COLUMNS = ("flight_id, sched_date, scheduled_departure, carrier, origin, dest, probability, "
           "model_version, scored_at")


class BadPageToken(ValueError):
    """The page token was not one this client handed out (copy ``next_token`` as it is)."""


@dataclass(frozen=True)
class Prediction:
    flight_id: str
    sched_date: date
    scheduled_departure: datetime
    carrier: str
    origin: str
    dest: str
    probability: float
    model_version: int
    scored_at: datetime

    def as_dict(self) -> dict[str, Any]:
        return {k: (v.isoformat() if isinstance(v, date | datetime) else v)
                for k, v in self.__dict__.items()}


@dataclass(frozen=True)
class Page:
    items: list[Prediction]
    #: pass back as ``page_token`` for the next page; None on the last page
    next_token: str | None


@dataclass(frozen=True)
class HistoryEntry:
    model_version: int
    probability: float
    scored_at: datetime


@dataclass(frozen=True)
class ChampionInfo:
    version: int
    algorithm: str
    created_at: datetime
    train_window: dict[str, str]
    metrics: dict[str, float]
    features: list[str]


def _prediction(r: Any) -> Prediction:
    return Prediction(r.flight_id, cql_date(r.sched_date), as_utc(r.scheduled_departure), r.carrier,
                      r.origin, r.dest, r.probability, r.model_version, as_utc(r.scored_at))


class PredictionClient:
    def __init__(self, session: Session, keyspace: str, token_key: bytes | None = None) -> None:
        ks = keyspace
        self.session = session
        self.keyspace = keyspace
        # Page tokens carry Cassandra's paging state with an HMAC over it and the query. A
        # forged or corrupted paging state must never reach Cassandra: the driver treats the
        # protocol error as a broken connection and marks the node down for every caller.
        self._token_key = token_key or hashlib.sha256(f"streamfit-page:{ks}".encode()).digest()
        self._latest = session.prepare(
            f"SELECT {COLUMNS} FROM {ks}.predictions_latest WHERE flight_id = ?")
        self._by_date = session.prepare(
            f"SELECT {COLUMNS} FROM {ks}.predictions_by_date WHERE sched_date = ?")
        # One partition, then filtered inside it: bounded by the day's flights.
        self._by_date_carrier = session.prepare(
            f"SELECT {COLUMNS} FROM {ks}.predictions_by_date WHERE sched_date = ? "
            "AND carrier = ? ALLOW FILTERING")
        self._history = session.prepare(
            f"SELECT model_version, probability, scored_at FROM {ks}.predictions_history "
            "WHERE flight_id = ? LIMIT 100")

    @classmethod
    @contextmanager
    def open(cls, settings: Settings | None = None) -> Iterator[PredictionClient]:
        from streamfit.cassandra import connect
        from streamfit.settings import get_settings

        s = settings or get_settings()
        with connect(s) as session:
            yield cls(session, s.keyspace)

    def latest(self, flight_id: str) -> Prediction | None:
        row = self.session.execute(self._latest, (flight_id,)).one()
        return _prediction(row) if row else None

    def for_date(self, day: date, carrier: str | None = None, page_size: int = 100,
                 page_token: str | None = None) -> Page:
        if not 1 <= page_size <= MAX_PAGE_SIZE:
            raise ValueError(f"page_size must be 1..{MAX_PAGE_SIZE}, got {page_size}")
        statement = self._by_date_carrier if carrier else self._by_date
        bound = statement.bind((day, carrier) if carrier else (day,))
        bound.fetch_size = page_size
        scope = f"{day.isoformat()}|{carrier or ''}".encode()
        state = self._open(page_token, scope) if page_token else None
        result = self.session.execute(bound, paging_state=state)
        items = [_prediction(r) for r in result.current_rows]
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
                               "unchanged, with the same date and carrier")
        return state

    def history(self, flight_id: str) -> list[HistoryEntry]:
        return [HistoryEntry(r.model_version, r.probability, as_utc(r.scored_at))
                for r in self.session.execute(self._history, (flight_id,))]

    def champion(self) -> ChampionInfo | None:
        from training.registry import Registry

        registry = Registry(self.session, self.keyspace)
        version = registry.aliases().get("champion")
        if version is None:
            return None
        v = next(v for v in registry.versions() if v.version == version)
        return ChampionInfo(v.version, v.algorithm, as_utc(v.created_at), v.train_window,
                            v.metrics, v.features)
