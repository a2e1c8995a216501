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

import json
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import orjson
from pydantic import ValidationError

from streamfit.domains import Domain
from streamfit.domains.contract import Payload, key_matches, printable

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


#: every JSON string: strings cannot nest, and a quote inside one is escaped, so one pass
#: removes each exactly once; outside strings, a colon only ever ends a key
_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_NESTED = (dict, list)


def _keys_parsed(doc: Any) -> int:
    count, stack = 0, [doc]
    while stack:
        node = stack.pop()
        values = node.values() if isinstance(node, dict) else node
        count += len(node) if isinstance(node, dict) else 0
        stack.extend(v for v in values if isinstance(v, _NESTED))
    return count


def _duplicate_key(raw: bytes, doc: Any) -> str | None:
    """The first key that some object of ``raw`` holds twice (a parser keeps only the last of
    them, silently), or None. Counted first, cheaply; named only when there is one."""
    if orjson.dumps(doc) == raw:  # compact JSON as orjson writes it (ours): each key once
        return None
    if _STRING.sub(b"", raw).count(b":") == _keys_parsed(doc):
        return None
    seen: list[str] = []

    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        names = [k for k, _ in items]
        seen.extend(k for i, k in enumerate(names) if k in names[:i])
        return dict(items)

    json.loads(raw, object_pairs_hook=pairs)
    return seen[0] if seen else None


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
    twice = _duplicate_key(raw, doc)
    if twice is not None:
        return Rejection("duplicate_key", f"the key {twice!r} appears twice in one object; "
                         "parsers disagree on which value wins, so send each key once")
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
    for name in ("event_id", "event_type", "entity_key"):
        try:
            printable(doc[name])
        except ValueError as exc:
            return Rejection("bad_value", f"{name} {exc}")
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
        valid = model.model_validate(doc["payload"], context={"event_time": event_time})
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(map(str, e['loc'])) or 'payload'}: {e['msg']}" for e in exc.errors()[:5])
        return Rejection("invalid_payload", f"{event_type} v{version} payload: {problems}")
    if isinstance(valid, Payload) and valid.key_field is not None:
        entity = valid.entity_id() or ""
        if not key_matches(doc["entity_key"], entity):
            return Rejection("key_mismatch", f"entity_key {doc['entity_key']!r} is not the "
                             f"payload's {valid.key_field} {entity!r}; key the event by the "
                             "entity it is about")
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
