"""The venue registry covers exactly cryptofeed's exchanges, with valid kinds; ``lakehouse venues``
prints it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import get_args

from cryptofeed.exchanges import EXCHANGE_MAP
from typer.testing import CliRunner

from crypto_lakehouse.cli import app
from crypto_lakehouse.venues.registry import PUBLIC_CHANNELS, RENAMED, VENUES, BookSequence, Paging, TradeIds


def test_the_registry_covers_exactly_cryptofeeds_exchanges() -> None:
    assert set(VENUES) == set(EXCHANGE_MAP)
    assert all(new in VENUES for new in RENAMED.values())


def test_every_literal_is_a_valid_kind() -> None:
    for v in VENUES.values():
        assert v.trade_ids in get_args(TradeIds), v.exchange
        assert v.book_sequence in get_args(BookSequence), v.exchange
        assert v.ccxt_paging in get_args(Paging), v.exchange
        assert v.kind in ("spot", "linear", "inverse", "derivatives", "mixed"), v.exchange
        assert v.evidence, v.exchange
        assert set(v.offered_channels) <= set(PUBLIC_CHANNELS)
        assert v.can_backfill == (v.ccxt_id is not None and v.ccxt_paging not in ("latest_only", "none"))


def test_lakehouse_venues_prints_the_registry_as_a_table_and_as_json() -> None:
    runner = CliRunner()
    table = runner.invoke(app, ["venues"])
    assert table.exit_code == 0, table.output
    assert "KRAKEN_FUTURES" in table.output and "per_update" in table.output
    got = runner.invoke(app, ["venues", "--json"])
    assert got.exit_code == 0, got.output
    rows = {r["venue"]: r for r in json.loads(got.output)}
    assert set(rows) == set(VENUES)
    assert rows["BYBIT"] | {"evidence": ""} == {
        "venue": "BYBIT",
        "kind": "derivatives",
        "channels": rows["BYBIT"]["channels"],
        "trade_ids": "opaque",
        "book_sequence": "per_update",
        "ccxt": "bybit",
        "paging": "latest_only",
        "backfill": "no",
        "evidence": "",
    }
    assert "trades" in rows["BYBIT"]["channels"].split(",")


def test_docs_venues_lists_every_venue_as_the_registry_has_it() -> None:
    docs = (Path(__file__).resolve().parents[2] / "docs" / "venues.md").read_text()
    rows = [r for line in docs.splitlines() if line.startswith("| `") and len(r := line.split(" | ")) == 8]
    documented = {r[0].strip("| `"): r[1:7] for r in rows}
    assert documented == {
        v.exchange: [
            v.kind,
            v.trade_ids,
            v.book_sequence,
            v.ccxt_id or "-",
            v.ccxt_paging,
            "yes" if v.can_backfill else "no",
        ]
        for v in VENUES.values()
    }
