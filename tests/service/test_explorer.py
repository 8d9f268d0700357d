"""The explorer page (``/explorer/``) in headless Chromium (Debian's ``/usr/bin/chromium``, driven
by Playwright; ``make setup`` installs it): a lakehouse of three venues over three days built with
the real jobs, a real uvicorn server, a reader key. A wrong key is refused with the 401 message;
signed in, the page lists the tables and venues, draws the completeness grid the ledger holds,
draws the gold bars of the symbol and interval picked, and runs SQL typed in its console.

``LAKEHOUSE_EXPLORER_SCREENSHOT=docs/explorer.png`` also writes a screenshot of the page there
(the one in docs/service.md)."""

from __future__ import annotations

import os
import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest
from fastapi.testclient import TestClient
from playwright.sync_api import BrowserContext, Page, expect, sync_playwright

from crypto_lakehouse import jobs
from crypto_lakehouse.schemas import SESSIONS
from crypto_lakehouse.service import create_app
from crypto_lakehouse.service.keys import create_key
from crypto_lakehouse.storage import Catalog
from tests.service.conftest import Running, settings_for
from tests.transform.helpers import write_bronze

pytestmark = pytest.mark.slow

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
TODAY = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
DAYS = [TODAY - timedelta(days=d) for d in (3, 2, 1)]  # the three days before today (UTC)
SERIES = {  # venue -> symbols -> starting price
    "BINANCE": {"BTC-USDT": 91_000.0, "ETH-USDT": 3_050.0},
    "BINANCE_FUTURES": {"BTC-USDT-PERP": 91_020.0, "ETH-USDT-PERP": 3_051.0},
    "BYBIT": {"BTC-USDT-PERP": 91_010.0},
}
TRADE_EVERY = timedelta(seconds=20)
HOURS = 2  # trades from 00:00 to 02:00 of each day


def _lost(venue: str, day: int, k: int) -> bool:
    """Trades the venue never delivered (their ids are skipped): the ledger scores those days below 1."""
    if venue == "BINANCE" and day == 1:
        return k % 10 == 0
    return venue == "BINANCE_FUTURES" and day == 2 and 100 <= k < 200


def _bronze_trades() -> list[dict]:
    """A random walk per series; contiguous ids on the Binance venues (with holes), opaque on Bybit."""
    rng = random.Random(17)
    rows = []
    per_day = int(timedelta(hours=HOURS) / TRADE_EVERY)
    for venue, symbols in SERIES.items():
        for symbol, price in symbols.items():
            next_id = 1
            for d, day in enumerate(DAYS):
                for k in range(per_day):
                    price *= 1 + rng.gauss(0, 0.0008)
                    trade_id, next_id = next_id, next_id + 1
                    if _lost(venue, d, k):
                        continue
                    ts = day + k * TRADE_EVERY + timedelta(milliseconds=rng.randrange(1000))
                    rows.append(
                        {
                            "exchange": venue,
                            "symbol": symbol,
                            "ts": ts,
                            "receipt_ts": ts + timedelta(milliseconds=5),
                            "id": str(trade_id) if venue != "BYBIT" else f"b{rng.getrandbits(48):x}",
                            "side": rng.choice(("buy", "sell")),
                            "price": f"{price:.2f}",
                            "amount": f"{rng.uniform(0.001, 0.5):.4f}",
                        }
                    )
    return rows


def _bybit_session(catalog: Catalog) -> None:
    """A Bybit writer session streaming trades since the first day, alive now: its days are proven
    covered (the ledger's ``complete`` when nothing else is missing; today's in progress)."""
    common = {"exchange": "BYBIT", "writer_id": "w", "session_id": "s1", "symbols": ["BTC-USDT-PERP"]}
    rows = [
        {**common, "event": event, "at": at, "channels": ["trades"], "reason": None, "rest_url": None}
        for event, at in (("start", DAYS[0]), ("alive", datetime.now(UTC) - timedelta(seconds=1)))
    ]
    catalog.append(SESSIONS.name, pl.DataFrame(rows).select(SESSIONS.schema.names).to_arrow().cast(SESSIONS.schema))


@pytest.fixture(scope="module")
def lake(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A root built by the real jobs (bronze -> silver with its completeness ledger -> gold) and a reader key."""
    root = tmp_path_factory.mktemp("explorer")
    settings = settings_for(root)
    write_bronze(Catalog(root), "bronze.trades", _bronze_trades())
    _bybit_session(Catalog(root))
    jobs.promote_silver(settings)
    jobs.promote_gold(settings)
    _, key = create_key(Catalog(root), role="reader", note="explorer test")
    return root, key


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrowserContext]:
    assert Path(CHROMIUM).exists(), "Debian's chromium is missing: `make setup` installs it (as root)"
    with sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            str(tmp_path_factory.mktemp("chromium-profile")),  # a fresh user-data dir
            executable_path=CHROMIUM,
            headless=True,
            args=ARGS,
            viewport={"width": 1360, "height": 1300},
        )
        yield context
        context.close()


def test_the_page_is_served_without_a_key_and_data_calls_still_need_one(lake: tuple[Path, str]) -> None:
    root, key = lake
    with TestClient(create_app(settings_for(root), audit=False)) as client:
        page = client.get("/")  # redirected to the page
        assert page.status_code == 200 and '<canvas id="chart"' in page.text
        for asset, media in (("explorer.js", "javascript"), ("explorer.css", "text/css")):
            r = client.get(f"/explorer/{asset}")
            assert r.status_code == 200 and media in r.headers["content-type"]
        assert client.get("/tables").status_code == 401
        assert "/explorer" not in client.get("/openapi.json").json()["paths"]
        metrics = client.get("/metrics", headers={"Authorization": f"Bearer {key}"}).text
        assert 'lakehouse_api_requests_total{method="GET",route="/explorer",status="200"} 3.0' in metrics


def _sign_in(page: Page, key: str) -> None:
    page.fill("#key", key)
    page.click("#login-form button[type=submit]")


def _drawn_pixels(page: Page) -> int:
    """Pixels of the chart canvas in the candles' colours (up or down)."""
    return page.evaluate(
        """() => {
            const c = document.getElementById('chart');
            const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
            const near = (i, r, g, b) => Math.abs(d[i] - r) + Math.abs(d[i + 1] - g) + Math.abs(d[i + 2] - b) < 12;
            let n = 0;
            for (let i = 0; i < d.length; i += 4) if (near(i, 38, 166, 154) || near(i, 239, 83, 80)) n++;
            return n;
        }"""
    )


def test_explorer_in_chromium(lake: tuple[Path, str], browser: BrowserContext) -> None:
    root, key = lake
    catalog = Catalog(root)
    bars = catalog.frame("gold.ohlcv").filter(pl.col("source") == "trades")
    ledger = catalog.frame("gold.completeness")
    trades = catalog.frame("silver.trades")

    with Running(settings_for(root)) as base:
        page = browser.new_page()
        page.goto(f"{base}/")
        expect(page.locator("#login")).to_be_visible()

        # a wrong key: the service's 401, shown on the sign-in form, nothing else shown
        _sign_in(page, "lhk_000000000000_" + "x" * 43)
        expect(page.locator("#login-error")).to_contain_text("401: a valid API key is needed")
        expect(page.locator("#explorer")).to_be_hidden()

        _sign_in(page, key)
        expect(page.locator("body")).to_have_attribute("data-loaded", "true", timeout=15_000)
        assert page.evaluate("sessionStorage.getItem('lakehouse.apiKey')") == key

        # tables and venues
        listed = page.locator("#tables tbody tr td:first-child").all_inner_texts()
        assert {"silver.trades", "gold.ohlcv", "gold.completeness"} <= set(listed)
        assert not any(t.startswith("meta.api_keys") for t in listed)
        assert page.locator("#venues tbody tr td:first-child").all_inner_texts() == sorted(SERIES)

        # the completeness grid: one cell per (venue, day) of the ledger, coloured by the worst
        # score of its streams, ringed when all are complete; days in between without a row are empty
        by_day = ledger.group_by("exchange", "date").agg(pl.col("score").min(), pl.col("complete").all())
        expected = {(r["exchange"], r["date"].isoformat()): r for r in by_day.iter_rows(named=True)}
        cells = page.locator("#grid .cell[data-score]")
        shown = {(c.get_attribute("data-venue"), c.get_attribute("data-day")): c for c in cells.all()}
        assert shown.keys() == expected.keys()
        for k, cell in shown.items():
            assert float(cell.get_attribute("data-score") or "nan") == pytest.approx(expected[k]["score"])
            assert cell.get_attribute("data-complete") == str(expected[k]["complete"]).lower()
        days = {day for _, day in expected}
        assert days == {d.date().isoformat() for d in (*DAYS, TODAY)}  # Bybit's session streams today too
        assert page.locator("#grid .cell.empty").count() == len(SERIES) * len(days) - len(expected) > 0
        assert {k for k, r in expected.items() if r["complete"]} == {("BYBIT", d.date().isoformat()) for d in DAYS}
        assert page.locator("#grid .cell.complete").count() == len(DAYS)
        assert min(r["score"] for r in expected.values()) < 1.0  # the lost trades show
        colours = {c.evaluate("e => getComputedStyle(e).backgroundColor") for c in cells.all()}
        assert len(colours) > 1

        # candles: pick a symbol, then an interval; the canvas draws the bars gold holds
        def bars_of(venue: str, symbol: str, interval: str) -> int:
            picked = bars.filter(
                (pl.col("exchange") == venue) & (pl.col("symbol") == symbol) & (pl.col("interval") == interval)
            )
            return min(picked.height, 240)

        page.select_option("#venue", "BINANCE")
        page.select_option("#symbol", "ETH-USDT")
        chart = page.locator("#chart")
        expect(chart).to_have_attribute("data-symbol", "ETH-USDT")
        expect(chart).to_have_attribute("data-interval", "1m")
        expect(chart).to_have_attribute("data-candles", str(bars_of("BINANCE", "ETH-USDT", "1m")))
        assert _drawn_pixels(page) > 240 * 4
        page.select_option("#interval", "1h")
        hourly = bars_of("BINANCE", "ETH-USDT", "1h")
        assert hourly == HOURS * len(DAYS)
        expect(chart).to_have_attribute("data-candles", str(hourly))
        expect(chart).to_have_attribute("data-interval", "1h")
        assert _drawn_pixels(page) > hourly * 50  # wide candles now

        # the SQL console runs with the caller's key and shows the rows; an error shows its message
        page.fill("#sql", "SELECT exchange, count(*) AS n FROM silver.trades GROUP BY exchange ORDER BY exchange")
        page.click("#run")
        expect(page.locator("#sql-status")).to_contain_text(f"{len(SERIES)} rows")
        counts = trades.group_by("exchange").len().sort("exchange")
        assert page.locator("#result thead th").all_inner_texts() == ["exchange", "n"]
        rows = [r.locator("td").all_inner_texts() for r in page.locator("#result tbody tr").all()]
        assert rows == [[e, str(n)] for e, n in counts.iter_rows()]
        page.fill("#sql", "SELECT * FROM read_csv('/etc/passwd')")
        page.click("#run")
        expect(page.locator("#sql-error")).to_contain_text("400: ")
        assert page.locator("#result tbody tr").count() == 0

        if target := os.environ.get("LAKEHOUSE_EXPLORER_SCREENSHOT"):
            page.fill(
                "#sql",
                "SELECT exchange, symbol, count(*) AS trades, min(ts) AS first, max(ts) AS last\n"
                "FROM silver.trades GROUP BY exchange, symbol ORDER BY exchange, symbol",
            )
            page.click("#run")
            expect(page.locator("#sql-status")).to_contain_text("5 rows")
            page.select_option("#interval", "1m")
            expect(chart).to_have_attribute("data-interval", "1m")
            page.screenshot(path=target, full_page=True)
        page.close()
