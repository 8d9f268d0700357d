"""The capture replay server (``loopback.capture``) drives the unmodified cryptofeed 3.0.1
handler of every recorded venue to cryptofeed's own expected callback counts."""

from __future__ import annotations

import asyncio
import json
import time
import urllib.request
from pathlib import Path

import pytest
from cryptofeed.connection import connection_stats

from crypto_lakehouse.errors import LakehouseError
from crypto_lakehouse.loopback.capture import CaptureExchange, is_capture, load_capture
from crypto_lakehouse.loopback.replay import capture_subscription
from crypto_lakehouse.venues.clients import feed_class, run_feeds
from tests.ingest.test_captures import VENUES, expected_callbacks
from tests.loopback.helpers import Collected


async def _drive(path: Path) -> tuple[Collected, CaptureExchange]:
    cap = load_capture(path)
    got = Collected()
    started = time.time()  # connections of earlier tests in this process do not count
    async with CaptureExchange(cap) as ex:
        cls = feed_class(cap.exchange, ws_url=ex.ws_url, rest_url=ex.rest_url, cert_pem=ex.cert_pem, host_in_path=True)
        sub = capture_subscription(cap)
        extra = {"candle_interval": cap.candle_interval} if cap.candle_interval else {}
        feed = cls(subscription=sub, callbacks=got.callbacks(list(sub)), candle_closed_only=False, **extra)
        stop = asyncio.Event()
        task = asyncio.create_task(run_feeds([feed], stop=stop))
        await asyncio.wait_for(ex.finished.wait(), 60)
        for _ in range(200):  # every frame sent has reached the handler
            received = sum(s.received for s in connection_stats(cap.exchange, since=started).values())
            if received >= ex.stats.messages_sent:
                break
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.2)
        stop.set()
        await task
    return got, ex


@pytest.fixture(scope="module")
def driven(captures: Path) -> dict[str, tuple[Collected, CaptureExchange]]:
    async def all_of_them() -> list[tuple[Collected, CaptureExchange]]:
        return await asyncio.gather(*(_drive(captures / f"{n}.jsonl.zst") for n in VENUES))

    return dict(zip(VENUES, asyncio.run(all_of_them()), strict=True))


@pytest.mark.slow
@pytest.mark.parametrize("name", VENUES)
def test_every_venue_reaches_cryptofeeds_expected_counts(
    driven: dict[str, tuple[Collected, CaptureExchange]], captures: Path, name: str
) -> None:
    got, ex = driven[name]
    assert dict(got.counts) == expected_callbacks(captures, name)
    assert ex.finished.is_set()
    assert ex.stats.messages_sent == len(ex.capture.frames)  # every recorded frame, once


def test_a_client_split_differently_from_the_recording_still_gets_every_frame(
    driven: dict[str, tuple[Collected, CaptureExchange]],
) -> None:
    """Binance futures (/public + /market) and Bitfinex (20 subscriptions per connection) open
    two connections where one was recorded: the first gets every frame, the second none."""
    for name in ("BINANCE_FUTURES", "BITFINEX"):
        _, ex = driven[name]
        assert (ex.stats.connections_opened, ex.stats.connections_unmatched) == (2, 1)
    _, bybit = driven["BYBIT"]  # linear and spot, as recorded
    assert (bybit.stats.connections_opened, bybit.stats.connections_unmatched) == (2, 0)


def test_htx_frames_are_binary_gzip(captures: Path) -> None:
    cap = load_capture(captures / "HUOBI.jsonl.zst")
    assert cap.exchange == "HTX" and cap.recorded_exchange == "HUOBI"  # the renamed id, mapped
    assert all(f.binary and f.payload[:2] == b"\x1f\x8b" for f in cap.frames)
    assert json.loads(cap.frames[0].text())


def test_rest_answers_by_url_in_tiers(captures: Path) -> None:
    cap = load_capture(captures / "BINANCE.jsonl.zst")
    nkn = cap.rest_answer("/api/v3/depth", [("symbol", "NKNUSDT"), ("limit", "5000")])  # recorded limit=1000
    blz = cap.rest_answer("/api/v3/depth", [("symbol", "BLZETH"), ("limit", "1000")])
    assert nkn and blz and nkn != blz
    assert cap.rest_answer("/api/v3/nothing/like/it", []) is None
    bitfinex = load_capture(captures / "BITFINEX.jsonl.zst")  # 3.0.1 asks :futures, :future was recorded
    assert bitfinex.rest_answer("/v2/conf/pub:list:pair:futures", []) is not None


def test_the_server_answers_rest_with_the_live_host_in_the_path_and_404_otherwise(captures: Path) -> None:
    async def run() -> tuple[int, dict[str, object], int]:
        async with CaptureExchange(captures / "OKX.jsonl.zst") as ex:
            base = ex.rest_url

            def get(url: str) -> tuple[int, bytes]:
                try:
                    with urllib.request.urlopen(url, timeout=10) as r:
                        return r.status, r.read()
                except urllib.error.HTTPError as exc:
                    return exc.code, b""

            ok, _ = await asyncio.to_thread(get, base + "/www.okx.com/api/v5/public/instruments?instType=SWAP")
            _, status = await asyncio.to_thread(get, base + "/_loopback/status")
            missing, _ = await asyncio.to_thread(get, base + "/www.okx.com/api/v5/public/underlying?instType=OPTION")
            return ok, json.loads(status), missing

    ok, status, missing = asyncio.run(run())
    assert (ok, missing) == (200, 404)
    assert status["exchange"] == "OKX" and status["mode"] == "capture"


def test_a_missing_capture_names_the_ones_there(captures: Path) -> None:
    assert is_capture(captures / "OKX.jsonl.zst") and not is_capture(captures / "OKX")
    with pytest.raises(LakehouseError, match="BINANCE.jsonl.zst"):
        load_capture(captures / "NOPE.jsonl.zst")
