"""The ``lakehouse`` command: one module per command group, each a thin wrapper over
:mod:`crypto_lakehouse.jobs`. ``--config`` and ``--root`` go before the command (for every
command) or after it (for the commands that read settings).

Errors a user can cause (usage mistakes, bad values, bad configuration) print one line and exit
with code 2; no tracebacks.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
from importlib.metadata import version
from typing import Annotated

import click
import typer
from typer.exceptions import TyperException

from crypto_lakehouse.cli import (
    _common,
    api,
    archive,
    backfill,
    config,
    demo,
    exchange,
    ingest,
    maintain,
    promote,
    quality,
    query,
    tag,
    venues,
)
from crypto_lakehouse.cli._common import ConfigOpt, RootOpt, console
from crypto_lakehouse.errors import LakehouseError

__all__ = ["app", "main"]

# delta-rs logs every failed credential probe (IMDS, ...) as a multi-line WARN on stderr; the
# error that follows says what matters. RUST_LOG set by the user still wins.
os.environ.setdefault("RUST_LOG", "error")

app = typer.Typer(
    name="lakehouse",
    help="crypto-lakehouse: a Delta Lake medallion lakehouse for crypto market data.",
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # plain help: wraps at any width (the rich boxes cut names and defaults at 80)
    add_completion=False,
    context_settings={"help_option_names": ["-h", "--help"]},
    epilog=(
        "\b\nExamples:\n"
        "  lakehouse demo                     the whole pipeline, offline\n"
        "  lakehouse exchange serve           a loopback exchange, prints its REST\n"
        "  lakehouse stream --endpoint http://127.0.0.1:PORT --duration 60\n"
        "  lakehouse promote silver && lakehouse promote gold\n"
        "  lakehouse query 'select * from gold.ohlcv limit 5'\n"
        "  lakehouse --root /data/lake tables\n"
        "  lakehouse venues                   what silver may assume of each venue\n"
        "  lakehouse quality --day 2026-11-23 is that day complete? (the ledger)"
    ),
)


def _print_version(value: bool) -> None:
    if value:
        print(f"crypto-lakehouse {version('crypto-lakehouse')}")
        raise typer.Exit()


@app.callback()
def _root_options(
    config: ConfigOpt = None,
    root: RootOpt = None,
    show_version: Annotated[
        bool,
        typer.Option("--version", is_eager=True, callback=_print_version, help="Print the version and exit."),
    ] = False,
) -> None:
    """crypto-lakehouse: a Delta Lake medallion lakehouse for crypto market data."""
    _common.set_global_options(config=config, root=root)


# commands, then groups, in the order `lakehouse --help` lists them
app.command("stream")(ingest.stream)
app.command("ingest-recording")(ingest.ingest_recording)
app.command("backfill")(backfill.backfill)
app.command("query")(query.query)
app.command("history")(query.history)
app.command("tables")(query.tables)
app.command("venues")(venues.venues)
app.command("quality")(quality.quality)
app.command("demo")(demo.demo)
app.command("api")(api.api)
app.command("audit")(api.audit)
app.add_typer(exchange.app, name="exchange")
app.add_typer(promote.app, name="promote")
app.add_typer(tag.app, name="tag")
app.add_typer(archive.app, name="archive")
app.add_typer(maintain.app, name="maintain")
app.add_typer(config.app, name="config")
app.add_typer(api.keys_app, name="keys")


def main() -> None:
    """Entry point of the ``lakehouse`` console script."""
    try:
        # without standalone mode, click returns typer.Exit codes; the name is ours however it was
        # started (python -m crypto_lakehouse.cli, or from a test under python -m pytest)
        rc = app(prog_name="lakehouse", standalone_mode=False)
        if isinstance(rc, int) and rc:
            sys.exit(rc)
    except LakehouseError as exc:
        console.print(f"[bold red]error:[/] {exc}", highlight=False)
        sys.exit(exc.exit_code)
    except BaseExceptionGroup as group:  # a task group (cryptofeed's, ours) that failed with user errors only
        first = _only_user_errors(group)
        if first is None:
            raise
        console.print(f"[bold red]error:[/] {first}", highlight=False)
        sys.exit(first.exit_code)
    except (click.exceptions.Abort, typer.Abort):  # typer vendors click: both kinds may come
        console.print("aborted")
        sys.exit(130)
    except (click.exceptions.Exit, typer.Exit) as exc:
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except TyperException as exc:  # typer's usage errors (it vendors click): one line, exit 2
        console.print(f"[bold red]error:[/] {_usage_line(exc)}", highlight=False)
        sys.exit(2)
    except KeyboardInterrupt:
        sys.exit(130)
    except OSError as exc:  # storage unreachable or refused: delta-rs and pyarrow raise OSError
        console.print(f"[bold red]error:[/] storage: {_storage_line(exc)}", highlight=False)
        sys.exit(2)
    with contextlib.suppress(Exception):
        sys.stdout.flush()


_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def _storage_line(exc: OSError) -> str:
    """delta-rs' storage error as one line: its message and its innermost cause (the chain is
    printed as indented lines), with what to do when credentials are missing."""
    lines = [_ANSI.sub("", line).strip().lstrip("↳").strip() for line in str(exc).splitlines()]
    lines = [line for line in lines if line]
    text = lines[0] if lines else type(exc).__name__
    if len(lines) > 1:
        text += f" ({lines[-1]})"
    if "credential" in str(exc).lower():
        text += (
            "; give credentials in storage_options (aws_access_key_id, aws_secret_access_key, aws_region, "
            "aws_endpoint_url) or as AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY / AWS_REGION (docs/configuration.md)"
        )
    return text


def _only_user_errors(group: BaseExceptionGroup) -> LakehouseError | None:
    """The first of ``group``'s errors when every one is a :class:`LakehouseError`, else None."""
    leaves: list[BaseException] = []
    pending: list[BaseException] = [group]
    while pending:
        exc = pending.pop()
        if isinstance(exc, BaseExceptionGroup):
            pending.extend(reversed(exc.exceptions))
        else:
            leaves.append(exc)
    if leaves and all(isinstance(e, LakehouseError) for e in leaves):
        first = leaves[0]
        assert isinstance(first, LakehouseError)
        return first
    return None


def _usage_line(exc: TyperException) -> str:
    """One line for a usage mistake: what is wrong and what exists, e.g. the commands of a group
    or the options of a command."""
    ctx = getattr(exc, "ctx", None)
    command = getattr(ctx, "command", None)
    path = getattr(ctx, "command_path", "lakehouse")
    name = type(exc).__name__
    message = exc.format_message().strip().rstrip(".")
    list_commands = getattr(command, "list_commands", None)  # a group: name its commands
    if list_commands is not None and ctx is not None and "command" in message.lower():
        commands = ", ".join(list_commands(ctx))
        return f"{message}; '{path}' commands: {commands} ('{path} -h' for help)"
    if name == "NoSuchOption" and command is not None and ctx is not None:
        options = sorted({o for p in command.get_params(ctx) for o in p.opts if o.startswith("--")})
        return f"{message}; '{path}' options: {', '.join(options)}"
    return f"{message} ('{path} -h' for help)"
