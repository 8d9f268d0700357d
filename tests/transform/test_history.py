"""The seam between transform and ingest: ``Backfiller`` (ingest, the real ccxt clients) is a
``VenueHistory`` (transform's protocol), method for method, parameter for parameter."""

from __future__ import annotations

import inspect

from crypto_lakehouse.config import Settings
from crypto_lakehouse.ingest.backfill import Backfiller, backfiller_from_settings
from crypto_lakehouse.transform.history import VenueHistory


def _methods(cls: type) -> dict[str, inspect.Signature]:
    return {
        name: inspect.signature(member)
        for name, member in vars(cls).items()
        if callable(member) and not name.startswith("_")
    }


def test_backfiller_implements_every_method_of_venue_history_with_its_parameters() -> None:
    wanted = _methods(VenueHistory)
    assert set(wanted) == {
        "trades_by_id",
        "trades_by_time",
        "candles",
        "funding",
        "latest_trade_id",
        "contiguous_trade_ids",
    }
    have = _methods(Backfiller)
    for name, signature in wanted.items():
        assert name in have, f"Backfiller lacks {name}"
        assert list(have[name].parameters) == list(signature.parameters), name
    history: VenueHistory = Backfiller()  # what a type checker checks
    assert history.contiguous_trade_ids("BINANCE_FUTURES")


def test_backfiller_from_settings_follows_the_backfill_switch_and_endpoints() -> None:
    on = backfiller_from_settings(Settings.model_validate({"silver": {"backfill_rest": {"binance": "http://x"}}}))
    assert isinstance(on, Backfiller) and on.rest_urls == {"BINANCE": "http://x"}
    assert backfiller_from_settings(Settings.model_validate({"silver": {"backfill": False}})) is None
