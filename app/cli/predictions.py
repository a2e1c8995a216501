"""``streamfit predictions``, ``score``, ``report`` and ``serve``: predictions, written and read."""

from __future__ import annotations

import csv
import json
import re
import sys
from typing import Annotated, Any

import typer
from rich.table import Table

from app.cli.common import (
    WaitOption,
    console,
    current_settings,
    err,
    handle_errors,
    parse_day,
    plural,
    stage_lease,
    workspace,
)

predictions_app = typer.Typer(help="Read predictions from Cassandra.", no_args_is_help=True)
#: top-level commands of this module
commands = typer.Typer()


@commands.command("score")
@handle_errors
def score(
    day: Annotated[list[str], typer.Option("--date", help="Entity date to score (repeatable).")],
    as_of: Annotated[str | None, typer.Option(
        "--as-of", help="The stream's \"now\", ISO-8601 with zone: only the rows due then "
        "(inside their horizon, before their event time). Default: every row, every "
        "horizon.")] = None,
    transient: Annotated[bool, typer.Option(
        "--transient", help="Train a throw-away model for this request instead of using the "
        "champion; store its predictions under a request id (never registered).")] = False,
    wait: WaitOption = 600,
) -> None:
    """Score the entities of dates with the champion; write predictions to Cassandra. Holds
    the scoring stage's lease, as a pipeline run does (not with --transient, which writes
    only its own request's predictions)."""
    from datetime import datetime

    days = [parse_day(d, "--date") for d in day]
    if transient:
        import uuid

        from training.transient import run_transient

        with workspace() as ws:
            summary = run_transient(ws, uuid.uuid4().hex, days)
        console.print(f"transient request {summary['request_id']}: {summary['scored']:,} rows "
                      f"scored by a {summary['algorithm']} trained on "
                      f"{summary['train_window']['start']}..{summary['train_window']['end']} "
                      f"(holdout ROC AUC {summary['metrics']['roc_auc']:.4f}); the model was "
                      "discarded")
        return

    when = None
    if as_of:
        try:
            when = datetime.fromisoformat(as_of)
        except ValueError:
            raise typer.BadParameter(f"{as_of!r} is not an ISO-8601 time",
                                     param_hint="--as-of") from None
        if when.tzinfo is None:
            raise typer.BadParameter("give a time zone, e.g. 2013-06-01T12:00:00Z",
                                     param_hint="--as-of")
    from scoring.batch import score_dates
    from scoring.run import STAGE

    with workspace() as ws, stage_lease(ws, STAGE, wait):
        result = score_dates(ws, days, when, evaluate=days)
        entities = plural(ws)
    console.print(f"scored {result.scored:,} {entities} of {', '.join(result.dates) or 'no date'} "
                  f"with model v{result.model_version}"
                  + (f" ({result.unchanged:,} equal to the stored prediction, not rewritten)"
                     if result.unchanged else ""))
    for when_day, per_version in result.evaluated.items():
        console.print(f"evaluated matured predictions of {when_day}: "
                      + ", ".join(f"v{v} {n:.0f} {entities}" for v, n in per_version.items()))


@commands.command("report")
@handle_errors
def report(
    out: Annotated[str | None, typer.Option(
        "--out", help="Where to write the HTML report (default: <home>/report.html).")] = None,
) -> None:
    """Write an HTML report: metrics across versions, the champion's ROC and calibration, drift,
    realised performance and a freshness timeline."""
    from pathlib import Path

    from scoring.report import write_report

    target = Path(out) if out else current_settings().home / "report.html"
    if target.is_dir():
        raise typer.BadParameter(f"{target} is a directory: give a file name", param_hint="--out")
    with workspace() as ws:
        path = write_report(ws, target)
    console.print(f"report written to {path.resolve()}")


def _prediction_table(title: str, rows: list[Any], entity: Any) -> Table:
    """Predictions (``scoring.client.Prediction``) as a table, in the domain's own names."""
    table = Table(title=title)
    for col in (entity.key, f"{entity.time} (UTC)", *entity.columns, "probability", "as of",
                "model", "scored at"):
        table.add_column(col)
    for p in rows:
        table.add_row(p.entity_id, f"{p.event_time:%Y-%m-%d %H:%M}",
                      *(p.attributes.get(c, "") for c in entity.columns), f"{p.probability:.3f}",
                      f"{p.horizon_min // 60} h {p.horizon_min % 60:02d} min before",
                      f"v{p.model_version}", f"{p.scored_at:%Y-%m-%d %H:%M:%S}")
    return table


def print_predictions(settings: Any, day: Any, limit: int) -> None:
    from scoring.client import PredictionClient

    with PredictionClient.open(settings) as client:
        entity = client.domain.entity
        rows = client.for_date(day, None, limit).items
        console.print(_prediction_table(
            f"predictions for {entity.name}s of {day} ({client.domain.label.name}: "
            f"{client.domain.label.description})", rows, entity))


def check_key(key: str, pattern: str, entity: str, name: str) -> None:
    """Refuse a key that cannot be one, before any service is asked."""
    if not key.strip() or not key.isprintable():
        raise typer.BadParameter(f"{key!r} is not a {name}: give one, e.g. with "
                                 "`streamfit predictions list --date D`", param_hint="KEY")
    if not re.fullmatch(pattern, key):
        raise typer.BadParameter(f"{key!r} is not a {name} of a {entity} ({pattern})",
                                 param_hint="KEY")


@predictions_app.command("get")
@handle_errors
def predictions_get(
    key: Annotated[str, typer.Argument(help="The entity's key, e.g. UA1545-EWR-20130101.")],
    history: Annotated[bool, typer.Option("--history", help="Also every model's prediction.")
                       ] = False,
    as_json: Annotated[bool, typer.Option(
        "--json", help="Machine-readable: {latest, history} (docs/cli.md has the shape).")
                       ] = False,
) -> None:
    """The latest prediction of one entity (for flights: a flight id)."""
    from streamfit.domains import load_domain

    settings = current_settings()
    # the configured domain's pattern first (no service, no pandas): a bad key is refused at once
    given = load_domain(settings.domain).entity
    check_key(key, given.key_pattern, given.name, given.key)
    from scoring.client import PredictionClient

    with PredictionClient.open(settings) as client:
        entity = client.domain.entity  # the keyspace's own domain decides
        if entity is not given:
            check_key(key, entity.key_pattern, entity.name, entity.key)
        found = client.latest(key)
        past = client.history(key) if history else []
    if found is None:
        err.print(f"no prediction for {entity.name} {key!r} (check the id, e.g. with "
                  "`streamfit predictions list --date D`)")
        raise typer.Exit(1)
    rows: list[dict[str, Any]] = [{"model_version": h.model_version, "horizon_min": h.horizon_min,
             "probability": h.probability, "scored_at": h.scored_at.isoformat()} for h in past]
    if as_json:
        print(json.dumps({"latest": found.as_dict(entity),
                          "history": rows if history else None}, indent=2, default=str))
        return
    console.print(_prediction_table(f"the latest prediction of {entity.name} {key}", [found],
                                    entity))
    if history:
        table = Table(title=f"every prediction of {key}: {len(rows)}, newest model first")
        for col in ("model", "as of", "probability", "scored at"):
            table.add_column(col)
        for r in rows:
            table.add_row(f"v{r['model_version']}", f"{r['horizon_min']} min before",
                          f"{r['probability']:.4f}", r["scored_at"][:19].replace("T", " "))
        console.print(table)


@predictions_app.command("list")
@handle_errors
def predictions_list(
    day: Annotated[str, typer.Option("--date", help="The entities' date (UTC), YYYY-MM-DD.")],
    where: Annotated[list[str] | None, typer.Option(
        "--where", help="COLUMN=VALUE on a descriptive column (repeatable), e.g. carrier=UA.")
                     ] = None,
    fmt: Annotated[str, typer.Option("--format", help="table, json or csv.")] = "table",
    limit: Annotated[int, typer.Option("--limit", min=1, max=100_000,
                                       help="At most this many rows.")] = 1000,
) -> None:
    """Predictions of one date (read page by page)."""
    if fmt not in ("table", "json", "csv"):
        raise typer.BadParameter(f"{fmt!r}: choose table, json or csv", param_hint="--format")
    when = parse_day(day, "--date")
    from scoring.client import COLUMN_VALUE, PredictionClient

    rows: list[Any] = []
    with PredictionClient.open(current_settings()) as client:
        entity = client.domain.entity
        filters: dict[str, str] = {}
        for item in where or []:
            column, sep, value = item.partition("=")
            if not sep or column not in entity.columns or not re.fullmatch(COLUMN_VALUE, value):
                raise typer.BadParameter(
                    f"{item!r}: write COLUMN=VALUE with COLUMN one of {list(entity.columns)}",
                    param_hint="--where")
            filters[column] = value
        token = None
        while len(rows) < limit:
            page = client.for_date(when, filters, min(1000, limit - len(rows)), token)
            rows += page.items
            token = page.next_token
            if token is None:
                break
    if fmt == "json":
        print(json.dumps([p.as_dict(entity) for p in rows], indent=2))
    elif fmt == "csv":
        dicts = [p.as_dict(entity) for p in rows]
        writer = csv.DictWriter(sys.stdout, fieldnames=list(dicts[0]) if dicts else [entity.key])
        writer.writeheader()
        writer.writerows(dicts)
    else:
        console.print(_prediction_table(
            f"predictions for {when}" + "".join(f", {k} {v}" for k, v in filters.items()), rows,
            entity))
    if not rows:
        err.print(f"no predictions for {when}; batch scoring writes them (`streamfit score`)")


@commands.command("serve")
@handle_errors
def serve(
    workers: Annotated[int | None, typer.Option(
        "--workers", min=1, max=64,
        help="Server processes (default STREAMFIT_API_WORKERS).")] = None,
) -> None:
    """Start the predictions HTTP API (STREAMFIT_API_HOST:STREAMFIT_API_PORT; docs at /docs)."""
    import uvicorn

    settings = current_settings()
    count = workers or settings.api_workers
    tls = settings.api_tls_certfile is not None
    for name in ("api_tls_certfile", "api_tls_keyfile"):
        path = getattr(settings, name)
        if path is not None and not path.is_file():
            err.print(f"[red]error:[/] STREAMFIT_{name.upper()}={path}: no such file; point "
                      "it at the PEM file, or unset both for plain HTTP")
            raise typer.Exit(2)
    scope = {"all": "API key required", "expensive": "API key required for POST /score and "
             "transient training"}[settings.api_key_scope]
    console.print(f"serving {'https' if tls else 'http'}://{settings.api_host}:{settings.api_port}"
                  f" (docs at /docs, {count} worker{'s' if count > 1 else ''})"
                  + (f"; {scope}" if settings.api_key else ""))
    # Each worker process builds its own app, session and champion from the same environment
    # (uvicorn needs an import string for more than one).
    uvicorn.run("app.server:create_app", factory=True, workers=count, host=settings.api_host,
                port=settings.api_port, log_level="warning", access_log=False,
                ssl_certfile=settings.api_tls_certfile, ssl_keyfile=settings.api_tls_keyfile)
