"""The ``lakehouse`` command. Every command accepts ``--config`` and ``--root``.

Errors a user can cause print one line and exit with code 2; no tracebacks.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import sys
from pathlib import Path
from typing import Annotated, Any

import click
import typer
from rich.console import Console

from crypto_lakehouse.config import Settings, load_settings
from crypto_lakehouse.errors import LakehouseError

__all__ = ["app", "main"]

console = Console(stderr=True, soft_wrap=True)
out = Console(width=None if sys.stdout.isatty() else 140)

app = typer.Typer(
    name="lakehouse",
    help="crypto-lakehouse: a Delta Lake medallion lakehouse for crypto market data.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
exchange_app = typer.Typer(help="The loopback Binance-protocol exchange.", no_args_is_help=True)
config_app = typer.Typer(help="Inspect the effective configuration.", no_args_is_help=True)
maintain_app = typer.Typer(help="Table maintenance (never loses data, never breaks a tag).", no_args_is_help=True)
archive_app = typer.Typer(help="Binance public-data archives (data.binance.vision layout).", no_args_is_help=True)
tag_app = typer.Typer(help="Named versions for reproducible backtests.", no_args_is_help=True)
promote_app = typer.Typer(help="Promote data between layers (bronze -> silver -> gold).", no_args_is_help=True)
app.add_typer(exchange_app, name="exchange")
app.add_typer(promote_app, name="promote")
app.add_typer(tag_app, name="tag")
app.add_typer(archive_app, name="archive")
app.add_typer(maintain_app, name="maintain")
app.add_typer(config_app, name="config")

ConfigOpt = Annotated[
    Path | None,
    typer.Option("--config", "-c", help="YAML config file (default: embedded defaults = config/local.yaml)."),
]
RootOpt = Annotated[
    str | None,
    typer.Option(
        "--root", help="Storage root, a local path or s3://bucket/prefix (overrides config and LAKEHOUSE_ROOT)."
    ),
]

DEFAULT_RECORDING = Path("../shared/data/cryptofeed-samples/BINANCE_FUTURES")


def _settings(config: Path | None, root: str | None) -> Settings:
    return load_settings(config, root=root)


def _writer(settings: Settings, *, role: str | None = None) -> Any:
    from crypto_lakehouse.ingest import BronzeWriter

    return BronzeWriter.from_settings(settings, role=role)


def _csv(text: str | None) -> list[str] | None:
    return [x.strip() for x in text.split(",") if x.strip()] if text else None


def _run_until_signal(coro_factory: Any) -> Any:
    """Run ``coro_factory(stop_event)`` with SIGINT/SIGTERM setting ``stop_event``."""

    async def runner() -> Any:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        try:
            return await coro_factory(stop)
        finally:
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)

    return asyncio.run(runner())


@config_app.command("show")
def config_show(config: ConfigOpt = None, root: RootOpt = None) -> None:
    """Print the effective configuration (file + LAKEHOUSE_* environment + flags) as JSON."""
    out.print_json(data=_settings(config, root).model_dump(mode="json"))


@exchange_app.command("serve")
def exchange_serve(
    config: ConfigOpt = None,
    root: RootOpt = None,
    recording: Annotated[
        Path | None,
        typer.Option(help="Replay this cryptofeed recording, given as PATH/NAME (e.g. data/BINANCE_FUTURES)."),
    ] = None,
    exchange: Annotated[
        str | None,
        typer.Option(help="Synthetic mode protocol: BINANCE, BINANCE_US, BINANCE_FUTURES or BINANCE_DELIVERY."),
    ] = None,
    symbols: Annotated[
        str | None, typer.Option(help="Synthetic symbols, comma-separated exchange symbols (BTCUSDT,ETHUSDT).")
    ] = None,
    rate: Annotated[float | None, typer.Option(help="Synthetic messages per second, all symbols.")] = None,
    seed: Annotated[int | None, typer.Option(help="Seed of the synthetic market (same seed, same market).")] = None,
    max_trades: Annotated[
        int | None, typer.Option(help="End the synthetic market after this many trades per symbol.")
    ] = None,
    start_ms: Annotated[
        int | None, typer.Option(help="Exchange-time origin of the synthetic market (UTC ms; default now).")
    ] = None,
    host: Annotated[str | None, typer.Option(help="Address to listen on.")] = None,
    ws_port: Annotated[int | None, typer.Option(help="wss port (0 = a free one).")] = None,
    rest_port: Annotated[int | None, typer.Option(help="REST port (0 = a free one).")] = None,
    speed: Annotated[
        float, typer.Option(help="Replay speed: 0 = as fast as the client reads, 1 = recorded pace.")
    ] = 0.0,
    skip_trades: Annotated[
        list[str] | None,
        typer.Option(help="Fault: withhold aggTrade ids FIRST-LAST from the stream (REST keeps them). Repeatable."),
    ] = None,
    duplicate_every: Annotated[int, typer.Option(help="Fault: send every Nth trade twice.")] = 0,
    malformed_every: Annotated[int, typer.Option(help="Fault: after every Nth message, send a malformed frame.")] = 0,
    drop_at: Annotated[int | None, typer.Option(help="Fault: drop the first connection after N messages.")] = None,
    exit_when_finished: Annotated[bool, typer.Option(help="Stop once the recording or market is played out.")] = False,
    cert_out: Annotated[Path | None, typer.Option(help="Write the generated TLS certificate (PEM) here.")] = None,
) -> None:
    """Serve a Binance-protocol exchange on loopback: wss streams + REST (replay or synthetic)."""
    s = _settings(config, root).loopback  # validate before the heavy imports
    from crypto_lakehouse.loopback import FaultPlan, LoopbackExchange, MarketSpec

    faults = FaultPlan(
        skip_trades=[_id_range(r) for r in skip_trades or []],
        duplicate_every=duplicate_every,
        malformed_every=malformed_every,
        drop_at=drop_at,
    )
    kwargs: dict[str, Any] = {
        "host": host or s.host,
        "ws_port": s.ws_port if ws_port is None else ws_port,
        "rest_port": s.rest_port if rest_port is None else rest_port,
        "faults": faults,
        "speed": speed,
    }
    if recording is not None:
        kwargs["recording"] = recording
    else:
        kwargs["market"] = MarketSpec(
            exchange=(exchange or s.exchange).upper(),
            symbols=[x.strip().upper() for x in symbols.split(",")] if symbols else s.symbols,
            seed=s.seed if seed is None else seed,
            rate=rate or s.rate,
            max_trades=max_trades,
            start_ms=start_ms,
        )

    async def serve(stop: asyncio.Event) -> None:
        async with LoopbackExchange(**kwargs) as ex:
            if cert_out is not None:
                cert_out.write_bytes(ex.cert_pem)
            out.print(f"loopback exchange {ex.venue.exchange} ({ex.mode})")
            out.print(f"wss:  {ex.ws_url}")
            out.print(f"rest: {ex.rest_url}")
            out.print(f"cert: {cert_out or ex.rest_url + '/_loopback/cert.pem'}")
            sys.stdout.flush()
            waits = [asyncio.ensure_future(stop.wait())]
            if exit_when_finished:
                waits.append(asyncio.ensure_future(ex.finished.wait()))
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            for w in waits:
                w.cancel()
            print(json.dumps(ex.status()))

    _run_until_signal(serve)


@exchange_app.command("record")
def exchange_record(
    out_path: Annotated[Path, typer.Argument(help="PATH/NAME prefix of the recording files to write.")],
    config: ConfigOpt = None,
    root: RootOpt = None,
    exchange: Annotated[
        str | None, typer.Option(help="BINANCE, BINANCE_US, BINANCE_FUTURES or BINANCE_DELIVERY.")
    ] = None,
    symbols: Annotated[str | None, typer.Option(help="Exchange symbols, comma-separated.")] = None,
    rounds: Annotated[int, typer.Option(help="Rounds of the synthetic market (one trade per symbol each).")] = 2_000,
    seed: Annotated[int | None, typer.Option(help="Seed of the synthetic market.")] = None,
    rate: Annotated[float | None, typer.Option(help="Messages per second (sets the exchange-time step).")] = None,
) -> None:
    """Write a synthetic session in cryptofeed's recording format (for replay and tests)."""
    s = _settings(config, root).loopback
    from crypto_lakehouse.loopback import MarketSpec
    from crypto_lakehouse.loopback.recording import write_synthetic_recording

    spec = MarketSpec(
        exchange=(exchange or s.exchange).upper(),
        symbols=_csv(symbols) or s.symbols,
        seed=s.seed if seed is None else seed,
        rate=rate or s.rate,
    )
    prefix = write_synthetic_recording(spec, out_path, rounds=rounds)
    out.print(f"wrote {prefix}.0, {prefix}.http.0.0, {prefix}.ws.1.0")


def _id_range(text: str) -> tuple[int, int]:
    try:
        lo, hi = (int(x) for x in text.split("-", 1))
    except ValueError:
        raise LakehouseError(
            f"--skip-trades takes FIRST-LAST aggTrade ids, e.g. 1000100-1000199, got {text!r}"
        ) from None
    if hi < lo:
        raise LakehouseError(f"--skip-trades range {text!r} ends before it starts")
    return lo, hi


@app.command()
def stream(
    config: ConfigOpt = None,
    root: RootOpt = None,
    exchange: Annotated[
        list[str] | None, typer.Option("--exchange", "-e", help="Exchange to stream (repeatable); default: config.")
    ] = None,
    symbols: Annotated[
        str | None, typer.Option(help="cryptofeed symbols, comma-separated (BTC-USDT-PERP,...).")
    ] = None,
    channels: Annotated[
        str | None, typer.Option(help="Channels, comma-separated: trades,l2_book,ticker,funding,liquidations,candles.")
    ] = None,
    endpoint: Annotated[
        list[str] | None,
        typer.Option(
            help="A loopback exchange's REST base (http://127.0.0.1:PORT) or a wss:// base; "
            "EXCHANGE=URL to set one per exchange. Default: the exchange's own addresses."
        ),
    ] = None,
    rest_endpoint: Annotated[str | None, typer.Option(help="REST base to use with a wss:// endpoint.")] = None,
    ca_file: Annotated[Path | None, typer.Option(help="PEM certificate to trust for a wss:// endpoint.")] = None,
    duration: Annotated[
        float | None, typer.Option(help="Stop after this many seconds (default: until SIGINT/SIGTERM).")
    ] = None,
    progress: Annotated[bool, typer.Option(help="Live progress table on the terminal.")] = True,
) -> None:
    """Stream exchanges through cryptofeed into the bronze Delta tables (SIGINT/SIGTERM flush and stop)."""
    settings = _settings(config, root)
    from crypto_lakehouse.ingest.progress import live_progress
    from crypto_lakehouse.ingest.stream import stream_targets, stream_to_bronze

    targets = stream_targets(
        settings,
        exchanges=exchange,
        symbols=_csv(symbols),
        channels=_csv(channels),
        endpoints=endpoint,
        rest_endpoint=rest_endpoint,
        ca_file=str(ca_file) if ca_file else None,
    )
    exchanges = [t.exchange for t in targets]
    writer = _writer(settings)

    async def run(stop: asyncio.Event) -> None:
        if duration is not None:
            asyncio.get_running_loop().call_later(duration, stop.set)
        view = None
        if progress and out.is_terminal:
            view = asyncio.create_task(
                live_progress(writer, stop, console=out, title=f"bronze <- {', '.join(exchanges)}")
            )
        await stream_to_bronze(targets, writer, stop=stop, live_port=settings.writer.live_port)
        if view is not None:
            await view

    _run_until_signal(run)
    print(json.dumps({"writer_id": writer.writer_id, "root": settings.root, "tables": writer.summary()}))


@app.command("ingest-recording")
def ingest_recording_cmd(
    recording: Annotated[Path, typer.Argument(help="The recording as PATH/NAME (files NAME.0, NAME.ws.*, ...).")],
    config: ConfigOpt = None,
    root: RootOpt = None,
    timeout: Annotated[
        float, typer.Option(help="Give up if the replay has not finished after this many seconds.")
    ] = 600,
) -> None:
    """Replay a recorded session through the loopback exchange and cryptofeed into bronze; print a JSON summary."""
    settings = _settings(config, root)
    from crypto_lakehouse.loopback import load_recording
    from crypto_lakehouse.loopback.replay import ingest_recording

    rec = load_recording(recording)
    writer = _writer(settings, role="replay")
    summary = asyncio.run(ingest_recording(rec, writer, timeout=timeout))
    print(json.dumps(summary))


WindowOpt = Annotated[
    str | None, typer.Option(help="Exchange-time bound: 2024-01-01, 2024-01-01T12:00:00Z or -2h (ago).")
]


@promote_app.command("silver")
def promote_silver_cmd(
    config: ConfigOpt = None,
    root: RootOpt = None,
    start: WindowOpt = None,
    end: WindowOpt = None,
    tables: Annotated[str | None, typer.Option(help="Only these tables (trades,book,...), comma-separated.")] = None,
) -> None:
    """bronze -> silver: validate, quarantine, deduplicate, fill gaps (ccxt). Only new bronze commits,
    unless --start/--end reprocess a window (idempotent either way). Prints a JSON summary."""
    settings = _settings(config, root)
    from crypto_lakehouse.ingest.backfill import backfiller_from_settings
    from crypto_lakehouse.transform.silver import parse_window, promote_from_settings

    result = promote_from_settings(
        settings,
        start=parse_window(start),
        end=parse_window(end),
        tables=_csv(tables),
        backfiller=backfiller_from_settings(settings),
    )
    gaps = result.gaps
    open_gaps = 0 if gaps is None or gaps.is_empty() else gaps.filter(gaps["status"] == "open").height
    print(
        json.dumps(
            {
                "run_id": result.run_id,
                "tables": result.totals(),
                "open_gaps": open_gaps,
                "bronze_versions": result.bronze_versions,
            }
        )
    )


@promote_app.command("gold")
def promote_gold_cmd(config: ConfigOpt = None, root: RootOpt = None) -> None:
    """silver -> gold: OHLCV at every configured interval, exchange candles, funding. Incremental;
    rerunning with nothing new writes nothing. Prints a JSON summary."""
    settings = _settings(config, root)
    from crypto_lakehouse.storage import Catalog
    from crypto_lakehouse.transform.gold import build_gold

    r = build_gold(Catalog.from_settings(settings), intervals=settings.gold.intervals)
    print(
        json.dumps(
            {
                "bars_written": r.bars_written,
                "exchange_candles": r.exchange_candles,
                "funding_rows": r.funding_rows,
                "silver_versions": r.silver_versions,
            }
        )
    )


@app.command()
def backfill(
    exchange: Annotated[str, typer.Option(help="BINANCE, BINANCE_US, BINANCE_FUTURES or BINANCE_DELIVERY.")],
    symbol: Annotated[str, typer.Option(help="cryptofeed symbol, e.g. BTC-USDT-PERP.")],
    start: Annotated[str, typer.Option(help="2024-01-01T00:00:00Z or -2h (ago).")],
    end: Annotated[str | None, typer.Option(help="Default: now.")] = None,
    rest: Annotated[
        str | None, typer.Option(help="REST base (a loopback exchange); default: config / the exchange's own.")
    ] = None,
    config: ConfigOpt = None,
    root: RootOpt = None,
) -> None:
    """Fetch one symbol's trades for a time range over REST (ccxt) into silver, validated and deduplicated."""
    settings = _settings(config, root)
    from datetime import UTC, datetime

    from crypto_lakehouse.ingest.backfill import Backfiller
    from crypto_lakehouse.storage import Catalog
    from crypto_lakehouse.transform.silver import SilverOptions, parse_window
    from crypto_lakehouse.transform.silver import backfill as run_backfill

    urls = dict(settings.silver.backfill_rest)
    if rest:
        urls[exchange.upper()] = rest
    added = run_backfill(
        Catalog.from_settings(settings),
        Backfiller(urls),
        exchange=exchange.upper(),
        symbol=symbol,
        start=parse_window(start),
        end=parse_window(end) or datetime.now(UTC),
        options=SilverOptions.from_settings(settings.silver),
    )
    print(json.dumps({"exchange": exchange.upper(), "symbol": symbol, "rows_added": added}))


def _lakehouse(config: Path | None, root: str | None) -> Any:
    from crypto_lakehouse.query import Lakehouse

    settings = _settings(config, root)
    return Lakehouse(settings.root, config=settings)


def _as_of(text: str | None) -> Any:
    return int(text) if text is not None and text.isdigit() else text


def _emit(df: Any, fmt: str, output: Path | None) -> None:
    fmt = fmt.lower()
    if fmt == "parquet":
        if output is None:
            raise LakehouseError("--format parquet needs --output FILE")
        df.write_parquet(output)
        return
    if fmt == "csv":
        text = df.write_csv()
    elif fmt == "json":
        text = df.write_json()
    elif fmt == "table":
        import polars as pl

        with pl.Config(tbl_rows=50, tbl_cols=30, tbl_width_chars=200):
            text = str(df)
    else:
        raise LakehouseError(f"unknown --format {fmt!r}: choose table, csv, json or parquet")
    if output is not None:
        output.write_text(text)
    else:
        print(text)


@app.command()
def query(
    sql: Annotated[str, typer.Argument(help="DuckDB SQL; tables are bronze.trades, silver.trades, gold.ohlcv, ...")],
    as_of: Annotated[str | None, typer.Option(help="Delta version, RFC 3339 time or tag name.")] = None,
    format: Annotated[str, typer.Option("--format", help="table, csv, json or parquet.")] = "table",
    output: Annotated[Path | None, typer.Option(help="Write the result to this file.")] = None,
    config: ConfigOpt = None,
    root: RootOpt = None,
) -> None:
    """Run SQL over the lakehouse (DuckDB). Bad SQL prints DuckDB's message and exits with 2."""
    _emit(_lakehouse(config, root).sql(sql, as_of=_as_of(as_of)), format, output)


@app.command()
def history(
    table: Annotated[str, typer.Argument(help="e.g. silver.trades")],
    config: ConfigOpt = None,
    root: RootOpt = None,
) -> None:
    """Commits of a table, newest first."""
    _emit(_lakehouse(config, root).history(table), "table", None)


@app.command()
def tables(config: ConfigOpt = None, root: RootOpt = None) -> None:
    """Tables that exist under the root, with rows, version, files and location."""
    _emit(_lakehouse(config, root).tables(), "table", None)


@tag_app.command("create")
def tag_create(
    name: Annotated[str, typer.Argument(help="Tag name.")],
    table: Annotated[
        list[str] | None, typer.Option(help="Only this table (repeatable); default: every silver and gold table.")
    ] = None,
    note: Annotated[str | None, typer.Option(help="Free text kept with the tag.")] = None,
    config: ConfigOpt = None,
    root: RootOpt = None,
) -> None:
    """Pin the current version of every silver and gold table (or the given ones) under NAME."""
    _emit(_lakehouse(config, root).tag(name, tables=table, note=note), "table", None)


@tag_app.command("list")
def tag_list(config: ConfigOpt = None, root: RootOpt = None) -> None:
    """Every tag with the versions it pins."""
    _emit(_lakehouse(config, root).tags(), "table", None)


@tag_app.command("delete")
def tag_delete(name: Annotated[str, typer.Argument()], config: ConfigOpt = None, root: RootOpt = None) -> None:
    """Delete a tag (the data stays)."""
    _lakehouse(config, root).untag(name)
    print(f"deleted tag {name}")


TableOpt = Annotated[list[str] | None, typer.Option("--table", help="Only this table (repeatable); default: all.")]


def _maintain(
    action: str, config: Path | None, root: str | None, tables: list[str] | None, z_order: list[str] | None = None
) -> None:
    settings = _settings(config, root)
    from dataclasses import asdict

    from crypto_lakehouse import maintenance
    from crypto_lakehouse.schemas import TABLES
    from crypto_lakehouse.storage import Catalog

    catalog = Catalog.from_settings(settings)
    names = tables or [t for t in TABLES if not t.startswith("meta.") and catalog.exists(t)]
    reports = []
    for name in names:
        if action == "compact":
            r = maintenance.compact(catalog, name, z_order=z_order)
        elif action == "checkpoint":
            r = maintenance.checkpoint(catalog, name)
        elif action == "vacuum":
            r = maintenance.vacuum(catalog, name, retention=settings.maintenance.vacuum_horizon(name))
        else:
            keep = settings.maintenance.retention.get(name.split(".")[0])
            if keep is None or "date" not in TABLES[name].partition_by:
                continue
            r = maintenance.retention(catalog, name, keep=keep)
        reports.append(asdict(r))
    print(json.dumps(reports, default=str))


@maintain_app.command("compact")
def maintain_compact(
    table: TableOpt = None,
    z_order: Annotated[
        list[str] | None,
        typer.Option("--z-order", help="Cluster each partition by these columns (repeatable); docs/maintenance.md."),
    ] = None,
    config: ConfigOpt = None,
    root: RootOpt = None,
) -> None:
    """Merge small files (safe while the writer appends)."""
    _maintain("compact", config, root, table, z_order)


@maintain_app.command("checkpoint")
def maintain_checkpoint(table: TableOpt = None, config: ConfigOpt = None, root: RootOpt = None) -> None:
    """Write checkpoints; clean expired log entries unless a tag needs them."""
    _maintain("checkpoint", config, root, table)


@maintain_app.command("vacuum")
def maintain_vacuum(table: TableOpt = None, config: ConfigOpt = None, root: RootOpt = None) -> None:
    """Delete files older than the layer's maintenance.vacuum_retention that no tagged version needs."""
    _maintain("vacuum", config, root, table)


@maintain_app.command("retention")
def maintain_retention(table: TableOpt = None, config: ConfigOpt = None, root: RootOpt = None) -> None:
    """Delete data older than maintenance.retention.<layer> (tagged versions still read it)."""
    _maintain("retention", config, root, table)


@archive_app.command("import")
def archive_import(
    market: Annotated[str, typer.Option(help="spot, um (USD-M futures) or cm (coin-M futures).")],
    kind: Annotated[str, typer.Option(help="aggTrades, klines:<interval>, fundingRate or bookTicker.")],
    symbols: Annotated[str, typer.Option(help="Exchange symbols, comma-separated (BTCUSDT,ETHUSDT).")],
    start: Annotated[str, typer.Option(help="First day, YYYY-MM-DD.")],
    end: Annotated[str, typer.Option(help="Last day (inclusive), YYYY-MM-DD.")],
    base_url: Annotated[str, typer.Option(help="Archive server.")] = "https://data.binance.vision",
    workers: Annotated[int, typer.Option(help="Parallel downloads.")] = 4,
    cache_dir: Annotated[Path, typer.Option(help="Where downloads (and resumable partial ones) are kept.")] = Path(
        "./lakehouse_archive_cache"
    ),
    config: ConfigOpt = None,
    root: RootOpt = None,
) -> None:
    """Import archives into bronze: checksum-verified, one commit per file, re-runs skip done files.
    Exits with 1 if any file failed (the others are imported)."""
    from datetime import date

    settings = _settings(config, root)
    from crypto_lakehouse.ingest.archive import archive_files, import_archives
    from crypto_lakehouse.storage import Catalog

    try:
        first, last = date.fromisoformat(start), date.fromisoformat(end)
    except ValueError as exc:
        raise LakehouseError(f"--start/--end must be YYYY-MM-DD: {exc}") from None
    files = archive_files(market=market, kind=kind, symbols=_csv(symbols) or [], start=first, end=last)
    result = import_archives(
        Catalog.from_settings(settings),
        files,
        base_url=base_url,
        cache_dir=cache_dir,
        workers=workers,
        progress=out.is_terminal,
    )
    print(json.dumps({"imported": result.imported, "skipped": result.skipped, "failed": result.failed}))
    if not result.ok:
        raise typer.Exit(1)


@app.command()
def demo(
    config: ConfigOpt = None,
    root: RootOpt = None,
    recording: Annotated[Path, typer.Option(help="Recording to replay first (PATH/NAME).")] = DEFAULT_RECORDING,
    seconds: Annotated[float, typer.Option(help="How long to stream the synthetic market.")] = 30.0,
) -> None:
    """Run the main job on embedded defaults and print what it did."""
    settings = _settings(config, root)
    from crypto_lakehouse.devtools.demo import run_demo

    run_demo(settings, _writer(settings, role="demo"), recording=recording, seconds=seconds, console=out)


def main() -> None:
    """Entry point of the ``lakehouse`` console script."""
    try:
        rc = app(standalone_mode=False)  # without standalone mode, click returns typer.Exit codes
        if isinstance(rc, int) and rc:
            sys.exit(rc)
    except LakehouseError as exc:
        console.print(f"[bold red]error:[/] {exc}", highlight=False)
        sys.exit(exc.exit_code)
    except click.exceptions.Abort:
        console.print("aborted")
        sys.exit(130)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        sys.exit(130)
    with contextlib.suppress(Exception):
        sys.stdout.flush()


if __name__ == "__main__":
    main()
