"""What ``lakehouse stream`` subscribes to: any cryptofeed venue, and a ``streams:`` list of
several venues in one process (pure: no connection is made)."""

from __future__ import annotations

from pathlib import Path

import pytest

from crypto_lakehouse.config import Settings, load_settings
from crypto_lakehouse.errors import ConfigError, InvalidArgument
from crypto_lakehouse.ingest.stream import stream_targets
from crypto_lakehouse.venues import VENUES

STREAMS = """
stream:
  streams:
    - exchange: COINBASE
      symbols: [BTC-USD, ETH-USD]
      channels: [trades, l2_book]
    - exchange: okx
      symbols: BTC-USDT-PERP
    - exchange: GATEIO
      symbols: [BTC-USDT]
      channels: [trades]
"""


def _settings(tmp_path: Path, text: str) -> Settings:
    cfg = tmp_path / "lakehouse.yaml"
    cfg.write_text(text)
    return load_settings(cfg)


def test_a_streams_list_is_one_target_per_venue_with_its_own_symbols_and_channels(tmp_path: Path) -> None:
    targets = stream_targets(_settings(tmp_path, STREAMS))
    assert [(t.exchange, t.symbols, t.channels) for t in targets] == [
        ("COINBASE", ["BTC-USD", "ETH-USD"], ["trades", "l2_book"]),
        # no channels: the venue's defaults (every public channel it offers but REST-polled ones)
        ("OKX", ["BTC-USDT-PERP"], VENUES["OKX"].channels),
        ("GATE", ["BTC-USDT"], ["trades"]),  # the recording-era id GATEIO is today's GATE
    ]
    # the live venues' own addresses: nothing pointed elsewhere
    assert all(t.ws_url is None and t.rest_url is None for t in targets)


def test_command_line_exchanges_replace_the_streams_list(tmp_path: Path) -> None:
    settings = _settings(tmp_path, STREAMS)
    targets = stream_targets(settings, exchanges=["kraken_futures"], symbols=["BTC-USD-PERP"], channels=["trades"])
    assert [(t.exchange, t.symbols, t.channels) for t in targets] == [("KRAKEN_FUTURES", ["BTC-USD-PERP"], ["trades"])]
    # symbols/channels alone narrow every entry of the list
    narrowed = stream_targets(settings, channels=["trades"])
    assert [t.channels for t in narrowed] == [["trades"]] * 3


@pytest.mark.parametrize("exchange", sorted(VENUES))
def test_every_cryptofeed_venue_can_be_streamed_from_its_live_endpoints(tmp_path: Path, exchange: str) -> None:
    (target,) = stream_targets(load_settings(root=str(tmp_path)), exchanges=[exchange.lower()], symbols=["X-Y"])
    assert target.exchange == exchange and target.ws_url is None


def test_an_unknown_exchange_names_every_venue(tmp_path: Path) -> None:
    with pytest.raises(InvalidArgument, match="unknown exchange 'NOPE': choose from BINANCE, .*COINBASE.*OKX"):
        stream_targets(_settings(tmp_path, "stream:\n  streams:\n    - {exchange: NOPE, symbols: [A-B]}\n"))


def test_a_streams_entry_without_symbols_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="symbols"):
        _settings(tmp_path, "stream:\n  streams:\n    - {exchange: OKX, symbols: []}\n")


def test_a_venue_whose_rest_cannot_be_reached_fails_in_one_line_naming_it(tmp_path: Path) -> None:
    """Not the storage's error (the CLI reports other OSErrors as storage trouble): the venue and
    the address its symbols were to come from."""
    import asyncio

    from crypto_lakehouse.errors import LakehouseError
    from crypto_lakehouse.ingest import BronzeWriter, FeedTarget, stream_to_bronze
    from crypto_lakehouse.storage import Catalog

    closed = "http://127.0.0.1:9"  # nothing listens on the discard port
    target = FeedTarget("OKX", ["BTC-USDT-PERP"], ["trades"], ws_url="wss://127.0.0.1:9", rest_url=closed)
    writer = BronzeWriter(Catalog(tmp_path), writer_id="w", spool_dir=tmp_path / "spool")
    with pytest.raises(LakehouseError, match=rf"^OKX: cannot load its symbols from {closed}: .*127\.0\.0\.1:9"):
        asyncio.run(stream_to_bronze([target], writer, stop=asyncio.Event(), sessions=False))
