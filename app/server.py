"""The predictions HTTP API: ``streamfit serve`` (FastAPI on uvicorn, STREAMFIT_API_WORKERS
processes).

Applications read batch predictions here and score single flights on demand; Airflow is not in
the request path. Every input is validated (4xx with what is wrong), request bodies (chunked ones
too) and lists are bounded, so is the Cassandra work of one ``POST /score``, every query reads one
partition, and an API key (``STREAMFIT_API_KEY``) can be required. The champion is re-checked
every ``STREAMFIT_API_CHAMPION_REFRESH_S`` seconds off the request path, so a promotion is served
without a restart, and a corrupted champion artifact is refused for the champion before it.
``/health/live`` and ``/health/ready`` are for orchestrators. OpenAPI docs are at ``/docs``.

Why it is fast (py-spy under wrk, see the README): the reads are ``async`` handlers awaiting
the driver's own futures (no thread-pool hop), the middleware is plain ASGI, and responses are
serialised once with orjson, skipping a second validation against the response model.
"""

import asyncio
import gc
import hmac
import logging
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import date
from typing import Annotated, Any

import orjson
import pandas as pd
from fastapi import Depends, FastAPI, HTTPException, Path, Query, Request, Response, status
from pydantic import BaseModel, ConfigDict, Field, create_model, field_validator

from scoring.client import COLUMN_VALUE
from streamfit.domains import ENTITY_ID, Domain, check_day, load_domain
from streamfit.settings import Settings

# No ``from __future__ import annotations`` here: the request and response models are made from
# the domain at run time, and FastAPI must see them as objects, not as names to resolve.

log = logging.getLogger("streamfit.server")



class TransientAccepted(BaseModel):
    request_id: str
    dag_run_id: str


#: pydantic's create_model, typed loosely: mypy cannot check models made at run time
_model: Any = create_model


def domain_models(domain: Domain) -> dict[str, Any]:
    """The API's models for a domain: a prediction (keyed by the domain's own names), a page of
    them, the filters of a listing, and the bodies of ``POST /score`` and ``POST /transient``."""
    e = domain.entity
    plural = f"{e.name}s"
    fields: dict[str, Any] = {e.key: (str, ...), e.day: (date, ...), e.time: (str, ...)}
    fields.update({c: (str | None, None) for c in e.columns})
    fields.update(probability=(float, ...), model_version=(int, ...),
                  horizon_min=(int, Field(description="Made this many minutes before the "
                                          f"{e.time}, with the features known then.")),
                  as_of=(str, ...), scored_at=(str, ...))
    prediction: Any = _model(f"{e.name.title()}Prediction", **fields)
    page: Any = _model(f"{e.name.title()}PredictionPage", items=(list[prediction], ...),
                        next_page=(str | None, Field(description="Pass as `page` for the next "
                                                     "page; null at the end.")))
    # One query model: FastAPI expands a model into query parameters only when it is alone.
    listing: Any = _model(
        f"{e.name.title()}Listing", __config__=ConfigDict(extra="forbid"),
        date=(date, Field(description=f"The {e.day} (UTC).", ge=date(1970, 1, 1),
                          le=date(2100, 12, 31))),
        **{c: (str | None, Field(default=None, pattern=COLUMN_VALUE,
                                 description=f"Only predictions with this {c}."))
           for c in e.columns},
        page=(str | None, Field(default=None, max_length=512, pattern=r"^[A-Za-z0-9_\-=]+$")),
        page_size=(int, Field(default=100, ge=1, le=1000)))
    scored: Any = _model("Scored", **{
        e.key: (str, ...), "probability": (float, ...),
        "features": (str, Field(description="`stored`: the batch-built features of this "
                                "entity, built from exactly these inputs and every landed event; "
                                "`computed`: computed for this request from the raw events"))})
    out: dict[str, Any] = {
        "prediction": prediction, "page": page, "listing": listing,
        "score_response": _model("ScoreResponse", model_version=(int, ...),
                                       predictions=(list[scored], ...))}
    request: Any = e.request
    if request is not None:
        out["score_request"] = _model(
            "ScoreRequest", __config__=ConfigDict(extra="forbid"),
            **{plural: (list[request], Field(min_length=1))})
    transient_fields: dict[str, Any] = {
        "dates": (list[date], Field(default_factory=list, max_length=31))}
    if request is not None:
        transient_fields[plural] = (list[request], Field(default_factory=list))
    out["transient_request"] = _model(
        "TransientRequest", __config__=ConfigDict(extra="forbid"),
        __validators__={"_days": field_validator("dates")(
            lambda cls, v: [check_day(d) for d in v])},
        **transient_fields)
    return out


def json_response(content: Any, status_code: int = 200) -> Response:
    """A JSON response serialised once by orjson: returning a Response makes FastAPI skip its
    own validation and encoding of the handler's result against the response model (which stays
    declared, for the OpenAPI spec)."""
    return Response(orjson.dumps(content), status_code=status_code,
                    media_type="application/json")


class ResponseCache:
    """The bodies of recent ``GET /predictions/{id}`` answers (200 and 404), at most ``size``
    of them (the oldest go first). Predictions change only when a scoring run writes them, so
    the server clears the cache when a new run is recorded (checked every refresh period);
    ``ttl_s`` bounds an entry's age even if that check misses a run (one that crashed before
    recording itself). Used from the event loop only, so it takes no lock."""

    def __init__(self, ttl_s: float, size: int = 65_536) -> None:
        self.ttl_s, self.size = ttl_s, size
        self._entries: dict[str, tuple[float, int, bytes]] = {}

    def get(self, key: str) -> tuple[int, bytes] | None:
        hit = self._entries.get(key)
        if hit is None or time.monotonic() - hit[0] > self.ttl_s:
            return None
        return hit[1], hit[2]

    def put(self, key: str, status_code: int, body: bytes) -> None:
        if self.ttl_s <= 0:
            return
        self._entries.pop(key, None)  # re-inserted last: the dict's order is the age
        self._entries[key] = (time.monotonic(), status_code, body)
        if len(self._entries) > self.size:
            del self._entries[next(iter(self._entries))]

    def clear(self) -> None:
        self._entries.clear()


class BodyLimit:
    """Plain ASGI middleware (no per-request task and stream copy, as BaseHTTPMiddleware has):
    a body larger than ``limit`` bytes is refused with 413, whether it announces its length or
    arrives chunked. A chunked body is read up to the limit, then handed on."""

    def __init__(self, app: Any, limit: int, what: str) -> None:
        self.app, self.limit, self.what = app, limit, what

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        length = headers.get(b"content-length")
        if length is not None:
            if not length.isdigit():
                await self._refuse(send, 400, "bad Content-Length")
            elif int(length) > self.limit:
                await self._refuse(send, 413, self._too_large())
            else:  # the server reads no more than the declared length
                await self.app(scope, receive, send)
            return
        if b"transfer-encoding" not in headers:  # no body
            await self.app(scope, receive, send)
            return
        body = bytearray()
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body += message.get("body", b"")
            if len(body) > self.limit:
                await self._refuse(send, 413, self._too_large())
                return
            if not message.get("more_body", False):
                break
        sent = False

        async def replay() -> dict[str, Any]:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": bytes(body), "more_body": False}
            return await receive()  # type: ignore[no-any-return]

        await self.app(scope, replay, send)

    def _too_large(self) -> str:
        return (f"request body larger than {self.limit} bytes (STREAMFIT_API_MAX_BODY_BYTES): "
                f"send fewer {self.what} per call")

    @staticmethod
    async def _refuse(send: Any, code: int, detail: str) -> None:
        payload = orjson.dumps({"detail": detail})
        await send({"type": "http.response.start", "status": code,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(payload)).encode()),
                                (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": payload})


def create_app(settings: Settings | None = None) -> FastAPI:
    """The app for ``settings`` (default: from the environment, as each server process of
    ``streamfit serve`` builds its own)."""
    from streamfit.settings import get_settings

    s = settings or get_settings()
    domain = load_domain(s.domain)
    entity = domain.entity
    plural = f"{entity.name}s"
    models = domain_models(domain)
    Listing: Any = models["listing"]
    state: dict[str, Any] = {}

    async def keep_fresh() -> None:
        """Every refresh period, in a thread (requests never wait on it): re-read the champion
        alias, and clear the predictions cache when a new scoring run was recorded. A failed
        check (Cassandra away) keeps serving what is loaded."""
        last_run: object = None  # None: not read yet (a keyspace never scored reads None too)
        seen = False
        next_backlog_check = 0.0
        while True:
            try:
                if seen:
                    await asyncio.to_thread(state["champion"].refresh)
                if s.api_score_stored_features and time.monotonic() >= next_backlog_check:
                    state["features_built"] = await asyncio.to_thread(features_built)
                    next_backlog_check = time.monotonic() + max(s.api_champion_refresh_s, 2.0)
                run = await asyncio.to_thread(state["monitor"].last_run_at)
            except Exception as exc:  # noqa: BLE001 - logged; the next period retries
                state["features_built"] = False  # unknown: compute features on demand
                log.warning("champion and scoring-run check failed (%s: %s); serving what is "
                            "loaded", type(exc).__name__, exc)
            else:
                if seen and run != last_run:
                    cache.clear()
                last_run, seen = run, True
            await asyncio.sleep(s.api_champion_refresh_s)

    def features_built() -> bool:
        """Whether the feature stage has built every landed event (durable state: the ingest
        ledger against its watermark): only then are stored features current."""
        from features.run import pending_ledger

        return pending_ledger(s, state["session"], state["progress"], state["ingest"]).rows == 0

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        from scoring.client import PredictionClient
        from scoring.monitoring import MonitoringStore
        from streamfit.cassandra import open_session
        from streamfit.featurestore import FeatureStore
        from streamfit.progress import Progress
        from streamfit.registry import ChampionCache, Registry
        from streamfit.store import IngestStore
        from training.transient import TransientStore

        session = open_session(s)
        registry = Registry(session, s.keyspace, domain.model_name)
        # Every statement a request runs is prepared here, once per process.
        state.update(session=session, registry=registry,
                     client=PredictionClient(session, s.keyspace, domain),
                     champion=ChampionCache(registry),
                     # raw partitions reused for 10 s at most: new events are seen soon after
                     store=FeatureStore(session, s.keyspace, domain, cache_ttl_s=10.0),
                     transient=TransientStore(session, s.keyspace),
                     monitor=MonitoringStore(session, s.keyspace, domain.model_name),
                     progress=Progress(session, s.keyspace), ingest=IngestStore(session, s.keyspace),
                     features_built=False,
                     # a replicated row at the read consistency: a lost quorum shows here
                     ping=session.prepare(f"SELECT version FROM {s.keyspace}.schema_migrations "
                                          "LIMIT 1"))
        app.state.streamfit = state  # for tests that look inside (prepared statements)
        try:
            await asyncio.to_thread(state["champion"].refresh)
        except Exception as exc:  # noqa: BLE001 - not ready yet; /health/ready says so
            log.warning("no champion loaded at start (%s: %s)", type(exc).__name__, exc)
        # One OpenMP thread per server process: a request scores a few rows, and the thread
        # team a tree ensemble starts per tree cost more than the trees (py-spy: a quarter of a
        # one-flight POST /score); the processes themselves use the cores.
        from threadpoolctl import threadpool_limits

        limits = threadpool_limits(1)
        # Everything loaded so far (pandas, scikit-learn, the model) lives as long as the
        # process: moved out of the collector's sight, a full collection no longer walks it
        # (py-spy: such pauses were the p99 under load).
        gc.collect()
        gc.freeze()
        refresher = asyncio.create_task(keep_fresh())
        try:
            yield
        finally:
            refresher.cancel()
            limits.restore_original_limits()  # the process may go on (a test's server thread)
            session.cluster.shutdown()

    app = FastAPI(title="streamfit predictions API", version="1",
                  description=f"Predictions ({domain.label.name}: {domain.label.description}) "
                  f"of {entity.name}s from Cassandra, and on-demand scoring with the champion "
                  "model.", lifespan=lifespan)
    app.add_middleware(BodyLimit, limit=s.api_max_body_bytes, what=plural)
    key = s.api_key.get_secret_value().encode() if s.api_key else None
    cache = ResponseCache(s.api_cache_ttl_s)

    async def authorized(request: Request) -> None:
        if key is None:
            return
        given = request.headers.get("x-api-key") or ""
        auth = request.headers.get("authorization") or ""
        if not given and auth[:7].lower() == "bearer ":
            given = auth[7:]
        if not hmac.compare_digest(given.encode(), key):
            raise HTTPException(status.HTTP_401_UNAUTHORIZED,
                                "missing or wrong API key: send `X-API-Key: <key>` or "
                                "`Authorization: Bearer <key>`",
                                headers={"WWW-Authenticate": "Bearer"})

    # no dependency at all without a key: each one is solved per request
    expensive = [Depends(authorized)] if key is not None else []  # runs a model or a DAG
    guarded = expensive if s.api_key_scope == "all" else []  # reads

    def served() -> dict[str, Any]:
        champion = state["champion"]
        current = champion.current
        return {"champion": current.version if current else None, **{
            f"champion_{k}": v for k, v in champion.status().items() if k != "serving"}}

    @app.get("/health")
    async def health() -> Response:
        """What is served: the champion version, the champion alias, and why they differ when
        a corrupted artifact was refused (no key needed, no Cassandra read)."""
        return json_response({"status": "ok", "keyspace": s.keyspace, "domain": domain.name,
                              **served()})

    @app.get("/health/live")
    async def live() -> Response:
        """Liveness: the process answers (no I/O)."""
        return json_response({"status": "ok"})

    @app.get("/health/ready", responses={503: {"description": "not ready: see `problems`"}})
    async def ready() -> Response:
        """Readiness: Cassandra answers, and a champion is loaded."""
        from streamfit.cassandra import aexecute

        problems = []
        try:
            await asyncio.wait_for(aexecute(state["session"], state["ping"]), timeout=2.0)
        except Exception as exc:  # noqa: BLE001 - any failure means "not reachable"
            from streamfit.cassandra import explain_failure, is_quorum_loss

            problems.append(explain_failure(exc) if is_quorum_loss(exc)
                            else f"Cassandra does not answer ({type(exc).__name__})")
        if state["champion"].current is None:
            problems.append("no champion model loaded: train one (`streamfit train`)")
        return json_response({"status": "ready" if not problems else "not ready",
                              "problems": problems, **served()},
                             status_code=503 if problems else 200)

    @app.get(f"/predictions/{{{entity.key}}}", response_model=models["prediction"],
             dependencies=guarded,
             responses={404: {"description": f"no prediction for this {entity.name}"}})
    async def get_prediction(
            key: Annotated[str, Path(alias=entity.key, pattern=entity.key_pattern)],
    ) -> Response:
        """The latest prediction of one entity (one partition read, reused until the next
        scoring run, STREAMFIT_API_CACHE_TTL_S seconds at most)."""
        cached = cache.get(key)
        if cached is None:
            found = await state["client"].latest_async(key)
            cached = (200, orjson.dumps(found.as_dict(entity))) if found is not None else (
                404, orjson.dumps({"detail": f"no prediction for {entity.name} {key!r}"}))
            cache.put(key, *cached)
        return Response(cached[1], status_code=cached[0], media_type="application/json")

    @app.get("/predictions", response_model=models["page"], dependencies=guarded)
    async def list_predictions(
        query: Annotated[Listing, Query()],
    ) -> Response:
        """Predictions of one date, paged (one partition, never unbounded). Filters on the
        descriptive columns apply inside each page, so a filtered page may be short."""
        from scoring.client import BadPageToken

        filters = {c: getattr(query, c) for c in entity.columns}
        try:
            result = await state["client"].for_date_async(query.date, filters, query.page_size,
                                                          query.page)
        except BadPageToken as exc:
            raise HTTPException(400, str(exc)) from None
        return json_response({"items": [p.as_dict(entity) for p in result.items],
                              "next_page": result.next_token})

    if "score_request" in models:
        ScoreRequest: Any = models["score_request"]

        @app.post("/score", response_model=models["score_response"], dependencies=expensive,
                  responses={413: {"description": "more entities, or more Cassandra reads, "
                                   "than one call may cause"},
                             422: {"description": "invalid, or too many distinct dates"},
                             503: {"description": "no champion model yet"}})
        def score(body: ScoreRequest) -> Response:
            """Score entities with the champion; features are computed point-in-time from the
            raw events in Cassandra. Nothing is stored. (A plain function: the feature work is
            CPU-bound, so it runs in the thread pool, off the event loop.)"""
            from streamfit.featurestore import FEATURE_SOURCE, ReadBudgetExceeded, read_budget
            from streamfit.registry import predict

            given = getattr(body, plural)
            if len(given) > s.api_max_flights:
                raise HTTPException(413, f"{len(given)} {plural} in one call; at most "
                                    f"{s.api_max_flights} (STREAMFIT_API_MAX_FLIGHTS)")
            champion = state["champion"].current
            if champion is None:
                raise HTTPException(503, "no champion model yet: train one (`streamfit train`)")
            rows = pd.DataFrame([e.model_dump() for e in given])
            days = pd.to_datetime(rows[entity.time], utc=True).dt.date.nunique()
            if days > s.api_max_score_dates:
                raise HTTPException(422, f"{plural} of {days} distinct dates in one call; at "
                                    f"most {s.api_max_score_dates} "
                                    "(STREAMFIT_API_MAX_SCORE_DATES): split the request")
            try:
                with read_budget(s.api_max_score_reads):
                    feats = state["store"].features_for(
                        rows, stored=s.api_score_stored_features and state["features_built"])
            except ReadBudgetExceeded as exc:
                raise HTTPException(413, f"this call needs more than {exc.limit} Cassandra "
                                    "partition reads (STREAMFIT_API_MAX_SCORE_READS): send "
                                    "fewer dates per call") from None
            probability = predict(champion.model, feats, champion.features)
            return json_response({
                "model_version": champion.version,
                "predictions": [{entity.key: k, "probability": float(p), "features": source}
                                for k, p, source in zip(feats[ENTITY_ID], probability,
                                                        feats[FEATURE_SOURCE], strict=True)]})

    @app.get("/models", dependencies=guarded)
    def models_list() -> Response:
        """Registered versions (metrics, window) and the aliases."""
        registry = state["registry"]
        return json_response({
            "aliases": registry.aliases(),
            "versions": [{"version": v.version, "algorithm": v.algorithm,
                          "created_at": v.created_at.isoformat(),
                          "train_window": v.train_window, "metrics": v.metrics}
                         for v in registry.versions()[:100]]})

    @app.get("/models/{version}", dependencies=guarded,
             responses={404: {"description": "no such version"}})
    def models_show(
        version: str = Path(pattern=r"^(champion|\d{1,9})$",
                            description="A version number, or `champion`."),
        runs: int = Query(default=5, ge=0, le=100),
    ) -> Response:
        """One version as it serves (what `streamfit models show --json` prints): metrics,
        window, lineage, its latest scoring runs with their shifted features, the realised
        performance of its matured predictions, and its alerts."""
        from scoring.monitoring import version_health

        wanted = None if version == "champion" else int(version)
        health = version_health(state["registry"], state["monitor"], s, wanted, runs)
        if health is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"no model version {version}")
        return json_response(health.as_dict())

    TransientRequest: Any = models["transient_request"]

    @app.post("/transient", response_model=TransientAccepted, status_code=202,
              dependencies=expensive, responses={503: {"description": "Airflow unreachable"}})
    def transient(body: TransientRequest) -> dict[str, Any]:
        """Ask for a model trained only for this request (run by the ``transient_score`` DAG);
        poll ``GET /transient/{request_id}`` for the predictions."""
        given = getattr(body, plural, [])
        if not body.dates and not given:
            raise HTTPException(422, f"give `dates` or `{plural}` to score")
        if len(given) > s.api_max_flights:
            raise HTTPException(413, f"at most {s.api_max_flights} {plural} per request")
        import httpx

        from streamfit.airflow_api import AirflowAPIError, airflow_client

        request_id = uuid.uuid4().hex
        conf = {"request_id": request_id, "keyspace": s.keyspace,
                "dates": [d.isoformat() for d in body.dates],
                "entities": [e.model_dump(mode="json") for e in given]}
        try:
            with airflow_client(s) as client:
                run = client.request("POST", "/api/v2/dags/transient_score/dagRuns",
                                     json={"logical_date": None, "conf": conf})
        except (httpx.HTTPError, AirflowAPIError) as exc:
            raise HTTPException(503, f"Airflow, which runs transient models, is not reachable "
                                f"({type(exc).__name__}); try again later") from None
        return {"request_id": request_id, "dag_run_id": run["dag_run_id"]}

    @app.get("/transient/{request_id}", dependencies=expensive,
             responses={404: {"description": "not finished (or unknown, or expired)"}})
    def transient_result(
            request_id: Annotated[str, Path(pattern=r"^[a-f0-9]{32}$")]) -> dict[str, Any]:
        found = state["transient"].results(request_id, entity.key, entity.day)
        if found is None:
            raise HTTPException(404, f"request {request_id} has not finished (or is unknown)")
        return found

    return app

