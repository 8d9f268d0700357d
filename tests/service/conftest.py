"""A small lakehouse built with the real jobs (bronze rows -> jobs.promote_silver ->
jobs.promote_gold), API keys of each role, and the service over it (FastAPI's TestClient, or a
real uvicorn server on a loopback port)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import uvicorn
from fastapi.testclient import TestClient

from crypto_lakehouse import jobs
from crypto_lakehouse.config import Settings, load_settings
from crypto_lakehouse.service import create_app
from crypto_lakehouse.service.keys import create_key
from crypto_lakehouse.storage import Catalog
from tests.transform.helpers import write_bronze

T0 = datetime(2026, 11, 20, tzinfo=UTC)
SYMBOLS = ("BTC-USDT-PERP", "ETH-USDT-PERP")
TRADES_PER_SYMBOL = 600  # 10 minutes, one trade a second


def settings_for(root: Path, **api: object) -> Settings:
    """Settings of ``root`` with ``api`` overriding ``api.limits`` keys (timeout_s, max_rows...)."""
    s = load_settings(root=str(root))
    if api:
        s = s.model_copy(update={"api": s.api.model_copy(update={"limits": s.api.limits.model_copy(update=api)})})
    s = s.model_copy(update={"silver": s.silver.model_copy(update={"backfill": False})})
    return s


def _bronze_trades() -> list[dict]:
    rows = []
    for j, symbol in enumerate(SYMBOLS):
        for k in range(TRADES_PER_SYMBOL):
            ts = T0 + timedelta(seconds=k)
            rows.append(
                {
                    "exchange": "BINANCE_FUTURES",
                    "symbol": symbol,
                    "ts": ts,
                    "receipt_ts": ts + timedelta(milliseconds=5),
                    "id": str(1 + k),
                    "side": "buy" if k % 2 else "sell",
                    "price": f"{100 + 10 * j + (k % 7) * 0.5:.1f}",
                    "amount": "0.25",
                }
            )
    return rows


@pytest.fixture(scope="package")
def lake_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("lake")
    settings = settings_for(root)
    write_bronze(Catalog(root), "bronze.trades", _bronze_trades())
    jobs.promote_silver(settings)
    jobs.promote_gold(settings)
    return root


@pytest.fixture(scope="package")
def keys(lake_root: Path) -> dict[str, str]:
    """One key per role (created once: argon2 hashing is slow by design)."""
    catalog = Catalog(lake_root)
    return {role: create_key(catalog, role=role, note=f"test {role}")[1] for role in ("reader", "operator", "admin")}


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture
def client(lake_root: Path, keys: dict[str, str]) -> Iterator[TestClient]:
    with TestClient(create_app(settings_for(lake_root))) as c:
        yield c


class Running:
    """A real uvicorn server on a loopback port, in a thread."""

    def __init__(self, settings: Settings) -> None:
        config = uvicorn.Config(create_app(settings), host="127.0.0.1", port=0, log_level="warning")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> str:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.02)
        port = self.server.servers[0].sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}"

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(10)
