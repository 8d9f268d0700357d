"""``lakehouse api``, ``lakehouse keys`` and ``lakehouse audit``: the HTTP query service, its API
keys and its audit trail (docs/service.md)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from crypto_lakehouse.cli._common import ConfigOpt, RootOpt, emit, settings

if TYPE_CHECKING:
    from crypto_lakehouse.storage import Catalog

__all__ = ["api", "audit", "keys_app"]


def api(
    host: Annotated[str | None, typer.Option(help="Address to listen on (default: api.host, 127.0.0.1).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default: api.port, 8400; 0 picks a free one).")] = None,
    config: ConfigOpt = None,
    root: RootOpt = None,
) -> None:
    """Serve the lakehouse over HTTP: SQL, tables, history, tags, health, metrics (API keys: lakehouse keys)."""
    from crypto_lakehouse.service import serve

    serve(settings(config, root), host=host, port=port)


keys_app = typer.Typer(
    help="API keys of the query service (stored as argon2 hashes in meta.api_keys).",
    rich_markup_mode=None,
    epilog=(
        "\b\nExamples:\n"
        "  lakehouse keys create --role reader --note 'research notebook'\n"
        "  lakehouse keys list\n"
        "  lakehouse keys revoke 3f9a0c1b2d4e"
    ),
)


def _catalog(config: Path | None, root: str | None) -> Catalog:
    from crypto_lakehouse.storage import Catalog

    return Catalog.from_settings(settings(config, root))


@keys_app.command("create")
def keys_create(
    role: Annotated[str, typer.Option(help="reader, operator or admin.")] = "reader",
    note: Annotated[str | None, typer.Option(help="Who or what the key is for.")] = None,
    config: ConfigOpt = None,
    root: RootOpt = None,
) -> None:
    """Create a key and print it once: it is stored only as a hash and cannot be shown again."""
    from crypto_lakehouse.service.keys import create_key

    key_id, key = create_key(_catalog(config, root), role=role, note=note)
    print(key)
    typer.echo(f"key {key_id} ({role}) created: keep the line above, it is not stored", err=True)


@keys_app.command("list")
def keys_list(config: ConfigOpt = None, root: RootOpt = None) -> None:
    """Every key: id, role, created_at, revoked_at, note (never the key or its hash)."""
    from crypto_lakehouse.service.keys import list_keys

    emit(list_keys(_catalog(config, root)), "table", None)


@keys_app.command("revoke")
def keys_revoke(
    key_id: Annotated[str, typer.Argument(metavar="ID", help="The key's id (lakehouse keys list).")],
    config: ConfigOpt = None,
    root: RootOpt = None,
) -> None:
    """Revoke a key: a running service refuses it from its next request on."""
    from crypto_lakehouse.service.keys import revoke_key

    revoke_key(_catalog(config, root), key_id)
    print(f"revoked key {key_id}")


def audit(
    since: Annotated[str, typer.Option(help="How far back, a duration (1h, 7d) or an RFC 3339 time.")] = "1d",
    key: Annotated[str | None, typer.Option("--key", help="Only this key id.")] = None,
    format: Annotated[str, typer.Option("--format", help="table, csv, json or parquet.")] = "table",
    config: ConfigOpt = None,
    root: RootOpt = None,
) -> None:
    """Requests the query service received (newest first): time, key, role, route, SQL hash, rows, bytes, status."""
    from crypto_lakehouse.durations import parse_duration, parse_time
    from crypto_lakehouse.service.audit import read_audit

    try:
        start: datetime = datetime.now(UTC) - parse_duration(since)
    except ValueError:
        start = parse_time(since, name="--since")
    emit(read_audit(_catalog(config, root), since=start, key_id=key), format, None)
