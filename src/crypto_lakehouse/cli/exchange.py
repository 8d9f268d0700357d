"""``lakehouse exchange``: the loopback exchange, Binance or OKX protocol (a user tool and test double)."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from crypto_lakehouse import jobs
from crypto_lakehouse.cli._common import ConfigOpt, csv, out, settings
from crypto_lakehouse.errors import LakehouseError

if TYPE_CHECKING:
    from crypto_lakehouse.loopback.server import ExchangeOptions

__all__ = ["app"]

app = typer.Typer(
    help="The loopback exchange (Binance protocols; OKX v5 for a synthetic market).",
    rich_markup_mode=None,
    epilog=(
        "\b\nExamples:\n"
        "  lakehouse exchange serve --symbols BTCUSDT,ETHUSDT --rate 500\n"
        "  lakehouse exchange serve --exchange OKX --symbols BTC-USDT-SWAP,ETH-USDT\n"
        "  lakehouse exchange record data/SYNTH --rounds 2000"
    ),
)


@app.command("serve")
def exchange_serve(
    config: ConfigOpt = None,
    recording: Annotated[
        Path | None,
        typer.Option(help="Replay this cryptofeed recording, given as PATH/NAME (e.g. data/BINANCE_FUTURES)."),
    ] = None,
    exchange: Annotated[
        str | None,
        typer.Option(help="Synthetic mode protocol: BINANCE, BINANCE_US, BINANCE_FUTURES, BINANCE_DELIVERY or OKX."),
    ] = None,
    symbols: Annotated[
        str | None,
        typer.Option(help="Synthetic symbols, comma-separated exchange symbols (BTCUSDT,ETHUSDT; OKX: BTC-USDT-SWAP)."),
    ] = None,
    rate: Annotated[float | None, typer.Option(help="Synthetic messages per second, all symbols.")] = None,
    seed: Annotated[int | None, typer.Option(help="Seed of the synthetic market (same seed, same market).")] = None,
    max_trades: Annotated[
        int | None, typer.Option(help="End the synthetic market after this many trades per symbol.")
    ] = None,
    start_ms: Annotated[
        int | None, typer.Option(help="Exchange-time origin of the synthetic market (UTC ms; default now).")
    ] = None,
    first_id: Annotated[
        int | None,
        typer.Option(help="First trade id of the synthetic market (default: from the clock, continuing earlier runs)."),
    ] = None,
    host: Annotated[str | None, typer.Option(help="Address to listen on.")] = None,
    ws_port: Annotated[int | None, typer.Option(help="wss port (0 = a free one).")] = None,
    rest_port: Annotated[int | None, typer.Option(help="REST port (0 = a free one).")] = None,
    speed: Annotated[
        float, typer.Option(help="Replay speed: 0 = as fast as the client reads, 1 = recorded pace.")
    ] = 0.0,
    skip_trades: Annotated[
        list[str] | None,
        typer.Option(help="Fault: withhold trade ids FIRST-LAST from the stream (REST keeps them). Repeatable."),
    ] = None,
    duplicate_every: Annotated[int, typer.Option(help="Fault: send every Nth trade twice.")] = 0,
    malformed_every: Annotated[int, typer.Option(help="Fault: after every Nth message, send a malformed frame.")] = 0,
    drop_at: Annotated[int | None, typer.Option(help="Fault: drop the first connection after N messages.")] = None,
    exit_when_finished: Annotated[bool, typer.Option(help="Stop once the recording or market is played out.")] = False,
    cert_out: Annotated[Path | None, typer.Option(help="Write the generated TLS certificate (PEM) here.")] = None,
) -> None:
    """Serve an exchange on loopback: wss streams + REST (Binance replay or synthetic; OKX synthetic)."""
    s = settings(config, None).loopback  # validate before the heavy imports
    from crypto_lakehouse.loopback import FaultPlan, LoopbackExchange, MarketSpec

    faults = FaultPlan(
        skip_trades=[_id_range(r) for r in skip_trades or []],
        duplicate_every=duplicate_every,
        malformed_every=malformed_every,
        drop_at=drop_at,
    )
    kwargs: ExchangeOptions = {
        "host": host or s.host,
        "ws_port": s.ws_port if ws_port is None else ws_port,
        "rest_port": s.rest_port if rest_port is None else rest_port,
        "faults": faults,
        "speed": speed,
    }
    if recording is not None:
        kwargs["recording"] = recording
    else:
        name = (exchange or s.exchange).upper()
        kwargs["market"] = MarketSpec(
            exchange=name,
            symbols=[x.strip().upper() for x in symbols.split(",")] if symbols else _default_symbols(name, s.symbols),
            seed=s.seed if seed is None else seed,
            rate=rate or s.rate,
            max_trades=max_trades,
            start_ms=start_ms,
            first_id=first_id,
        )

    async def serve(stop: asyncio.Event) -> None:
        async with LoopbackExchange(**kwargs) as ex:
            if cert_out is not None:
                cert_out.write_bytes(ex.cert_pem)
            out.print(f"loopback exchange {ex.venue.exchange} ({ex.mode})")
            out.print(f"wss:  {ex.ws_url}")
            out.print(f"rest: {ex.rest_url}")
            out.print(f"cert: {cert_out or ex.rest_url + '/_loopback/cert.pem'}")
            if ex.market is not None:  # fault ranges (--skip-trades) are in these ids
                firsts = ", ".join(f"{name} {sym.tape.first_id}" for name, sym in ex.market.symbols.items())
                out.print(f"first trade ids: {firsts}")
            sys.stdout.flush()
            waits = [asyncio.ensure_future(stop.wait())]
            if exit_when_finished:
                waits.append(asyncio.ensure_future(ex.finished.wait()))
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            for w in waits:
                w.cancel()
            print(json.dumps(ex.status()))

    jobs.run_until_signal(serve)


@app.command("record")
def exchange_record(
    out_path: Annotated[Path, typer.Argument(metavar="PATH", help="PATH/NAME prefix of the recording files to write.")],
    config: ConfigOpt = None,
    exchange: Annotated[
        str | None, typer.Option(help="BINANCE, BINANCE_US, BINANCE_FUTURES or BINANCE_DELIVERY.")
    ] = None,
    symbols: Annotated[str | None, typer.Option(help="Exchange symbols, comma-separated.")] = None,
    rounds: Annotated[int, typer.Option(help="Rounds of the synthetic market (one trade per symbol each).")] = 2_000,
    seed: Annotated[int | None, typer.Option(help="Seed of the synthetic market.")] = None,
    rate: Annotated[float | None, typer.Option(help="Messages per second (sets the exchange-time step).")] = None,
) -> None:
    """Write a synthetic session in cryptofeed's recording format (for replay and tests)."""
    s = settings(config, None).loopback
    from crypto_lakehouse.loopback import MarketSpec
    from crypto_lakehouse.loopback.recording import write_synthetic_recording

    spec = MarketSpec(
        exchange=(exchange or s.exchange).upper(),
        symbols=csv(symbols) or s.symbols,
        seed=s.seed if seed is None else seed,
        rate=rate or s.rate,
    )
    prefix = write_synthetic_recording(spec, out_path, rounds=rounds)
    out.print(f"wrote {prefix}.0, {prefix}.http.0.0, {prefix}.ws.1.0")


def _default_symbols(exchange: str, configured: list[str]) -> list[str]:
    """The configured (Binance-style) symbols, as OKX perpetual swaps when serving OKX (BTCUSDT -> BTC-USDT-SWAP)."""
    if exchange != "OKX":
        return configured
    from crypto_lakehouse.venues.registry import venue

    return ["-".join(venue("BINANCE").split_symbol(x)) + "-SWAP" for x in configured]


def _id_range(text: str) -> tuple[int, int]:
    try:
        lo, hi = (int(x) for x in text.split("-", 1))
    except ValueError:
        raise LakehouseError(f"--skip-trades takes FIRST-LAST trade ids, e.g. 1000100-1000199, got {text!r}") from None
    if hi < lo:
        raise LakehouseError(f"--skip-trades range {text!r} ends before it starts")
    return lo, hi
