"""The strict event contracts (issue 35): events that are valid JSON with every envelope field
but wrong are refused with a precise reason, for both shipped domains; the real data passes."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from ingest.envelope import Envelope, Rejection, decode
from streamfit.domains import load_domain
from tests.corpus import BOOKED, SCHEDULED, WEATHER, semantic

NOW = datetime(2026, 12, 6, tzinfo=UTC)


@pytest.mark.parametrize(("domain", "base"), [("flights", SCHEDULED), ("flights", WEATHER),
                                              ("deliveries", BOOKED)])
def test_the_corpus_bases_are_valid(domain: str, base: dict) -> None:
    assert isinstance(decode(json.dumps(base).encode(), load_domain(domain), 262144, NOW),
                      Envelope)


@pytest.mark.parametrize("domain", ["flights", "deliveries"])
def test_every_wrong_event_is_refused_with_its_reason(domain: str) -> None:
    cases = semantic(domain)
    assert len(cases) >= 8
    for case in cases:
        result = decode(case.value, load_domain(domain), 262144, NOW)
        assert isinstance(result, Rejection), f"{case.case} was accepted"
        assert result.reason == case.expect_reason, f"{case.case}: {result}"
        assert case.says in result.detail, f"{case.case}: {result}"


def test_a_scaled_copy_of_a_weather_station_keeps_its_airport_code() -> None:
    """``produce replay --scale`` keys copies ``JFK~1`` while the payload keeps the real code."""
    doc = {**WEATHER, "entity_key": "JFK~1"}
    assert isinstance(decode(json.dumps(doc).encode(), load_domain("flights"), 262144, NOW),
                      Envelope)
    doc = {**WEATHER, "entity_key": "JFK~x"}
    result = decode(json.dumps(doc).encode(), load_domain("flights"), 262144, NOW)
    assert isinstance(result, Rejection) and result.reason == "key_mismatch"


def test_a_key_inside_a_string_is_no_duplicate() -> None:
    """The duplicate check counts keys in the raw text: a value that looks like a key, or an
    escaped quote, must not count."""
    doc = {**SCHEDULED, "event_id": 'x", "carrier": "B6'}
    result = decode(json.dumps(doc).encode(), load_domain("flights"), 262144, NOW)
    assert isinstance(result, Envelope)



@pytest.mark.parametrize(("domain", "base"), [("flights", SCHEDULED), ("flights", WEATHER),
                                              ("deliveries", BOOKED)])
def test_the_exported_json_schema_takes_valid_events_and_refuses_wrong_types(
        domain: str, base: dict, tmp_path) -> None:
    """`streamfit schema export` as a producer uses it: validate before sending."""
    import subprocess
    import sys
    from pathlib import Path

    from jsonschema import Draft202012Validator

    done = subprocess.run([str(Path(sys.executable).parent / "streamfit"), "schema", "export",
                           "--out", str(tmp_path), "--domain", domain],
                          capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    path = tmp_path / domain / f"{base['event_type']}.v1.json"
    validator = Draft202012Validator(json.loads(path.read_text()))
    assert not list(validator.iter_errors(base))
    wrong = [c for c in semantic(domain) if c.expect_reason == "invalid_payload"
             and "century" not in c.case and "two days" not in c.case]
    refused = [c.case for c in wrong
               if json.loads(c.value)["event_type"] == base["event_type"]
               and list(validator.iter_errors(json.loads(c.value)))]
    same_type = [c.case for c in wrong if json.loads(c.value)["event_type"] == base["event_type"]]
    assert refused == same_type and same_type, (refused, same_type)
