"""``lakehouse config``: inspect the effective configuration."""

from __future__ import annotations

import typer

from crypto_lakehouse.cli._common import ConfigOpt, RootOpt, out, settings

__all__ = ["app"]

app = typer.Typer(help="Inspect the effective configuration.")


@app.command("show")
def config_show(config: ConfigOpt = None, root: RootOpt = None) -> None:
    """Print the effective configuration (file + LAKEHOUSE_* environment + flags) as JSON."""
    out.print_json(data=settings(config, root).model_dump(mode="json"))
