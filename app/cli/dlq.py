"""``streamfit dlq``: the dead-letter topic, listed and replayed."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.table import Table

from app.cli.common import console, current_settings, handle_errors

dlq_app = typer.Typer(help="The dead-letter topic.", no_args_is_help=True)


@dlq_app.command("list")
@handle_errors
def dlq_list(
    limit: Annotated[int, typer.Option(min=1, max=100000)] = 50,
    pending: Annotated[bool, typer.Option("--pending", help="Only those not replayed yet.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable.")] = False,
) -> None:
    """Show dead letters: source, reason and the start of the original bytes."""
    from ingest.dlq import list_dead_letters

    settings = current_settings()
    letters = list_dead_letters(settings, limit, pending_only=pending)
    if as_json:
        print(json.dumps([{"offset": d.offset, "source": d.source, "reason": d.reason,
                           "detail": d.headers.get("dlq.detail"),
                           "value": (d.value or b"").decode("utf-8", "replace"),
                           "original_bytes": int(d.headers.get("dlq.original_bytes")
                                                 or len(d.value or b""))}
                          for d in letters], indent=2))
        return
    table = Table(title=f"dead letters in {settings.dead_letter_topic}")
    for col in ("offset", "source", "reason", "detail", "value"):
        table.add_column(col, overflow="fold")
    for d in letters:
        start = (d.value or b"")[:80].decode("utf-8", "replace")
        if d.truncated:  # an oversize message: the DLQ kept its start, the source has the rest
            start += f" [first {len(d.value or b'')} of {d.headers['dlq.original_bytes']} bytes]"
        table.add_row(str(d.offset), d.source, d.reason, d.headers.get("dlq.detail", ""), start)
    console.print(table)


@dlq_app.command("replay")
@handle_errors
def dlq_replay(
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Only report what would happen.")] = False,
) -> None:
    """Re-submit the dead letters that pass validation now; keep the others pending."""
    from ingest.dlq import replay_dead_letters

    result = replay_dead_letters(current_settings(), dry_run=dry_run)
    console.print(f"read {result.read}, re-submitted {result.resubmitted}, still invalid "
                  f"{result.still_invalid} {result.reasons or ''}{' (dry run)' if dry_run else ''}")
    if result.expired:
        console.print(f"[yellow]{result.expired} oversize dead letter(s) expired:[/] their "
                      "originals are past the source topic's retention, and the DLQ kept only "
                      "their first bytes (`streamfit dlq list` shows them)")
