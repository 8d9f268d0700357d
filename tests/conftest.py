from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT.parent / "shared" / "data" / "cryptofeed-samples"


@pytest.fixture(scope="session")
def samples() -> Path:
    """The recorded real Binance sessions shipped beside the repository (read-only)."""
    if not (SAMPLES / "BINANCE_FUTURES.0").is_file():
        pytest.fail(f"recorded sessions not found at {SAMPLES}: clone the project with ../shared beside it")
    return SAMPLES
