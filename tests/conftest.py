from __future__ import annotations

import os
from pathlib import Path

import pytest

# Prefect offline and quiet: no telemetry lookups (no network here), a patient ephemeral server
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "90")
# each root's local state (spools, writer locks, live registry, cryptofeed log) under one
# directory of this run, inherited by the CLI processes tests start; not the user's home
if "LAKEHOUSE_STATE_DIR" not in os.environ:
    import tempfile

    os.environ["LAKEHOUSE_STATE_DIR"] = tempfile.mkdtemp(prefix="lakehouse-state-")

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT.parent / "shared" / "data" / "cryptofeed-samples"
CAPTURES = ROOT.parent / "shared" / "data" / "cryptofeed-captures"


@pytest.fixture(scope="session")
def samples() -> Path:
    """The recorded real Binance sessions shipped beside the repository (read-only)."""
    if not (SAMPLES / "BINANCE_FUTURES.0").is_file():
        pytest.fail(f"recorded sessions not found at {SAMPLES}: clone the project with ../shared beside it")
    return SAMPLES


@pytest.fixture(scope="session")
def captures() -> Path:
    """The recorded sessions of 11 venues (``NAME.jsonl.zst``) shipped beside the repository (read-only)."""
    if not (CAPTURES / "expected_counts.json").is_file():
        pytest.fail(f"captures not found at {CAPTURES}: clone the project with ../shared beside it")
    return CAPTURES
