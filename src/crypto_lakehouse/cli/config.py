"""``lakehouse config``: inspect the effective configuration."""

from __future__ import annotations

import typer

from crypto_lakehouse.cli._common import ConfigOpt, RootOpt, out, settings

__all__ = ["app"]

app = typer.Typer(
    help="Inspect the effective configuration.",
    rich_markup_mode=None,
    epilog=("\b\nExamples:\n  lakehouse config show\n  LAKEHOUSE_GOLD__INTERVALS=1m,5m lakehouse config show"),
)


@app.command("show")
def config_show(config: ConfigOpt = None, root: RootOpt = None) -> None:
    """Print the effective configuration (file + LAKEHOUSE_* environment + LAKEHOUSE_SECRETS_DIR + flags)
    as JSON, each secret (a storage option such as AWS_SECRET_ACCESS_KEY) as **********."""
    out.print_json(data=settings(config, root).model_dump(mode="json"))
