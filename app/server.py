"""The predictions HTTP API: ``streamfit serve`` (FastAPI on uvicorn).

Applications read batch predictions here and score single flights on demand; Airflow is not in
the request path. Every input is validated (4xx with what is wrong), request bodies and lists are
bounded, every query reads one partition, and an API key (``STREAMFIT_API_KEY``) can be required.
The champion is re-checked every ``STREAMFIT_API_CHAMPION_REFRESH_S`` seconds, so a promotion is
served without a restart. OpenAPI docs are at ``/docs``; the spec at ``/openapi.json``.
"""

import hmac
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import date
from typing import Annotated, Any

import pandas as pd
from fastapi import Depends, FastAPI, HTTPException, Path, Query, Request, Response, status
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, create_model, field_validator

from streamfit.domains import ENTITY_ID, Domain, check_day, load_domain
from streamfit.settings import Settings

# No ``from __future__ import annotations`` here: the request and response models are made from
# the domain at run time, and FastAPI must see them as objects, not as names to resolve.

#: A value of a descriptive column in a filter (``GET /predictions?carrier=UA``).
COLUMN_VALUE = r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$"


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
    scored: Any = _model("Scored", **{e.key: (str, ...), "probability": (float, ...)})
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


def create_app(settings: Settings | None = None) -> FastAPI:
    from streamfit.settings import get_settings

    s = settings or get_settings()
    domain = load_domain(s.domain)
    entity = domain.entity
    plural = f"{entity.name}s"
    models = domain_models(domain)
    Listing: Any = models["listing"]
    state: dict[str, Any] = {}

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        from scoring.client import PredictionClient
        from streamfit.cassandra import make_cluster
        from streamfit.featurestore import FeatureStore
        from streamfit.registry import ChampionCache, Registry
        from training.transient import TransientStore

        cluster = make_cluster(s)
        session = cluster.connect(s.keyspace)
        key = s.api_key.get_secret_value().encode() if s.api_key else None
        registry = Registry(session, s.keyspace, domain.model_name)
        state.update(session=session, registry=registry,
                     client=PredictionClient(session, s.keyspace, domain, key),
                     champion=ChampionCache(registry, s.api_champion_refresh_s),
                     # raw partitions reused for 10 s at most: new events are seen soon after
                     store=FeatureStore(session, s.keyspace, domain, cache_ttl_s=10.0),
                     transient=TransientStore(session, s.keyspace))
        try:
            yield
        finally:
            cluster.shutdown()

    app = FastAPI(title="streamfit predictions API", version="1",
                  description=f"Predictions ({domain.label.name}: {domain.label.description}) "
                  f"of {entity.name}s from Cassandra, and on-demand scoring with the champion "
                  "model.", lifespan=lifespan)

    @app.middleware("http")
    async def bounded_body(request: Request,
                           call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        length = request.headers.get("content-length")
        if length is not None and not length.isdigit():
            return JSONResponse(status_code=400, content={"detail": "bad Content-Length"})
        if length is not None and int(length) > s.api_max_body_bytes:
            return JSONResponse(status_code=413, content={
                "detail": f"request body larger than {s.api_max_body_bytes} bytes: send fewer "
                f"{plural} per call"})
        return await call_next(request)

    def authorized(request: Request) -> None:
        if s.api_key is None:
            return
        key = s.api_key.get_secret_value()
        given = request.headers.get("x-api-key") or ""
        auth = request.headers.get("authorization") or ""
        if auth.lower().startswith("bearer "):
            given = given or auth[7:]
        if not hmac.compare_digest(given.encode(), key.encode()):
            raise HTTPException(status.HTTP_401_UNAUTHORIZED,
                                "missing or wrong API key: send `X-API-Key: <key>` or "
                                "`Authorization: Bearer <key>`",
                                headers={"WWW-Authenticate": "Bearer"})

    guarded = [Depends(authorized)]

    @app.get("/health")
    def health() -> dict[str, Any]:
        """Liveness and what is served (no key needed)."""
        champion = state["champion"].get()
        return {"status": "ok", "keyspace": s.keyspace, "domain": domain.name,
                "champion": champion.version if champion else None}

    @app.get(f"/predictions/{{{entity.key}}}", response_model=models["prediction"],
             dependencies=guarded,
             responses={404: {"description": f"no prediction for this {entity.name}"}})
    def get_prediction(
            key: Annotated[str, Path(alias=entity.key, pattern=entity.key_pattern)],
    ) -> dict[str, Any]:
        """The latest prediction of one entity (one partition read)."""
        found = state["client"].latest(key)
        if found is None:
            raise HTTPException(404, f"no prediction for {entity.name} {key!r}")
        return found.as_dict(entity)  # type: ignore[no-any-return]

    @app.get("/predictions", response_model=models["page"], dependencies=guarded)
    def list_predictions(
        query: Annotated[Listing, Query()],
    ) -> dict[str, Any]:
        """Predictions of one date, paged (one partition, never unbounded). Filters on the
        descriptive columns apply inside each page, so a filtered page may be short."""
        from scoring.client import BadPageToken

        filters = {c: getattr(query, c) for c in entity.columns}
        try:
            result = state["client"].for_date(query.date, filters, query.page_size, query.page)
        except BadPageToken as exc:
            raise HTTPException(400, str(exc)) from None
        return {"items": [p.as_dict(entity) for p in result.items],
                "next_page": result.next_token}

    if "score_request" in models:
        ScoreRequest: Any = models["score_request"]

        @app.post("/score", response_model=models["score_response"], dependencies=guarded,
                  responses={503: {"description": "no champion model yet"}})
        def score(body: ScoreRequest) -> dict[str, Any]:
            """Score entities with the champion; features are computed point-in-time from the
            raw events in Cassandra. Nothing is stored."""
            from streamfit.registry import predict

            given = getattr(body, plural)
            if len(given) > s.api_max_flights:
                raise HTTPException(413, f"{len(given)} {plural} in one call; at most "
                                    f"{s.api_max_flights} (STREAMFIT_API_MAX_FLIGHTS)")
            champion = state["champion"].get()
            if champion is None:
                raise HTTPException(503, "no champion model yet: train one (`streamfit train`)")
            rows = pd.DataFrame([e.model_dump() for e in given])
            feats = state["store"].features_for(rows)
            probability = predict(champion.model, feats, champion.features)
            return {"model_version": champion.version,
                    "predictions": [{entity.key: k, "probability": float(p)}
                                    for k, p in zip(feats[ENTITY_ID], probability, strict=True)]}

    @app.get("/models", dependencies=guarded)
    def models_list() -> dict[str, Any]:
        """Registered versions (metrics, window) and the aliases."""
        registry = state["registry"]
        return {"aliases": registry.aliases(),
                "versions": [{"version": v.version, "algorithm": v.algorithm,
                              "created_at": v.created_at.isoformat(),
                              "train_window": v.train_window, "metrics": v.metrics}
                             for v in registry.versions()[:100]]}

    TransientRequest: Any = models["transient_request"]

    @app.post("/transient", response_model=TransientAccepted, status_code=202,
              dependencies=guarded, responses={503: {"description": "Airflow unreachable"}})
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

    @app.get("/transient/{request_id}", dependencies=guarded,
             responses={404: {"description": "not finished (or unknown, or expired)"}})
    def transient_result(
            request_id: Annotated[str, Path(pattern=r"^[a-f0-9]{32}$")]) -> dict[str, Any]:
        found = state["transient"].results(request_id, entity.key, entity.day)
        if found is None:
            raise HTTPException(404, f"request {request_id} has not finished (or is unknown)")
        return found

    return app

