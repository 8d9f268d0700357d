"""Cross-venue and anomaly checks, ``gold.anomalies``: rows that *flag* 1 m bars, never remove
anything from silver (docs/quality.md).

- **divergence**: for an asset streamed on several venues, each venue's 1 m close against the
  median close of every venue of the asset in that minute, in bps; recorded beyond
  ``divergence_bps`` (only minutes with at least ``min_venues`` venues; with two, both are
  recorded: it takes a third to tell which one is off).
- **price_spike** / **volume_spike**: per (exchange, symbol), a 1 m log return (or log volume)
  more than ``spike_deviations`` robust deviations from the median of the ``spike_window``
  preceding 1 m bars with trades: ``z = (x - median) / (1.4826 * MAD)``, MAD the median absolute
  deviation from that median (exact, per window). Returns either way, volumes upwards only. A
  window with no dispersion (MAD 0) or fewer bars than ``spike_window`` flags nothing. The window
  looks back at most one day before the day checked.

Assets (:func:`asset_of`): a spot symbol ``BASE-QUOTE`` or a perpetual ``BASE-QUOTE-PERP`` is
asset ``BASE-Q`` where Q is ``USD`` for USD and the USD stablecoins (USDT, USDC, ...) and the quote
itself otherwise; dated futures, options and anything else are not compared (their price is not
the spot's).

Incremental like gold: the commit carries ``("anomalies:silver.trades:<thresholds>", <silver
version>)``; a run reads the trades appended since, recomputes every day they touch (and the day
after: its window reaches back) for every venue of the assets involved, and replaces those days
of those assets in one commit. Changed thresholds are a new progress id: everything is rechecked.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

import numpy as np
import polars as pl
from numpy.lib.stride_tricks import sliding_window_view

from crypto_lakehouse.config import QualitySettings
from crypto_lakehouse.schemas import GOLD
from crypto_lakehouse.storage import Catalog
from crypto_lakehouse.storage.frames import to_frame
from crypto_lakehouse.transform.gold import ohlcv

__all__ = ["AnomalyOptions", "anomalies", "asset_of", "build_anomalies", "robust_z"]

TABLE = "gold.anomalies"
_USD = frozenset({"USD", "USDT", "USDC", "BUSD", "FDUSD", "TUSD", "USDP", "DAI", "USDE"})
_DAY = timedelta(days=1)
_MINUTE = timedelta(minutes=1)
_MAD_SCALE = 1.4826  # MAD * this estimates the standard deviation of normal data


@dataclass(frozen=True, slots=True)
class AnomalyOptions:
    """Thresholds of the checks (``quality`` in the settings)."""

    divergence_bps: float = 50.0
    min_venues: int = 2
    spike_deviations: float = 8.0
    spike_window: int = 60

    @classmethod
    def from_settings(cls, s: QualitySettings) -> AnomalyOptions:
        return cls(s.divergence_bps, s.min_venues, s.spike_deviations, s.spike_window)

    def app_id(self) -> str:
        return (
            f"anomalies:silver.trades:{self.divergence_bps:g}bps,{self.min_venues}venues,"
            f"{self.spike_deviations:g}mad,{self.spike_window}bars"
        )


def asset_of(symbol: str) -> str | None:
    """The asset venues are compared by (module doc), or None for a symbol not compared."""
    parts = symbol.split("-")
    if len(parts) == 2 or (len(parts) == 3 and parts[2] == "PERP"):
        base, quote = parts[0], parts[1]
        return f"{base}-{'USD' if quote in _USD else quote}"
    return None


def robust_z(values: np.ndarray, window: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For each value, its median, MAD and robust z against the ``window`` values before it
    (NaN where fewer precede it, or the MAD is 0)."""
    n = len(values)
    med = np.full(n, np.nan)
    mad = np.full(n, np.nan)
    if n > window:
        windows = sliding_window_view(values[:-1], window)
        med[window:] = np.median(windows, axis=1)
        mad[window:] = np.median(np.abs(windows - med[window:, None]), axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        z = np.where(mad > 0, (values - med) / (_MAD_SCALE * mad), np.nan)
    return med, mad, z


_ROW = pl.Schema(
    {
        "window_start": pl.Datetime("us", "UTC"),
        "asset": pl.String(),
        "exchange": pl.String(),
        "symbol": pl.String(),
        "check": pl.String(),
        "value": pl.Float64(),
        "threshold": pl.Float64(),
        "detail": pl.String(),
    }
)


def _divergences(bars: pl.DataFrame, options: AnomalyOptions) -> pl.DataFrame:
    by = ["asset", "window_start"]
    return (
        bars.with_columns(pl.col("close").median().over(by).alias("median"), pl.len().over(by).alias("venues"))
        .filter(pl.col("venues") >= options.min_venues)
        .with_columns(((pl.col("close") / pl.col("median") - 1) * 1e4).alias("value"))
        .filter(pl.col("value").abs() > options.divergence_bps)
        .select(
            "window_start",
            "asset",
            "exchange",
            "symbol",
            pl.lit("divergence").alias("check"),
            "value",
            pl.lit(float(options.divergence_bps), pl.Float64).alias("threshold"),
            pl.format("close {} vs median {} of {} venues", "close", "median", "venues").alias("detail"),
        )
    )


def _spikes(bars: pl.DataFrame, options: AnomalyOptions) -> pl.DataFrame:
    rows: list[tuple[object, ...]] = []
    k, w = float(options.spike_deviations), options.spike_window
    for (asset, exchange, symbol), part in bars.sort("window_start").group_by(
        "asset", "exchange", "symbol", maintain_order=True
    ):
        starts = part["window_start"].to_list()
        close = part["close"].to_numpy()
        series = {
            "price_spike": ("return", np.log(close[1:] / close[:-1]), starts[1:]),
            "volume_spike": ("log volume", np.log(part["volume"].to_numpy()), starts),
        }
        for check, (what, x, at) in series.items():
            med, mad, z = robust_z(x, w)
            hit = np.abs(z) > k if check == "price_spike" else z > k
            for i in np.flatnonzero(hit):
                detail = f"{what} {x[i]:.6g} vs median {med[i]:.6g}, MAD {mad[i]:.6g} of the {w} bars before"
                rows.append((at[i], asset, exchange, symbol, check, float(z[i]), k, detail))
    return pl.DataFrame(rows, schema=_ROW, orient="row")


def anomalies(trades: pl.DataFrame | pl.LazyFrame, options: AnomalyOptions) -> pl.DataFrame:
    """The anomalies of silver-shaped ``trades`` (every venue of each asset, with the day before
    the days to check as the spike windows' history): gold.anomalies' columns."""
    bars = ohlcv(trades, "1m")
    assets = {s: asset_of(s) for s in bars["symbol"].unique().to_list()}
    bars = bars.with_columns(pl.col("symbol").replace_strict(assets, return_dtype=pl.String).alias("asset")).filter(
        pl.col("asset").is_not_null()
    )
    found = pl.concat([_divergences(bars, options), _spikes(bars, options)])
    return found.with_columns(
        (pl.col("window_start") + _MINUTE).alias("ts"), pl.col("window_start").dt.date().alias("date")
    ).select(GOLD[TABLE].schema.names)


def _lit(v: object) -> str:
    return "'" + str(v).replace("'", "''") + "'"


def build_anomalies(catalog: Catalog, *, options: AnomalyOptions) -> int:
    """Bring ``gold.anomalies`` up to date with silver.trades (module doc); returns the rows
    (re)written."""
    if not catalog.exists("silver.trades"):
        return 0
    app_id = options.app_id()
    upto = catalog.open("silver.trades").version()
    after = catalog.transaction_version(TABLE, app_id)
    if after is not None and after >= upto:
        return 0
    if after is None:
        new = catalog.scan("silver.trades", version=upto).select("symbol", "date").unique().collect()
    else:
        new = to_frame(catalog.changes("silver.trades", after=after, upto=upto)).select("symbol", "date").unique()
    assets = {s: asset_of(s) for s in new["symbol"].unique().to_list()}
    touched = (
        new.with_columns(pl.col("symbol").replace_strict(assets, return_dtype=pl.String).alias("asset"))
        .drop_nulls("asset")
        .group_by("asset")
        .agg(pl.col("date").min().alias("lo"), (pl.col("date").max() + _DAY).alias("hi"))
    )
    found = pl.DataFrame(schema=to_frame(GOLD[TABLE].schema.empty_table()).schema)
    predicates: list[str] = []
    if touched.height:
        silver = catalog.scan("silver.trades", version=upto)
        symbols = silver.select("exchange", "symbol").unique().collect()
        every = {s: asset_of(s) for s in symbols["symbol"].unique().to_list()}
        frames = []
        for asset, lo, hi in touched.iter_rows():
            assert isinstance(lo, date) and isinstance(hi, date)
            mine = [s for s, a in every.items() if a == asset]
            trades = silver.filter(pl.col("symbol").is_in(mine) & pl.col("date").is_between(lo - _DAY, hi))
            frames.append(anomalies(trades, options).filter(pl.col("date").is_between(lo, hi)))
            predicates.append(f"(asset = {_lit(asset)} AND date >= {_lit(lo)} AND date <= {_lit(hi)})")
        found = pl.concat([found, *frames])
    spec = GOLD[TABLE]
    catalog.replace(
        TABLE,
        found.to_arrow().cast(spec.schema),
        predicate=" OR ".join(predicates) if predicates else "false",
        app_id=app_id,
        version=upto,
    )
    return found.height
