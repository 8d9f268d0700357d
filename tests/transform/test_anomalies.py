"""Cross-venue and anomaly checks (gold.anomalies): the asset rule, the robust deviation by hand,
and a planted divergence, price spike and volume spike found on three venues, with silver left
as it was."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from crypto_lakehouse.storage import Catalog
from crypto_lakehouse.transform.anomalies import AnomalyOptions, asset_of, build_anomalies, robust_z
from crypto_lakehouse.transform.plans import SilverOptions
from crypto_lakehouse.transform.silver import promote_silver
from tests.transform.helpers import write_bronze

T0 = datetime(2026, 11, 20, tzinfo=UTC)
VENUES = [("BINANCE", "BTC-USDT"), ("COINBASE", "BTC-USD"), ("BINANCE_FUTURES", "BTC-USDT-PERP")]
OPTS = AnomalyOptions(divergence_bps=50, min_venues=2, spike_deviations=8, spike_window=60)


def test_venues_are_compared_by_base_asset_and_usd_quote_group() -> None:
    assert {asset_of(s) for s in ("BTC-USDT", "BTC-USDT-PERP", "BTC-USD", "BTC-USDC", "BTC-USD-PERP")} == {"BTC-USD"}
    assert asset_of("ETH-BTC") == "ETH-BTC" and asset_of("BTC-EUR") == "BTC-EUR"
    assert asset_of("BTC-USD-24U27") is None and asset_of("BTC-USD-60000-24U27-call") is None  # not the spot price
    assert asset_of("BTCUSDT") is None


def test_robust_z_is_the_deviation_from_the_median_of_the_window_before_in_mads() -> None:
    med, mad, z = robust_z(np.array([1.0, 2, 3, 4, 5, 100, 3]), 5)
    # the 100: window 1..5, median 3, |deviations| 2 1 0 1 2, MAD 1
    assert (med[5], mad[5], z[5]) == (3.0, 1.0, pytest.approx(97 / 1.4826))
    # the 3 after it: window 2 3 4 5 100, median 4, |deviations| 2 1 0 1 96, MAD 1
    assert (med[6], mad[6], z[6]) == (4.0, 1.0, pytest.approx(-1 / 1.4826))
    assert np.isnan(z[:5]).all()  # fewer than 5 values before
    assert np.isnan(robust_z(np.array([2.0] * 6 + [9.0]), 5)[2][-1])  # no dispersion: nothing flagged


def _market(catalog: Catalog) -> dict[tuple[str, int], float]:
    """80 minutes of one trade a minute per venue: a common random walk (2 bps a minute) plus
    each venue's own noise (1 bp), amounts log-normal; COINBASE 1 % up at minute 70 (and back at
    71), a 1000x amount on BINANCE at minute 75. Returns the prices written by (exchange, minute)."""
    rng = np.random.default_rng(7)
    walk = 100 * np.exp(np.cumsum(rng.normal(0, 2e-4, 80)))
    rows, prices = [], {}
    for m in range(80):
        at = T0 + timedelta(minutes=m, seconds=30)
        for exchange, symbol in VENUES:
            price = walk[m] * (1.01 if (exchange, m) == ("COINBASE", 70) else np.exp(rng.normal(0, 1e-4)))
            amount = np.exp(rng.normal(0, 0.2)) * (1000 if (exchange, m) == ("BINANCE", 75) else 1)
            prices[(exchange, m)] = float(f"{price:.6f}")
            rows.append({"exchange": exchange, "symbol": symbol, "ts": at, "receipt_ts": at, "id": str(m + 1),
                         "side": "buy", "price": f"{price:.6f}", "amount": f"{amount:.6f}"})  # fmt: skip
    write_bronze(catalog, "bronze.trades", rows)
    promote_silver(catalog, options=SilverOptions(backfill=False), now=T0 + timedelta(days=1))
    return prices


def test_a_planted_divergence_and_spikes_are_recorded_and_silver_keeps_every_row(tmp_path: Path) -> None:
    catalog = Catalog(tmp_path)
    prices = _market(catalog)
    silver_before = catalog.frame("silver.trades").sort("exchange", "id")
    version = catalog.open("silver.trades").version()

    assert build_anomalies(catalog, options=OPTS) == 4
    found = catalog.frame("gold.anomalies")
    minute = (pl.col("window_start") - pl.lit(T0)).dt.total_minutes()
    got = set(found.select("check", "exchange", minute.alias("m")).iter_rows())
    assert got == {
        ("divergence", "COINBASE", 70),  # 101 vs the median of ~100 on the two others
        ("price_spike", "COINBASE", 70),  # up 1 %, where returns move by hundredths of a percent
        ("price_spike", "COINBASE", 71),  # and back
        ("volume_spike", "BINANCE", 75),
    }
    div = found.filter(check="divergence").row(0, named=True)
    median = float(np.median([prices[(e, 70)] for e, _ in VENUES]))
    assert div["value"] == pytest.approx((prices[("COINBASE", 70)] / median - 1) * 1e4)  # about +100 bps
    assert (div["asset"], div["threshold"], div["ts"]) == ("BTC-USD", 50.0, T0 + timedelta(minutes=71))
    assert found.filter(check="price_spike")["value"].sign().to_list() in ([1, -1], [-1, 1])

    # flagged, never removed: silver is as it was, and no commit touched it
    assert catalog.open("silver.trades").version() == version
    assert catalog.frame("silver.trades").sort("exchange", "id").equals(silver_before)

    # incremental: nothing new, nothing written; other thresholds recheck everything
    gold_version = catalog.open("gold.anomalies").version()
    assert build_anomalies(catalog, options=OPTS) == 0 and catalog.open("gold.anomalies").version() == gold_version
    strict = AnomalyOptions(divergence_bps=500, spike_deviations=1000, spike_window=60)
    assert build_anomalies(catalog, options=strict) == 0 and catalog.frame("gold.anomalies").is_empty()
