"""Two gold builds at once (the scheduled flow and a `lakehouse promote gold` by hand): both finish
and gold holds what one build makes. Forced, not hoped for: each build waits after computing
its bars until the other has computed too (old code: the second replace failed, or overwrote the
first's windows with what it computed from an older snapshot)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path

import polars as pl
import pytest

from crypto_lakehouse.loopback import MarketSpec, SyntheticMarket
from crypto_lakehouse.storage import Catalog
from crypto_lakehouse.transform import gold
from crypto_lakehouse.transform.gold import build_gold

from .helpers import interleave_after, run_together
from .test_gold import _silver_trades, _write_silver

INTERVALS = [timedelta(minutes=1), timedelta(minutes=5)]


def _silver(tmp_path: Path, name: str) -> Catalog:
    market = SyntheticMarket(MarketSpec(exchange="BINANCE", symbols=["BTCUSDT"], rate=4, start_ms=1_700_000_000_000))
    for _ in range(600):
        market.step()
    catalog = Catalog(tmp_path / name)
    trades = _silver_trades(market)
    _write_silver(catalog, trades.head(trades.height // 2))
    build_gold(catalog, intervals=INTERVALS)  # gold exists: the race is on replacing its windows
    _write_silver(catalog, trades.tail(trades.height - trades.height // 2))
    return catalog


def _bars(catalog: Catalog) -> pl.DataFrame:
    return pl.read_delta(catalog.uri("gold.ohlcv")).drop("built_at", strict=False).sort("interval", "window_start")


def test_two_gold_builds_at_once_both_finish_with_the_bars_of_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    alone = _silver(tmp_path, "alone")
    build_gold(alone, intervals=INTERVALS)
    racing = _silver(tmp_path, "racing")
    interleave_after(monkeypatch, gold, "_trade_bars", 2, unless_serialised=3)
    run_together(
        lambda: build_gold(racing, intervals=INTERVALS),
        lambda: build_gold(racing, intervals=INTERVALS),
    )
    assert _bars(racing).equals(_bars(alone))
    assert build_gold(racing, intervals=INTERVALS).bars_written == {}  # the progress recorded: nothing left


def test_two_gold_builds_on_two_hosts_at_once_both_finish_with_the_bars_of_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Builds on two hosts (an object-store root: each host's rebuild lock is its own) are not
    held back, so their replaces of gold.ohlcv race in delta-rs. deltalake 1.6.6 then fails the
    loser with "sql parser error" (re-reading the winner's stored predicate, `interval = ...`)
    instead of a CommitFailedError: the loser must build again from the progress recorded,
    not fail the run."""
    alone = _silver(tmp_path, "alone")
    build_gold(alone, intervals=INTERVALS)
    racing = _silver(tmp_path, "racing")
    real_lock = Catalog.lock

    @contextmanager
    def own_host(self: Catalog, table: str, *, purpose: str, **kwargs: bool) -> Iterator[None]:
        if purpose == "rebuild":  # each build on its own host: nothing shared holds the other back
            yield
            return
        with real_lock(self, table, purpose=purpose, **kwargs):
            yield

    monkeypatch.setattr(Catalog, "lock", own_host)
    interleave_after(monkeypatch, gold, "_trade_bars", 2)
    with caplog.at_level(logging.INFO, logger="crypto_lakehouse.transform._replace"):
        run_together(
            lambda: build_gold(racing, intervals=INTERVALS),
            lambda: build_gold(racing, intervals=INTERVALS),
        )
    assert "gold.ohlcv: a concurrent commit won" in caplog.text  # the race happened: one built again
    assert _bars(racing).equals(_bars(alone))
    assert build_gold(racing, intervals=INTERVALS).bars_written == {}
