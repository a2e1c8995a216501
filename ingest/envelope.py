"""The event contract, enforced at the edge: every Kafka message is decoded here.

Called by each ingest worker for every message it polls (and by ``streamfit produce file`` and
``dlq replay`` before sending). A message becomes either an :class:`Envelope` or a
:class:`Rejection` carrying a reason a person can act on; nothing raises, so one poison message
can never stop a worker.

Envelope, version 1 (JSON object, UTF-8)::

    {"event_id": "<1-128 chars, unique per event>",
     "event_type": "<a type of the domain>",
     "event_time": "<ISO-8601 with zone, e.g. 2013-01-01T10:15:00Z>",
     "entity_key": "<1-256 chars; also the Kafka message key>",
     "schema_version": <int, a version of that type's payload schema>,
     "payload": {<validated by the domain's schema>}}
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

import orjson
from pydantic import ValidationError

from streamfit.domains import Domain

REQUIRED = ("event_id", "event_type", "event_time", "entity_key", "schema_version", "payload")
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
#: Events may be stamped ahead of the wall clock (schedules are), but not absurdly far.
MAX_FUTURE = timedelta(days=400)


@dataclass(frozen=True, slots=True)
class Envelope:
    event_id: str
    event_type: str
    event_time: datetime
    entity_key: str
    schema_version: int
    payload_json: str

    @property
    def event_date(self) -> date:
        return self.event_time.date()


@dataclass(frozen=True, slots=True)
class Rejection:
    reason: str  # short machine-friendly category, e.g. "not_json"
    detail: str  # what exactly was wrong and how to fix it

    def __str__(self) -> str:
        return f"{self.reason}: {self.detail}"


def _type_name(value: object) -> str:
    return "null" if value is None else type(value).__name__


def decode(raw: bytes | None, domain: Domain, max_bytes: int,
           now: datetime | None = None) -> Envelope | Rejection:
    """Validate one message value; return the envelope or why it was refused."""
    if raw is None:
        return Rejection("empty", "the message has no value (a tombstone?); send a JSON envelope")
    if len(raw) > max_bytes:
        return Rejection("oversize", f"{len(raw)} bytes is over the {max_bytes}-byte limit "
                         "(STREAMFIT_INGEST_MAX_MESSAGE_BYTES); split the event or raise the limit")
    try:
        raw.decode("utf-8")  # strict check first: orjson would only say "invalid JSON"
    except UnicodeDecodeError as exc:
        return Rejection("bad_encoding", f"not UTF-8 ({exc.reason} at byte {exc.start}); "
                         "encode the JSON as UTF-8")
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        return Rejection("not_json", f"not valid JSON ({exc}); send one JSON object per message")
    if not isinstance(doc, dict):
        return Rejection("not_object", f"the JSON is a {_type_name(doc)}, not an object with "
                         f"the fields {', '.join(REQUIRED)}")
    missing = [f for f in REQUIRED if f not in doc]
    if missing:
        return Rejection("missing_field", f"missing {', '.join(missing)}")
    extra = sorted(set(doc) - set(REQUIRED))
    if extra:
        return Rejection("unknown_field", f"unknown envelope field(s) {', '.join(extra)}; "
                         "put event data inside payload")
    for name, expected in (("event_id", str), ("event_type", str), ("event_time", str),
                           ("entity_key", str)):
        if not isinstance(doc[name], expected):
            return Rejection("wrong_type", f"{name} must be a string, got "
                             f"{_type_name(doc[name])}")
    version = doc["schema_version"]
    if not isinstance(version, int) or isinstance(version, bool):
        return Rejection("wrong_type", f"schema_version must be an integer, got "
                         f"{_type_name(version)}")
    if not isinstance(doc["payload"], dict):
        return Rejection("wrong_type", f"payload must be an object, got "
                         f"{_type_name(doc['payload'])}")
    for name, limit in (("event_id", 128), ("entity_key", 256)):
        if not 0 < len(doc[name]) <= limit:
            return Rejection("bad_value", f"{name} must have 1 to {limit} characters")
    event_type = doc["event_type"]
    versions = domain.schemas.get(event_type)
    if versions is None:
        return Rejection("unknown_event_type", f"{event_type!r} is not an event type of domain "
                         f"{domain.name}; known: {', '.join(sorted(domain.schemas))}")
    model = versions.get(version)
    if model is None:
        return Rejection("unknown_schema_version", f"{event_type} has no schema version "
                         f"{version}; known: {', '.join(map(str, sorted(versions)))}")
    try:
        event_time = datetime.fromisoformat(doc["event_time"])
    except ValueError:
        return Rejection("bad_timestamp", f"event_time {doc['event_time']!r} is not an ISO-8601 "
                         "time; write e.g. 2013-01-01T10:15:00Z")
    if event_time.tzinfo is None:
        return Rejection("bad_timestamp", f"event_time {doc['event_time']!r} has no time zone; "
                         "add Z or an offset")
    event_time = event_time.astimezone(UTC)
    now = now or datetime.now(UTC)
    if not EARLIEST <= event_time <= now + MAX_FUTURE:
        return Rejection("impossible_timestamp", f"event_time {doc['event_time']} is outside "
                         f"{EARLIEST:%Y-%m-%d} .. now + {MAX_FUTURE.days} days")
    try:
        valid = model.model_validate(doc["payload"])
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(map(str, e['loc'])) or 'payload'}: {e['msg']}" for e in exc.errors()[:5])
        return Rejection("invalid_payload", f"{event_type} v{version} payload: {problems}")
    # Millisecond precision: what Cassandra's timestamp type keeps, so replays map to one row.
    event_time = event_time.replace(microsecond=event_time.microsecond // 1000 * 1000)
    return Envelope(
        event_id=doc["event_id"], event_type=event_type, event_time=event_time,
        entity_key=doc["entity_key"], schema_version=version,
        payload_json=orjson.dumps(canonical_times(doc["payload"], valid),
                                  option=orjson.OPT_SORT_KEYS).decode(),
    )


def canonical_times(payload: dict[str, object], valid: object) -> dict[str, object]:
    """The payload with every time its schema parsed written one way: UTC, milliseconds, ``Z``
    (``2013-02-06T00:11:00.000Z``). Any ISO-8601 form with a zone is valid input, but the
    builders compare and parse the stored text, and one payload in another form (``+02:00``,
    no milliseconds) would sort wrongly or fail a date's whole build."""
    out = dict(payload)
    for name, value in vars(valid).items():
        if isinstance(value, datetime) and value.tzinfo is not None and name in out:
            utc = value.astimezone(UTC)
            out[name] = utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"
    return out


def encode(event: dict[str, object]) -> bytes:
    """The wire form of an envelope dict (compact UTF-8 JSON)."""
    return orjson.dumps(event)
