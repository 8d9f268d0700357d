"""Sharded ingest end to end: four ``lakehouse stream --shard I/4`` processes split one config's
symbols of a synthetic market; every trade the exchange sent lands in bronze exactly once, under
the writer id of the shard that owns its symbol, with no failed commit; a shard with no symbol
says so and exits 0; a bad ``--shard`` is one line and exit code 2."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path

import polars as pl

from crypto_lakehouse.ingest.shards import shard_of
from crypto_lakehouse.loopback import MarketSpec, running_exchange
from tests.transform.helpers import LAKEHOUSE, lakehouse_stream

# exchange symbols of the synthetic market; over 4 shards they hash to 1, 2, 2 and 3 (checked below)
SYMBOLS = ["BTCUSDT", "ETHUSDT", "SOLUSDT", "BNBUSDT", "XRPUSDT", "DOGEUSDT", "ADAUSDT", "LTCUSDT"]
STD = [s.removesuffix("USDT") + "-USDT-PERP" for s in SYMBOLS]
TRADES = 1_500  # per symbol


def _bronze_trades(root: Path) -> int:
    uri = root / "bronze" / "trades"
    if not (uri / "_delta_log").is_dir():
        return 0
    return pl.scan_delta(str(uri)).select(pl.len()).collect().item()


def test_four_shards_land_every_trade_once_under_their_own_writer_ids(tmp_path: Path) -> None:
    root = tmp_path / "lake"
    owner = {s: shard_of("BINANCE_FUTURES", s, 4) for s in STD}
    assert sorted(set(owner.values())) == [0, 1, 2, 3], owner  # every shard has work
    spec = MarketSpec(exchange="BINANCE_FUTURES", symbols=SYMBOLS, first_id=1_000_000, rate=6_000, max_trades=TRADES)
    with running_exchange(market=spec) as ex:
        procs = [
            lakehouse_stream(ex, root, ",".join(STD), "--shard", f"{i}/4", LAKEHOUSE_WRITER__ID="sharded")
            for i in range(4)
        ]
        try:
            assert ex.wait_finished(90), "the market did not finish"
            sent = ex.status()["sent_by_channel"]["aggTrade"]
            deadline = time.monotonic() + 30
            while _bronze_trades(root) < sent and time.monotonic() < deadline:
                time.sleep(0.3)
        finally:
            for p in procs:
                p.send_signal(signal.SIGTERM)
            outs = [p.communicate(timeout=60) for p in procs]
    for p, (_, err) in zip(procs, outs, strict=True):
        assert p.returncode == 0 and "Traceback" not in err, err

    summaries = [json.loads(out.strip().splitlines()[-1]) for out, _ in outs]
    for i, s in enumerate(summaries):
        assert s["shard"] == f"{i}/4" and s["writer_id"] == f"sharded-shard-{i}-of-4"
        assert sorted(s["subscribed"]) == sorted(f"BINANCE_FUTURES:{x}" for x in STD if owner[x] == i)
        assert all(t["rows_spooled"] == 0 for t in s["tables"].values()), s  # no commit failed

    trades = pl.read_delta(str(root / "bronze" / "trades"))
    assert trades.height == sent  # every trade the exchange sent, once: nothing lost, nothing twice
    for k, sym in enumerate(STD):
        rows = trades.filter(pl.col("symbol") == sym)
        ids = rows["id"].cast(pl.Int64).sort().to_list()
        last = 1_000_000 * (k + 1) + TRADES - 1
        assert ids == list(range(ids[0], last + 1)), sym  # unique, and contiguous up to the market's last trade
        assert rows["writer_id"].unique().to_list() == [f"sharded-shard-{owner[sym]}-of-4"], sym
    assert not list((root.parent).glob("**/*.arrow"))  # nothing waits in a spool


def test_a_shard_with_nothing_to_stream_says_so_and_exits_0(tmp_path: Path) -> None:
    spec = MarketSpec(exchange="BINANCE_FUTURES", symbols=["BTCUSDT"], first_id=1_000_000, rate=100)
    empty = next(i for i in range(4) if i != shard_of("BINANCE_FUTURES", "BTC-USDT-PERP", 4))
    with running_exchange(market=spec) as ex:
        proc = lakehouse_stream(ex, tmp_path / "lake", "BTC-USDT-PERP", "--shard", f"{empty}/4")
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert f"shard {empty}/4 has nothing to stream" in err and "Traceback" not in err
    result = json.loads(out.strip().splitlines()[-1])
    assert result["subscribed"] == [] and result["tables"] == {} and result["shard"] == f"{empty}/4"
    assert not (tmp_path / "lake").exists()  # nothing written, not even a session


def test_a_bad_shard_is_one_line_and_exit_2(tmp_path: Path) -> None:
    """(Checked before any exchange is asked: no endpoint needed. Every bad form: test_shards.py.)"""
    res = subprocess.run(
        [*LAKEHOUSE, "stream", "--root", str(tmp_path / "lake"), "--shard", "4/4", "--no-progress"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert res.returncode == 2, res.stderr
    assert res.stderr.strip().splitlines() == [
        "error: --shard: shard '4/4' does not exist: of N shards, I is 0 to N-1 (e.g. 0/4, 1/4, 2/4, 3/4)"
    ]
