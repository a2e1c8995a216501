from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from ingest.envelope import Envelope, Rejection, decode, encode
from streamfit.domains import load_domain
from tests.corpus import malformed

DOMAIN = load_domain("flights")
NOW = datetime(2026, 11, 26, tzinfo=UTC)
VALID = {
    "event_id": "e-1", "event_type": "flight_departed", "event_time": "2013-01-01T10:17:00.123456Z",
    "entity_key": "UA1545-EWR-20130101", "schema_version": 1,
    "payload": {"flight_id": "UA1545-EWR-20130101", "actual_departure": "2013-01-01T10:17:00Z",
                "dep_delay": 2.0},
}


def test_valid_envelope_decodes() -> None:
    result = decode(encode(VALID), DOMAIN, 262144, NOW)
    assert isinstance(result, Envelope)
    assert result.event_time == datetime(2013, 1, 1, 10, 17, 0, 123000, tzinfo=UTC)  # ms precision
    assert result.event_date.isoformat() == "2013-01-01"
    # the payload as sent, its times written one way (UTC, milliseconds, Z)
    assert json.loads(result.payload_json) == {**VALID["payload"],
                                               "actual_departure": "2013-01-01T10:17:00.000Z"}


@pytest.mark.parametrize("sent", ["2013-01-01T05:17:00.5-05:00", "2013-01-01T10:17:00.500+00:00",
                                  "2013-01-01T10:17:00.5Z", "2013-01-01T11:17:00.500+01:00"])
def test_payload_times_are_stored_in_one_form_whatever_iso_form_was_sent(sent: str) -> None:
    """The feature builders sort and parse the stored text: one payload in another ISO form
    would sort wrongly or fail its date's whole build."""
    doc = {**VALID, "payload": {**VALID["payload"], "actual_departure": sent}}
    result = decode(encode(doc), DOMAIN, 262144, NOW)
    assert isinstance(result, Envelope)
    stored = json.loads(result.payload_json)
    assert stored["actual_departure"] == "2013-01-01T10:17:00.500Z"
    assert stored["dep_delay"] == 2.0 and stored["flight_id"] == VALID["payload"]["flight_id"]


def test_offsets_are_normalised_to_utc() -> None:
    doc = {**VALID, "event_time": "2013-01-01T05:17:00-05:00"}
    result = decode(encode(doc), DOMAIN, 262144, NOW)
    assert isinstance(result, Envelope)
    assert result.event_time == datetime(2013, 1, 1, 10, 17, tzinfo=UTC)


@pytest.mark.parametrize("bad", malformed(), ids=lambda b: b.case)
def test_every_malformed_message_is_rejected_with_its_reason(bad) -> None:
    result = decode(bad.value, DOMAIN, 262144, NOW)
    assert isinstance(result, Rejection), bad.case
    assert result.reason == bad.expect_reason, str(result)
    assert len(result.detail) > 10  # says what is wrong


def test_rejections_say_how_to_fix() -> None:
    result = decode(encode({**VALID, "event_type": "nope"}), DOMAIN, 262144, NOW)
    assert isinstance(result, Rejection)
    assert "flight_arrived" in result.detail  # lists the known types
    result = decode(b"x" * 2000, DOMAIN, 1024, NOW)
    assert isinstance(result, Rejection) and "STREAMFIT_INGEST_MAX_MESSAGE_BYTES" in result.detail


def test_none_value_is_rejected() -> None:
    assert isinstance(decode(None, DOMAIN, 1024, NOW), Rejection)
