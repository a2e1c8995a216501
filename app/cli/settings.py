"""``streamfit settings``: the effective settings, where each comes from, secrets masked."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from app.cli.common import console, current_stack_settings

#: top-level commands of this module
commands = typer.Typer()

#: Settings left unset that still have a working value, computed from others: what is used.
DERIVED: dict[str, Any] = {
    "kafka_bootstrap_servers": lambda s: s.bootstrap_servers,
    "cassandra_hosts": lambda s: ",".join(s.contact_points),
    "dlq_topic": lambda s: s.dead_letter_topic,
    "kafka_security_protocol": lambda s: s.kafka_protocol,
    "kafka_min_insync_replicas": lambda s: s.min_insync_replicas,
    "airflow_url": lambda s: s.airflow_api_url,
    "spark_jars_dir": lambda s: str(s.spark_jars),
    "cassandra_read_consistency": lambda s: s.consistency("read"),
    "cassandra_write_consistency": lambda s: s.consistency("write"),
}


def setting_rows(settings: Any, environ: dict[str, str] | None = None,
                 dotenv: dict[str, str | None] | None = None) -> list[dict[str, Any]]:
    """One row per setting: its variable, the value given (secrets masked), the value used,
    and where it came from: ``environment``, ``.env``, ``file`` (a ``*_FILE`` secret),
    ``local stack`` (the running cluster topology's record), ``derived`` (unset, computed
    from other settings) or ``default``."""
    from streamfit.settings import FILE_SUFFIX, local_stack_defaults

    environ = dict(os.environ) if environ is None else environ
    if dotenv is None:
        from dotenv import dotenv_values

        dotenv = dict(dotenv_values(".env")) if Path(".env").is_file() else {}
    recorded = local_stack_defaults(settings.home, "any").get("settings", {})
    given = json.loads(settings.model_dump_json())
    rows = []
    for name, value in given.items():
        key = f"STREAMFIT_{name.upper()}"
        if key in environ:
            source = "environment"
        elif key in dotenv:
            source = ".env"
        elif key + FILE_SUFFIX in environ or key + FILE_SUFFIX in dotenv:
            source = "file"
        elif name in recorded and name in settings.model_fields_set:
            source = "local stack"
        elif value is None and name in DERIVED:
            source = "derived"
        else:
            source = "default"
        effective = DERIVED[name](settings) if value is None and name in DERIVED else value
        rows.append({"env": key, "name": name, "value": value, "effective": effective,
                     "source": source})
    return rows


@commands.command("settings")
def show_settings(
    as_json: Annotated[bool, typer.Option(
        "--json", help="Machine-readable: a list of {env, name, value, effective, source} "
        "(docs/cli.md).")] = False,
    markdown: Annotated[bool, typer.Option(
        "--markdown", help="Every setting with its default and meaning, as docs/settings.md "
        "(the file is this output).")] = False,
) -> None:
    """Print every setting: the value used, and where it came from (environment, .env, a
    *_FILE secret, the running local stack, derived from other settings, or the default).
    Secrets are masked. The local stack's own settings are included."""
    if markdown:
        from app.settings_doc import settings_markdown

        print(settings_markdown(), end="")
        return
    rows = setting_rows(current_stack_settings(as_given=True))
    if as_json:
        print(json.dumps(rows, indent=2, default=str))
        return
    changed = sum(1 for r in rows if r["source"] not in ("default", "derived"))
    table = Table(title=f"streamfit settings: {len(rows)}, {changed} set here")
    for col in ("env var", "value used", "source"):
        table.add_column(col)
    for r in rows:
        effective = r["effective"]
        table.add_row(r["env"], "(unset)" if effective is None else str(effective), r["source"])
    console.print(table)
