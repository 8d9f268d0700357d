"""Book updates per second rebuilt into 1 s top-10 snapshots: gold's columnar rebuild
(``crypto_lakehouse.transform.book.book_snapshots``) vs cryptofeed's C order book (the
``order_book`` extension cryptofeed 3.0.1's ``OrderBook`` wraps) applying the same updates in
the same run, one level at a time, reading its top 10 per side at the end of every second.

The updates are generated columnar (NumPy): one book, a snapshot of 1,000 levels a side, then
messages of ``--levels`` level updates each (a sequence per message, +1), at ``--rate`` level
updates per second of exchange time, prices within 1,000 ticks of the mid (geometric: most near
the top), a quarter of them removals (size 0). The C book gets Python floats (faster than the
Decimals cryptofeed feeds it); converting the columns to Python lists is not counted in its time.
Both results are compared window by window (not timed). A warm-up call of gold's rebuild on the
first 5,000 rows (modules it imports on first use) is not timed either.

Last line: {"updates", "gold_updates_per_s", "cryptofeed_updates_per_s", "ratio", "peak_rss_mb"}
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from datetime import UTC, datetime, timedelta

import numpy as np
import polars as pl

SNAPSHOT_LEVELS = 1_000
DEPTH = 10


def generate(updates: int, *, levels: int, rate: float, seed: int = 7) -> pl.DataFrame:
    """Silver-shaped book rows: a snapshot then ``updates`` level updates in messages of ``levels``."""
    rng = np.random.default_rng(seed)
    messages = max(1, updates // levels)
    n = messages * levels
    mid = np.full(messages, 1_000_000)  # in ticks (fixed: bids below, asks above, never crossed)
    ask = rng.random(n) < 0.5
    offset = np.minimum(rng.geometric(0.05, n) - 1, 999)
    mids = np.repeat(mid, levels)
    ticks = np.where(ask, mids + 1 + offset, mids - 1 - offset)
    size = np.where(rng.random(n) < 0.25, 0.0, rng.integers(1, 10_000, n) / 1_000)
    msg = np.repeat(np.arange(1, messages + 1), levels)
    snap_ticks = np.concatenate([mid[0] - 1 - np.arange(SNAPSHOT_LEVELS), mid[0] + 1 + np.arange(SNAPSHOT_LEVELS)])
    snap_ask = np.repeat([False, True], SNAPSHOT_LEVELS)
    start = int(datetime(2026, 11, 2, tzinfo=UTC).timestamp() * 1_000_000)
    step_us = levels / rate * 1_000_000
    us = np.concatenate([np.zeros(2 * SNAPSHOT_LEVELS, np.int64), (msg * step_us).astype(np.int64)]) + start
    ts = pl.Series("ts", us).cast(pl.Datetime("us", "UTC"))
    return pl.DataFrame(
        {
            "exchange": pl.Series(["BENCH"]).new_from_index(0, len(us)),
            "symbol": pl.Series(["BTC-USDT"]).new_from_index(0, len(us)),
            "ts": ts,
            "receipt_ts": ts,
            "sequence": np.concatenate([np.zeros(2 * SNAPSHOT_LEVELS, np.int64), msg]),
            "snapshot": np.concatenate([np.ones(2 * SNAPSHOT_LEVELS, bool), np.zeros(n, bool)]),
            "side": pl.Series(np.concatenate([snap_ask, ask])).replace_strict({False: "bid", True: "ask"}),
            "price": np.concatenate([snap_ticks, ticks]) / 10,
            "size": np.concatenate([rng.integers(1, 10_000, 2 * SNAPSHOT_LEVELS) / 1_000, size]),
        }
    )


def run_gold(book: pl.DataFrame) -> tuple[float, pl.DataFrame]:
    from crypto_lakehouse.transform.book import book_snapshots

    book_snapshots(book.head(5_000), every=timedelta(seconds=1), depth=DEPTH)  # (imports on first use: not timed)
    t0 = time.perf_counter()
    snaps = book_snapshots(book, every=timedelta(seconds=1), depth=DEPTH, kinds={"BENCH": "per_update"})
    return time.perf_counter() - t0, snaps


def run_cryptofeed(book: pl.DataFrame) -> tuple[float, dict[int, tuple]]:
    """cryptofeed's C book fed level by level in order (removal as cryptofeed does it: ``del``
    where the level exists); its top levels read at the end of each second. The loop is the
    leanest per-update one: per window, a plain loop over that window's levels."""
    from order_book import OrderBook

    ob = OrderBook()
    bids, asks = ob.bids, ob.asks
    window = book.get_column("ts").dt.truncate("1s").dt.epoch("s").to_numpy()
    bounds = np.flatnonzero(np.diff(window)) + 1
    starts, ends = np.concatenate([[0], bounds]).tolist(), np.concatenate([bounds, [len(window)]]).tolist()
    is_ask = (book.get_column("side") == "ask").to_numpy()
    price, size = book.get_column("price").to_numpy(), book.get_column("size").to_numpy()
    tops: dict[int, tuple] = {}
    spent = 0.0
    for lo, hi in zip(starts, ends, strict=True):  # (lists per window: the conversion is not timed)
        levels = list(zip(is_ask[lo:hi].tolist(), price[lo:hi].tolist(), size[lo:hi].tolist(), strict=True))
        t0 = time.perf_counter()
        for side_ask, px, qty in levels:
            side = asks if side_ask else bids
            if qty == 0.0:
                if px in side:
                    del side[px]
            else:
                side[px] = qty
        top = (
            [bids.index(i) for i in range(min(DEPTH, len(bids)))],
            [asks.index(i) for i in range(min(DEPTH, len(asks)))],
        )
        spent += time.perf_counter() - t0
        tops[int(window[lo])] = top
    return spent, tops


def _check(snaps: pl.DataFrame, tops: dict[int, tuple]) -> int:
    """Windows where gold's snapshot differs from the C book's (gold emits only changed windows:
    each is compared with the C book's same window)."""
    bad = 0
    for r in snaps.iter_rows(named=True):
        bids, asks = tops[int(r["window_start"].timestamp())]
        if bids != list(zip(r["bid_prices"], r["bid_sizes"], strict=True)) or asks != list(
            zip(r["ask_prices"], r["ask_sizes"], strict=True)
        ):
            bad += 1
    return bad


def main() -> None:
    ap = argparse.ArgumentParser(description="book rebuild benchmark")
    ap.add_argument("--updates", type=int, default=20_000_000, help="level updates after the snapshot")
    ap.add_argument("--levels", type=int, default=10, help="level updates per message")
    ap.add_argument("--rate", type=float, default=1_000.0, help="level updates per second of exchange time")
    args = ap.parse_args()
    t0 = time.perf_counter()
    book = generate(args.updates, levels=args.levels, rate=args.rate)
    print(f"generated {book.height:,} rows in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    gold_s, snaps = run_gold(book)
    rss_gold = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    cf_s, tops = run_cryptofeed(book)
    bad = _check(snaps, tops)
    n = book.height
    print(
        f"gold {gold_s:.2f} s ({n / gold_s:,.0f} updates/s, {snaps.height:,} snapshots emitted of {len(tops):,} "
        f"windows), cryptofeed C book {cf_s:.2f} s ({n / cf_s:,.0f} updates/s); windows differing: {bad}; "
        f"peak RSS after gold {rss_gold:,.0f} MB",
        file=sys.stderr,
    )
    if bad:
        raise SystemExit(f"{bad} snapshots differ from the C book's")
    print(
        json.dumps(
            {
                "updates": n,
                "gold_updates_per_s": round(n / gold_s),
                "cryptofeed_updates_per_s": round(n / cf_s),
                "ratio": round(cf_s / gold_s, 3),
                "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
            }
        )
    )


if __name__ == "__main__":
    main()
