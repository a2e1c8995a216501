"""``streamfit schema``: the event contracts, as JSON Schema for producers."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from app.cli.common import console, current_settings, handle_errors

schema_app = typer.Typer(help="Event contracts: each event type's JSON Schema.",
                         no_args_is_help=True)


@schema_app.command("export")
@handle_errors
def export(
    out: Annotated[Path, typer.Option("--out", metavar="DIR", file_okay=False,
                                      help="Directory to write into (made if missing).")]
    = Path("schemas"),
    domain: Annotated[str | None, typer.Option(
        "--domain", metavar="NAME", help="A domain (default: STREAMFIT_DOMAIN).")] = None,
) -> None:
    """Write <DIR>/<domain>/<event_type>.v<version>.json for every event type of the domain:
    validate a message against it before sending, and it will not be refused for its shape."""
    import json

    from streamfit.domains import load_domain
    from streamfit.domains.contract import event_json_schema

    try:
        chosen = load_domain(domain or current_settings().domain)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--domain") from None
    target = out / chosen.name
    target.mkdir(parents=True, exist_ok=True)
    written = []
    for event_type, versions in sorted(chosen.schemas.items()):
        for version, model in sorted(versions.items()):
            path = target / f"{event_type}.v{version}.json"
            path.write_text(json.dumps(event_json_schema(chosen.name, event_type, version, model),
                                       indent=2) + "\n")
            written.append(path)
    console.print(f"wrote {len(written)} schemas to {target}: "
                  + ", ".join(p.name for p in written))
