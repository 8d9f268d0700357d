"""``lakehouse stream`` and ``lakehouse ingest-recording``: exchanges or a recording into bronze."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Annotated

import typer

from crypto_lakehouse import jobs
from crypto_lakehouse.cli._common import ConfigOpt, RootOpt, csv, out, settings

__all__ = ["ingest_recording", "stream"]


def stream(
    config: ConfigOpt = None,
    root: RootOpt = None,
    exchanges: Annotated[
        list[str] | None, typer.Option("--exchange", "-e", help="Exchange to stream (repeatable); default: config.")
    ] = None,
    symbols: Annotated[
        str | None, typer.Option(help="cryptofeed symbols, comma-separated (BTC-USDT-PERP,...).")
    ] = None,
    channels: Annotated[
        str | None,
        typer.Option(
            help="Channels, comma-separated: trades,l2_book,l3_book,l1_book,ticker,candles,funding,open_interest,"
            "index,liquidations (each venue offers some)."
        ),
    ] = None,
    shard: Annotated[
        str | None,
        typer.Option(
            help="I/N: stream only shard I (from 0) of N of the (exchange, symbol) pairs, as writer "
            "<writer id or host>-shard-I-of-N; run N processes to cover them all. Default: stream.shard."
        ),
    ] = None,
    endpoints: Annotated[
        list[str] | None,
        typer.Option(
            "--endpoint",
            help="A loopback exchange's REST base (http://127.0.0.1:PORT) or a wss:// base; "
            "EXCHANGE=URL to set one per exchange. Default: the exchange's own addresses.",
        ),
    ] = None,
    rest_endpoint: Annotated[str | None, typer.Option(help="REST base to use with a wss:// endpoint.")] = None,
    ca_file: Annotated[Path | None, typer.Option(help="PEM certificate to trust for a wss:// endpoint.")] = None,
    duration_s: Annotated[
        float | None, typer.Option("--duration", help="Stop after this many seconds (default: until SIGINT/SIGTERM).")
    ] = None,
    progress: Annotated[bool, typer.Option(help="Live progress table on the terminal.")] = True,
) -> None:
    """Stream exchanges through cryptofeed into the bronze Delta tables (SIGINT/SIGTERM flush and stop)."""
    result = jobs.stream(
        settings(config, root),
        exchanges=exchanges,
        symbols=csv(symbols),
        channels=csv(channels),
        shard=shard,
        endpoints=endpoints,
        rest_endpoint=rest_endpoint,
        ca_file=ca_file,
        duration_s=duration_s,
        progress=out if progress and out.is_terminal else None,
    )
    print(json.dumps(asdict(result)))


def ingest_recording(
    recording: Annotated[
        Path,
        typer.Argument(
            metavar="RECORDING",
            help="A capture NAME.jsonl.zst (any venue), a cryptofeed 3 pcap capture (FeedHandler(record=...), "
            "its .meta.json beside it), or a legacy recording as PATH/NAME (files NAME.0, NAME.ws.*, ...).",
        ),
    ],
    config: ConfigOpt = None,
    root: RootOpt = None,
    timeout: Annotated[
        float, typer.Option(help="Give up if the replay has not finished after this many seconds.")
    ] = 600,
    exchange: Annotated[
        str | None, typer.Option("--exchange", "-e", help="pcap captures: only this exchange (default: every one).")
    ] = None,
) -> None:
    """Replay a recorded session through cryptofeed into bronze (a capture or recording through the loopback
    exchange; a pcap capture through cryptofeed's own playback, exactly once); print a JSON summary."""
    result = jobs.ingest_recording(settings(config, root), recording=recording, timeout=timeout, exchange=exchange)
    print(json.dumps(asdict(result)))
