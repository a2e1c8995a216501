"""``streamfit features``: build features of explicit dates (the pipeline builds what lands)."""

from __future__ import annotations

from typing import Annotated

import typer

from app.cli.common import WaitOption, console, handle_errors, parse_day, stage_lease, workspace

features_app = typer.Typer(help="Features in Cassandra.", no_args_is_help=True)


@features_app.command("build")
@handle_errors
def features_build(
    day: Annotated[list[str] | None, typer.Option("--date", help="Entity date (repeatable).")] = None,
    from_: Annotated[str | None, typer.Option("--from", help="First date of a range.")] = None,
    to: Annotated[str | None, typer.Option("--to", help="Last date of a range (inclusive).")] = None,
    wait: WaitOption = 600,
) -> None:
    """Build (or rebuild) the features of entity dates: --date D ... or --from D --to D.

    Holds the feature stage's lease while it builds, as a pipeline run does: a date written by
    two builds at once could keep rows of the staler one."""
    from datetime import timedelta

    days = [parse_day(d, "--date") for d in day or []]
    if from_ or to:
        if not (from_ and to):
            raise typer.BadParameter("give both --from and --to", param_hint="--from")
        lo, hi = parse_day(from_, "--from"), parse_day(to, "--to")
        if hi < lo:
            raise typer.BadParameter(f"--to {hi} is before --from {lo}", param_hint="--to")
        if (hi - lo).days > 3660:
            raise typer.BadParameter("a range of at most ten years", param_hint="--to")
        days += [lo + timedelta(days=i) for i in range((hi - lo).days + 1)]
    if not days:
        raise typer.BadParameter("name the dates: --date D (repeatable) or --from D --to D",
                                 param_hint="--date")
    from features.build import run_build
    from features.run import STAGE

    with workspace() as ws, stage_lease(ws, STAGE, wait):
        summary = run_build(ws, days=days)
    console.print(f"built {summary['entities']:,} rows ({summary['labelled']:,} labelled) for "
                  f"{len(summary['dates'])} date(s)")  # type: ignore[arg-type]
