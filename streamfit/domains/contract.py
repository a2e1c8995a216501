"""The event contract every domain's payload models share (imported by the domains' modules;
enforced at the ingest edge by ``ingest.envelope.decode``).

A payload model derives from :class:`Payload`, and so is strict:

- no silent coercion between types: ``true`` is not 1, ``"5"`` is not 5 (an integer is a
  number, though); times are ISO-8601 strings with a zone;
- text (:data:`Text`, and every code, ``Annotated[str, code(...), PRINTABLE]``) holds no
  control characters and is not blank, and a code matches its pattern;
- ``key_field`` names the payload field the envelope's ``entity_key`` must equal;
- ``time_bounds`` bound each time field against the event's own time, so that a departure a
  century before the event that schedules it is refused.

How a new domain declares this is in docs/domains.md.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from typing import Annotated, Any, ClassVar

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    model_validator,
)

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def printable(value: str) -> str:
    """``value`` if it has no control character and is not blank (else a ValueError saying so)."""
    bad = _CONTROL.search(value)
    if bad:
        raise ValueError(f"holds the control character U+{ord(bad.group()):04X} at position "
                         f"{bad.start()}; send printable text")
    if not value.strip():
        raise ValueError("is blank; send a value")
    return value


#: What makes text printable (the second of a code's two markers).
PRINTABLE = AfterValidator(printable)
#: Free text for a domain's payloads: any printable characters.
Text = Annotated[str, PRINTABLE]
#: A time: an ISO-8601 string with a zone (the one place strictness gives way: JSON has no time).
Time = Annotated[AwareDatetime, Field(strict=False)]


def code(pattern: str, what: str) -> Any:
    """A code's pattern (anchored) and description, for ``Annotated[str, code(...), PRINTABLE]``
    (in that order: the JSON Schema shows the pattern only when it comes first)."""
    return Field(pattern=f"^(?:{pattern})$", description=what)


def _span(delta: timedelta) -> str:
    if not delta:
        return "0"
    sign = "-" if delta < timedelta(0) else "+"
    total = abs(delta)
    if total % timedelta(days=1) == timedelta(0):
        return f"{sign}{total.days} d"
    return f"{sign}{total.total_seconds() / 3600:g} h"


class Payload(BaseModel):
    """The base of every payload model (see the module's docstring)."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    #: the payload field that names the event's entity (the envelope's ``entity_key``)
    key_field: ClassVar[str | None] = None
    #: time field -> (earliest, latest) relative to the event's time
    time_bounds: ClassVar[dict[str, tuple[timedelta, timedelta]]] = {}

    @model_validator(mode="after")
    def _within_bounds(self, info: ValidationInfo) -> Payload:
        event_time = (info.context or {}).get("event_time")
        if not isinstance(event_time, datetime):
            return self  # validated outside an envelope (a request to score)
        for name, (lo, hi) in self.time_bounds.items():
            value = getattr(self, name)
            if value is None or event_time + lo <= value <= event_time + hi:
                continue
            off = value - event_time
            raise ValueError(
                f"{name} {value.isoformat()} is {_describe(off)} the event time "
                f"{event_time.isoformat()}; it must lie within {_span(lo)} .. {_span(hi)} of it")
        return self

    def entity_id(self) -> str | None:
        """The entity this payload names (``key_field``), if the model declares one."""
        return None if self.key_field is None else str(getattr(self, self.key_field))


def _describe(off: timedelta) -> str:
    hours = abs(off.total_seconds()) / 3600
    amount = f"{hours / 24:,.1f} days" if hours >= 48 else f"{hours:,.1f} hours"
    return f"{amount} {'after' if off > timedelta(0) else 'before'}"


def key_matches(entity_key: str, entity_id: str) -> bool:
    """Whether an envelope's ``entity_key`` names the payload's entity: equal, or the copy
    ``<id>~<n>`` that ``streamfit produce replay --scale`` makes of an entity whose payload keeps
    its real code (a weather station's airport)."""
    if entity_key == entity_id:
        return True
    head, sep, copy = entity_key.rpartition("~")
    return bool(sep) and head == entity_id and copy.isdigit()


def event_json_schema(domain_name: str, event_type: str, version: int,
                      model: type[BaseModel]) -> dict[str, Any]:
    """The JSON Schema (2020-12) of a whole message of ``event_type`` v``version``: the envelope
    with its payload, as ``streamfit schema export`` writes it for producers to validate against
    before they send. What a schema cannot say is in its description."""
    payload = model.model_json_schema()
    defs = payload.pop("$defs", None)
    checks = ["no JSON key twice in one object"]
    key_field = getattr(model, "key_field", None)
    if key_field:
        checks.append(f"entity_key equals payload.{key_field}")
    bounds = getattr(model, "time_bounds", {})
    checks += [f"payload.{name} within {_span(lo)} .. {_span(hi)} of event_time"
               for name, (lo, hi) in bounds.items()]
    checks.append("event_time between 1970-01-01 and 400 days from now")
    schema: dict[str, Any] = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": f"streamfit:{domain_name}/{event_type}/v{version}",
        "title": f"{domain_name}: {event_type} v{version}",
        "description": ("A streamfit event (the envelope and its payload). Ingest also checks "
                        "what JSON Schema cannot say: " + "; ".join(checks) + "."),
        "type": "object",
        "additionalProperties": False,
        "required": ["event_id", "event_type", "event_time", "entity_key", "schema_version",
                     "payload"],
        "properties": {
            "event_id": {"type": "string", "minLength": 1, "maxLength": 128,
                         "description": "unique per event; a resend with the same id lands once"},
            "event_type": {"const": event_type},
            "event_time": {"type": "string", "format": "date-time",
                           "description": "ISO-8601 with a zone, e.g. 2013-01-01T10:15:00Z"},
            "entity_key": {"type": "string", "minLength": 1, "maxLength": 256},
            "schema_version": {"const": version},
            "payload": payload,
        },
    }
    if defs:
        schema["$defs"] = defs
    return schema
