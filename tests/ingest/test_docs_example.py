"""docs/cryptofeed.md's example runs as written: the user's script, cryptofeed's blocking
``fh.run()`` stopped by Ctrl-C (SIGINT), against a loopback exchange; bronze then holds exactly
the market's trades."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import polars as pl

from crypto_lakehouse.loopback import MarketSpec, running_exchange

ROOT = Path(__file__).resolve().parents[2]


def _example() -> str:
    """The ``my_feedhandler.py`` block of docs/cryptofeed.md."""
    blocks = re.findall(r"```python\n(.*?)```", (ROOT / "docs" / "cryptofeed.md").read_text(), re.S)
    [script] = [b for b in blocks if b.startswith("# my_feedhandler.py")]
    return script


def test_the_docs_feedhandler_example_stops_on_ctrl_c_with_every_trade_committed(tmp_path: Path) -> None:
    script = tmp_path / "my_feedhandler.py"
    script.write_text(_example())
    spec = MarketSpec(exchange="BINANCE_FUTURES", symbols=["BTCUSDT", "ETHUSDT"], rate=4_000, max_trades=2_000)
    with running_exchange(market=spec) as ex:
        proc = subprocess.Popen(
            [sys.executable, str(script), ex.rest_url],
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            assert ex.wait_finished(60), "the market did not play out"
            time.sleep(1.0)  # the last frames reach the handler (same host, a few ms)
            proc.send_signal(signal.SIGINT)  # Ctrl-C, once
            out, err = proc.communicate(timeout=60)
        finally:
            proc.kill()
        tapes = {sym: ex.market.tape(sym) for sym in spec.symbols}
    assert proc.returncode == 0, err[-3000:]
    assert out.strip().splitlines()[-1] == "my callback saw 4000 trades; bronze.trades committed 4000"
    trades = pl.read_delta(str(tmp_path / "lakehouse_data" / "bronze" / "trades"))
    for sym, std in (("BTCUSDT", "BTC-USDT-PERP"), ("ETHUSDT", "ETH-USDT-PERP")):
        tape = tapes[sym]
        ids = trades.filter(pl.col("symbol") == std)["id"].cast(pl.Int64).sort().to_list()
        assert ids == list(range(tape.first_id, tape.first_id + len(tape)))
    assert pl.read_delta(str(tmp_path / "lakehouse_data" / "bronze" / "book")).height > 0
    assert pl.read_delta(str(tmp_path / "lakehouse_data" / "bronze" / "ticker")).height > 0
