"""Replaying real recorded sessions drives the real cryptofeed handler to exactly the callbacks
that the recorded frames imply. Expected counts are computed here from the raw files, without
the project's recording parser."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from pathlib import Path

import pytest

from crypto_lakehouse.errors import LakehouseError
from crypto_lakehouse.loopback import LoopbackExchange

from .helpers import stream_until_finished


def _expected(samples: Path, name: str) -> tuple[Counter, list[str]]:
    futures = name != "BINANCE"
    snapshots: dict[str, int] = {}
    for line in (samples / f"{name}.http.0.0").read_text().splitlines():
        url, sep, rest = line.partition(" -> ")
        if not sep:
            continue
        symbol = url.split("symbol=")[1].split("&")[0]
        snapshots[symbol] = json.loads(rest.split(": ", 1)[1])["lastUpdateId"]
    lines = (samples / f"{name}.ws.1.0").read_text().splitlines()
    frames = [json.loads(line.split(": ", 1)[1]) for line in lines[1:] if line.strip()]
    expected: Counter = Counter()
    last: dict[str, int | None] = {s: None for s in snapshots}
    for f in frames:
        stream, data = f["stream"], f["data"]
        if stream.endswith("@aggTrade"):
            expected["trades"] += 1
        elif stream.endswith("@bookTicker"):
            expected["ticker"] += 1
        elif "@kline_" in stream:
            expected["candles"] += 1
        elif data.get("e") == "depthUpdate":
            sym, snap = data["s"], snapshots[data["s"]]
            if last[sym] is None:
                # Binance's documented rule for the first event applied after a snapshot
                stale = data["u"] < snap if futures else data["u"] <= snap
                if stale:
                    continue
                assert data["U"] <= snap + (0 if futures else 1) <= data["u"] + (0 if futures else 0)
            else:
                assert (data["pu"] == last[sym]) if futures else (data["U"] == last[sym] + 1)
            last[sym] = data["u"]
            expected["l2_book"] += 1
    expected["l2_book"] += len(snapshots)  # one callback per snapshot
    symbols = sorted({f["data"].get("s") or f["data"]["k"]["s"] for f in frames})
    return expected, symbols


def _std(name: str, symbol: str) -> str:
    for quote in ("USDT", "BTC", "ETH", "EUR"):
        if symbol.endswith(quote):
            base = symbol[: -len(quote)]
            return f"{base}-{quote}-PERP" if name == "BINANCE_FUTURES" else f"{base}-{quote}"
    raise AssertionError(symbol)


@pytest.mark.parametrize("name", ["BINANCE", "BINANCE_FUTURES"])
def test_replay_drives_cryptofeed_to_the_recorded_callback_counts(samples: Path, name: str) -> None:
    expected, symbols = _expected(samples, name)

    async def run() -> Counter:
        async with LoopbackExchange(recording=samples / name) as ex:
            got = await stream_until_finished(
                ex,
                [_std(name, s) for s in symbols],
                ["trades", "l2_book", "ticker", "candles"],
                candle_closed_only=False,
            )
            assert ex.status()["finished"]
            return got.counts

    counts = asyncio.run(run())
    assert dict(counts) == dict(expected)


def test_replay_delivers_each_frame_once_across_reconnects(samples: Path) -> None:
    """A client that reconnects does not get the recording again (no duplicates)."""

    async def run() -> tuple[int, int]:
        async with LoopbackExchange(recording=samples / "BINANCE_FUTURES") as ex:
            got = await stream_until_finished(ex, ["SUSHI-USDT-PERP"], ["trades"])
            again = await stream_until_finished(ex, ["SUSHI-USDT-PERP"], ["trades"], settle=1.2)
            return got.counts["trades"], again.counts["trades"]

    first, second = asyncio.run(run())
    assert first == 40  # the recording holds 40 sushiusdt@aggTrade frames
    assert second == 0


def test_missing_recording_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(LakehouseError, match="recording .* not found"):
        LoopbackExchange(recording=tmp_path / "NOPE")
