"""``lakehouse demo``: the main job on embedded defaults (see :mod:`crypto_lakehouse.devtools.demo`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from crypto_lakehouse.cli._common import ConfigOpt, RootOpt, out, settings

__all__ = ["DEFAULT_CAPTURES", "DEFAULT_RECORDING", "demo"]

DEFAULT_RECORDING = Path("../shared/data/cryptofeed-samples/BINANCE_FUTURES")
DEFAULT_CAPTURES = Path("../shared/data/cryptofeed-captures")


def demo(
    config: ConfigOpt = None,
    root: RootOpt = None,
    recording: Annotated[Path, typer.Option(help="Recording to replay first (PATH/NAME).")] = DEFAULT_RECORDING,
    captures: Annotated[
        Path, typer.Option(help="Folder of NAME.jsonl.zst captures: the COINBASE, OKX and BYBIT ones are replayed.")
    ] = DEFAULT_CAPTURES,
    seconds: Annotated[float, typer.Option(help="How long to stream the synthetic market.")] = 30.0,
) -> None:
    """Run the main job on embedded defaults and print what it did."""
    s = settings(config, root)
    from crypto_lakehouse.devtools.demo import CAPTURED_VENUES, run_demo  # the loopback exchange and every stage
    from crypto_lakehouse.ingest import BronzeWriter

    recordings = [recording, *(captures / f"{name}.jsonl.zst" for name in CAPTURED_VENUES)]
    run_demo(s, BronzeWriter.from_settings(s, role="demo"), recordings=recordings, seconds=seconds, console=out)
