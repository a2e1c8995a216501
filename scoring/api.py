"""The predictions HTTP API: ``streamfit serve`` (FastAPI on uvicorn).

Applications read batch predictions here and score single flights on demand; Airflow is not in
the request path. Every input is validated (4xx with what is wrong), request bodies and lists are
bounded, every query reads one partition, and an API key (``STREAMFIT_API_KEY``) can be required.
The champion is re-checked every ``STREAMFIT_API_CHAMPION_REFRESH_S`` seconds, so a promotion is
served without a restart. OpenAPI docs are at ``/docs``; the spec at ``/openapi.json``.
"""

from __future__ import annotations

import hmac
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import date, datetime
from typing import Annotated, Any

import pandas as pd
from fastapi import Depends, FastAPI, HTTPException, Path, Query, Request, Response, status
from fastapi.responses import JSONResponse
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator

from streamfit.settings import Settings

FLIGHT_ID = r"^[A-Za-z0-9][A-Za-z0-9~_.\-]{0,63}$"
CARRIER = r"^[A-Z0-9]{2}$"
AIRPORT = r"^[A-Z]{3}$"


class PredictionOut(BaseModel):
    flight_id: str
    sched_date: date
    scheduled_departure: str
    carrier: str
    origin: str
    dest: str
    probability: float
    model_version: int
    scored_at: str


class PredictionPage(BaseModel):
    items: list[PredictionOut]
    next_page: str | None = Field(description="Pass as `page` for the next page; null at the end.")


class FlightIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    flight_id: str = Field(pattern=FLIGHT_ID, examples=["UA1545-EWR-20130301"])
    carrier: str = Field(pattern=CARRIER, examples=["UA"])
    origin: str = Field(pattern=AIRPORT, examples=["EWR"])
    dest: str = Field(pattern=AIRPORT, examples=["IAH"])
    scheduled_departure: AwareDatetime = Field(examples=["2013-03-01T10:15:00Z"])
    tailnum: str | None = Field(default=None, max_length=16, pattern=r"^[A-Za-z0-9]*$",
                                examples=["N14228"])
    distance: float | None = Field(default=None, gt=0, lt=20000, allow_inf_nan=False,
                                   examples=[1400.0])

    @field_validator("scheduled_departure")
    @classmethod
    def _in_range(cls, value: datetime) -> datetime:
        return _check_day(value)


class ScoreRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    flights: list[FlightIn] = Field(min_length=1)


class Scored(BaseModel):
    flight_id: str
    probability: float


class ScoreResponse(BaseModel):
    model_version: int
    predictions: list[Scored]


class TransientRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    dates: list[date] = Field(default_factory=list, max_length=31)
    flights: list[FlightIn] = Field(default_factory=list)

    @field_validator("dates")
    @classmethod
    def _in_range(cls, value: list[date]) -> list[date]:
        return [_check_day(d) for d in value]


def _check_day(value: Any) -> Any:
    """Dates far outside any data (and outside what pandas timestamps hold) are refused."""
    day = value.date() if isinstance(value, datetime) else value
    if not date(1970, 1, 1) <= day <= date(2100, 12, 31):
        raise ValueError("must be between 1970-01-01 and 2100-12-31")
    return value


class TransientAccepted(BaseModel):
    request_id: str
    dag_run_id: str


def create_app(settings: Settings | None = None) -> FastAPI:
    from streamfit.settings import get_settings

    s = settings or get_settings()
    state: dict[str, Any] = {}

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        from features.build import FeatureStore, planes_reference
        from scoring.client import PredictionClient
        from scoring.ondemand import ChampionCache
        from streamfit.cassandra import make_cluster

        cluster = make_cluster(s)
        session = cluster.connect(s.keyspace)
        key = s.api_key.get_secret_value().encode() if s.api_key else None
        state.update(session=session, client=PredictionClient(session, s.keyspace, key),
                     champion=ChampionCache(session, s.keyspace, s.api_champion_refresh_s),
                     # raw partitions reused for 10 s at most: new events are seen soon after
                     store=FeatureStore(session, s.keyspace, cache_ttl_s=10.0),
                     planes=planes_reference())
        try:
            yield
        finally:
            cluster.shutdown()

    app = FastAPI(title="streamfit predictions API", version="1",
                  description="Flight-delay predictions from Cassandra, and on-demand scoring "
                  "with the champion model.", lifespan=lifespan)

    @app.middleware("http")
    async def bounded_body(request: Request,
                           call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        length = request.headers.get("content-length")
        if length is not None and not length.isdigit():
            return JSONResponse(status_code=400, content={"detail": "bad Content-Length"})
        if length is not None and int(length) > s.api_max_body_bytes:
            return JSONResponse(status_code=413, content={
                "detail": f"request body larger than {s.api_max_body_bytes} bytes: send fewer "
                "flights per call"})
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
        return {"status": "ok", "keyspace": s.keyspace,
                "champion": champion.version if champion else None}

    @app.get("/predictions/{flight_id}", response_model=PredictionOut, dependencies=guarded,
             responses={404: {"description": "no prediction for this flight"}})
    def get_prediction(flight_id: Annotated[str, Path(pattern=FLIGHT_ID)]) -> dict[str, Any]:
        """The latest prediction of one flight (one partition read)."""
        found = state["client"].latest(flight_id)
        if found is None:
            raise HTTPException(404, f"no prediction for flight {flight_id!r}")
        return found.as_dict()  # type: ignore[no-any-return]

    @app.get("/predictions", response_model=PredictionPage, dependencies=guarded)
    def list_predictions(
        date_: Annotated[date, Query(alias="date", description="Scheduled date (UTC).",
                                     ge=date(1970, 1, 1), le=date(2100, 12, 31))],
        carrier: Annotated[str | None, Query(pattern=CARRIER)] = None,
        page: Annotated[str | None, Query(max_length=512, pattern=r"^[A-Za-z0-9_\-=]+$")] = None,
        page_size: Annotated[int, Query(ge=1, le=1000)] = 100,
    ) -> dict[str, Any]:
        """Predictions of one scheduled date, paged (one partition, never unbounded)."""
        from scoring.client import BadPageToken

        try:
            result = state["client"].for_date(date_, carrier, page_size, page)
        except BadPageToken as exc:
            raise HTTPException(400, str(exc)) from None
        return {"items": [p.as_dict() for p in result.items], "next_page": result.next_token}

    @app.post("/score", response_model=ScoreResponse, dependencies=guarded,
              responses={503: {"description": "no champion model yet"}})
    def score(body: ScoreRequest) -> dict[str, Any]:
        """Score flights with the champion; features are computed point-in-time from the raw
        events in Cassandra. Nothing is stored."""
        from scoring.ondemand import features_for
        from training.train import predict

        if len(body.flights) > s.api_max_flights:
            raise HTTPException(413, f"{len(body.flights)} flights in one call; at most "
                                f"{s.api_max_flights} (STREAMFIT_API_MAX_FLIGHTS)")
        champion = state["champion"].get()
        if champion is None:
            raise HTTPException(503, "no champion model yet: train one (`streamfit train`)")
        flights = pd.DataFrame([f.model_dump() for f in body.flights])
        feats = features_for(state["store"], flights, state["planes"])
        probability = predict(champion.model, feats, champion.features)
        return {"model_version": champion.version,
                "predictions": [{"flight_id": f, "probability": float(p)}
                                for f, p in zip(flights["flight_id"], probability, strict=True)]}

    @app.get("/models", dependencies=guarded)
    def models() -> dict[str, Any]:
        """Registered versions (metrics, window) and the aliases."""
        from training.registry import Registry

        registry = Registry(state["session"], s.keyspace)
        return {"aliases": registry.aliases(),
                "versions": [{"version": v.version, "algorithm": v.algorithm,
                              "created_at": v.created_at.isoformat(),
                              "train_window": v.train_window, "metrics": v.metrics}
                             for v in registry.versions()[:100]]}

    @app.post("/transient", response_model=TransientAccepted, status_code=202,
              dependencies=guarded, responses={503: {"description": "Airflow unreachable"}})
    def transient(body: TransientRequest) -> dict[str, Any]:
        """Ask for a model trained only for this request (run by the ``transient_score`` DAG);
        poll ``GET /transient/{request_id}`` for the predictions."""
        if not body.dates and not body.flights:
            raise HTTPException(422, "give `dates` or `flights` to score")
        if len(body.flights) > s.api_max_flights:
            raise HTTPException(413, f"at most {s.api_max_flights} flights per request")
        import httpx

        from streamfit.airflow_api import AirflowAPIError
        from streamfit.stack.services import AirflowService

        request_id = uuid.uuid4().hex
        conf = {"request_id": request_id, "keyspace": s.keyspace,
                "dates": [d.isoformat() for d in body.dates],
                "flights": [f.model_dump(mode="json") for f in body.flights]}
        try:
            with AirflowService(s).client() as client:
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
        from scoring.ondemand import transient_results

        found = transient_results(state["session"], s.keyspace, request_id)
        if found is None:
            raise HTTPException(404, f"request {request_id} has not finished (or is unknown)")
        return found

    return app
