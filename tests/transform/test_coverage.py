"""Coverage gaps: time no streaming session covered is a gap, at the head, between and at the tail."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl

from crypto_lakehouse.ingest.backfill import Backfiller
from crypto_lakehouse.loopback import LoopbackExchange, MarketSpec, running_exchange
from crypto_lakehouse.schemas import SESSIONS
from crypto_lakehouse.storage import Catalog
from crypto_lakehouse.transform.gaps import coverage_gaps
from crypto_lakehouse.transform.silver import SilverOptions, promote_silver

T0 = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)


def _events(*rows: tuple[str, str, int, str | None], symbols: tuple[str, ...] = ("BTC-USDT",)) -> pl.DataFrame:
    """(session, event, minutes after T0, reason) -> bronze.sessions rows."""
    return pl.from_arrow(
        SESSIONS.schema.empty_table().from_pylist(
            [
                {
                    "exchange": "BINANCE",
                    "writer_id": f"w-{sid}",
                    "session_id": sid,
                    "event": event,
                    "at": T0 + timedelta(minutes=m),
                    "symbols": list(symbols),
                    "channels": ["trades", "l2_book"],
                    "reason": why,
                }
                for sid, event, m, why in rows
            ],
            schema=SESSIONS.schema,
        )
    )


def _spans(gaps: pl.DataFrame) -> list[tuple[float, float]]:
    return [
        ((s - T0) / timedelta(minutes=1), (e - T0) / timedelta(minutes=1))
        for s, e in gaps.select("start", "end").iter_rows()
    ]


def test_a_running_session_leaves_no_gap() -> None:
    events = _events(("a", "start", 0, None), ("a", "alive", 1, None))
    assert coverage_gaps(events, now=T0 + timedelta(minutes=2)).is_empty()


def test_the_tail_after_a_clean_stop_is_a_gap_up_to_now() -> None:
    events = _events(("a", "start", 0, None), ("a", "alive", 1, None), ("a", "end", 2, "SIGTERM"))
    gaps = coverage_gaps(events, now=T0 + timedelta(minutes=10))
    assert _spans(gaps) == [(2, 10)]
    assert "stopped (SIGTERM)" in gaps["reason"][0]


def test_a_session_killed_before_any_heartbeat_covers_nothing_after_its_start() -> None:
    # killed before its first commit: only its start is in the ledger; a later session resumes
    events = _events(("a", "start", 0, None), ("b", "start", 7, None), ("b", "alive", 7.5, None))
    gaps = coverage_gaps(events, now=T0 + timedelta(minutes=8))
    assert _spans(gaps) == [(0, 7)]
    assert "went silent" in gaps["reason"][0]


def test_a_session_is_dead_once_its_writer_started_a_newer_one() -> None:
    events = _events(("a", "start", 0, None), ("a", "alive", 1, None), ("b", "start", 1.5, None))
    events = events.with_columns(pl.lit("w").alias("writer_id"))  # one writer, restarted
    gaps = coverage_gaps(events, now=T0 + timedelta(minutes=2), grace=timedelta(minutes=5))
    assert _spans(gaps) == [(1, 1.5)]


def test_a_silent_session_is_dead_after_the_grace_and_covers_up_to_its_last_heartbeat() -> None:
    events = _events(("a", "start", 0, None), ("a", "alive", 1, None))
    assert coverage_gaps(events, now=T0 + timedelta(minutes=2), grace=timedelta(minutes=5)).is_empty()
    assert _spans(coverage_gaps(events, now=T0 + timedelta(minutes=9), grace=timedelta(minutes=5))) == [(1, 9)]


def test_overlapping_sessions_and_backfilled_ranges_cover_each_other() -> None:
    events = _events(
        ("a", "start", 0, None), ("a", "end", 10, "done"),
        ("b", "start", 5, None), ("b", "end", 20, "done"),  # overlaps a: no gap between
        ("c", "start", 30, None), ("c", "end", 40, "done"),
    )  # fmt: skip
    now = T0 + timedelta(minutes=50)
    assert _spans(coverage_gaps(events, now=now)) == [(20, 30), (40, 50)]
    covered = pl.DataFrame(
        {"exchange": ["BINANCE"], "symbol": ["BTC-USDT"], "start": [T0 + timedelta(minutes=20)],
         "end": [T0 + timedelta(minutes=30)]}
    )  # fmt: skip
    assert _spans(coverage_gaps(events, now=now, covered=covered)) == [(40, 50)]


def test_sessions_without_trades_and_other_symbols_do_not_cover_a_symbol() -> None:
    events = _events(("a", "start", 0, None), ("a", "end", 5, "done"))
    eth = _events(("b", "start", 5, None), ("b", "alive", 9, None), symbols=("ETH-USDT",))
    gaps = coverage_gaps(pl.concat([events, eth]), now=T0 + timedelta(minutes=10))
    assert gaps.filter(symbol="BTC-USDT").pipe(_spans) == [(5, 10)]
    assert gaps.filter(symbol="ETH-USDT").is_empty()
    book_only = events.with_columns(pl.lit(["l2_book"]).alias("channels"))
    assert coverage_gaps(book_only, now=T0 + timedelta(minutes=10)).is_empty()


# ---------------------------------------------------------------------------- end to end
LAKEHOUSE = [sys.executable, "-m", "crypto_lakehouse.cli"]


def _stream(ex: LoopbackExchange, root: Path, *extra: str, **env: str) -> subprocess.Popen:
    """`lakehouse stream` of BTC-USDT trades from the loopback exchange, as a real process."""
    return subprocess.Popen(
        [*LAKEHOUSE, "stream", "--endpoint", ex.rest_url, "--root", str(root), "--symbols", "BTC-USDT",
         "--channels", "trades", "--no-progress", *extra],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=root.parent,
        env={**os.environ, "LAKEHOUSE_WRITER__ID": "proc", "LAKEHOUSE_WRITER__MAX_AGE": "200ms", **env},
    )  # fmt: skip


def _trade_gaps(root: Path) -> pl.DataFrame:
    gaps = pl.read_delta(str(root / "silver" / "gaps"))
    return gaps.filter((pl.col("table") == "silver.trades") & pl.col("first_id").is_null())


def test_a_writer_stopped_before_the_market_ended_leaves_a_tail_gap(tmp_path: Path) -> None:
    root = tmp_path / "lake"
    spec = MarketSpec(first_id=1_000_000, exchange="BINANCE", symbols=["BTCUSDT"], rate=1_500, max_trades=9_000)  # ~6 s
    with running_exchange(market=spec) as ex:
        proc = _stream(ex, root, "--duration", "2")  # stops while the market goes on
        assert proc.wait(60) == 0, proc.stderr.read() if proc.stderr else ""
        ex.wait_finished(60)
        catalog = Catalog(root)
        promote_silver(catalog, options=SilverOptions(backfill=False))
        gap = _trade_gaps(root).filter(status="open")
        assert gap.height == 1, "the tail no session covered is an open gap"
        assert "no session streaming since: writer proc stopped (stopped)" in gap["reason"][0]
        ended = pl.read_delta(str(root / "bronze" / "sessions")).filter(event="end")["at"][0]
        assert gap["start"][0] == ended
        silver = pl.read_delta(str(root / "silver" / "trades"))
        assert silver.height < 9_000  # the stream alone missed the end of the market

        result = promote_silver(
            catalog,
            backfiller=Backfiller({"BINANCE": ex.rest_url}, rate_limit_ms=5),
            options=SilverOptions(),
        )
    silver = pl.read_delta(str(root / "silver" / "trades")).sort("id")
    assert silver["id"].to_list() == list(range(1_000_000, 1_009_000))  # the venue's last id reached
    assert result.totals()["silver.trades"]["gaps_filled"] >= 1
    assert _trade_gaps(root).filter(status="open").is_empty()


def test_a_writer_killed_before_its_first_commit_leaves_a_head_gap(tmp_path: Path) -> None:
    root = tmp_path / "lake"
    spec = MarketSpec(first_id=1_000_000, exchange="BINANCE", symbols=["BTCUSDT"], rate=1_000, max_trades=8_000)  # ~8 s
    with running_exchange(market=spec) as ex:
        first = _stream(ex, root, LAKEHOUSE_WRITER__MAX_AGE="1h")
        ledger = root / "bronze" / "sessions" / "_delta_log" / "00000000000000000000.json"
        deadline = time.monotonic() + 60
        while not ledger.exists():
            assert time.monotonic() < deadline, "the session's start was not recorded"
            time.sleep(0.05)
        time.sleep(1.5)  # it receives trades, but commits none...
        first.send_signal(signal.SIGKILL)
        first.communicate(timeout=30)
        assert not (root / "bronze" / "trades").exists()  # ...so the ledger is its only trace
        time.sleep(1.0)
        second = _stream(ex, root, "--duration", "2")  # the same writer restarted
        assert second.wait(60) == 0
        ex.wait_finished(60)
        catalog = Catalog(root)
        promote_silver(catalog, options=SilverOptions(backfill=False))
        sessions = pl.read_delta(str(root / "bronze" / "sessions"))
        starts = sessions.filter(event="start").sort("at")
        assert starts["writer_id"].to_list() == ["proc", "proc"]
        gaps = _trade_gaps(root).filter(status="open").sort("start")
        head = gaps.row(0, named=True)
        assert (head["start"], head["end"]) == (starts["at"][0], starts["at"][1])
        assert "writer proc went silent" in head["reason"]

        promote_silver(
            catalog,
            backfiller=Backfiller({"BINANCE": ex.rest_url}, rate_limit_ms=5),
            options=SilverOptions(),
        )
        tape = ex.market.tape("BTCUSDT")
    silver = pl.read_delta(str(root / "silver" / "trades")).sort("id")
    ids = silver["id"].to_list()
    first_ms = int(starts["at"][0].timestamp() * 1000)
    first_id = tape.first_id + next(i for i, t in enumerate(tape.time_ms) if t >= first_ms)
    assert ids == list(range(ids[0], tape.last_id + 1))  # contiguous to the venue's last trade...
    assert ids[0] <= first_id  # ...from the first trade after the killed session started
    assert silver.filter(pl.col("id") < silver.filter(source="stream")["id"].min())["source"].unique().to_list() == [
        "backfill"
    ]
