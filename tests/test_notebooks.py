"""The notebooks in notebooks/ execute top to bottom (they are documentation that must stay true),
and say what they claim."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

import crypto_lakehouse

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))
PUBLIC_MODULES = {"crypto_lakehouse", "crypto_lakehouse.jobs"}  # and the `lakehouse` command


def _check_public_api(nb: nbformat.NotebookNode) -> None:
    """A notebook imports only the public API: ``crypto_lakehouse``'s ``__all__`` and ``jobs``."""
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        for m in re.finditer(r"^\s*(?:from\s+(\S+)\s+import\s+(.+)|import\s+(\S+))", cell.source, re.M):
            module = m.group(1) or m.group(3)
            if not module.startswith("crypto_lakehouse"):
                continue
            assert module in PUBLIC_MODULES, f"{m.group(0).strip()!r}: not the public API"
            if m.group(1) == "crypto_lakehouse":
                names = {n.strip() for n in m.group(2).split(",")}
                assert names <= {*crypto_lakehouse.__all__, "jobs"}, f"{m.group(0).strip()!r}: not the public API"


def _check_backtest(nb: nbformat.NotebookNode) -> None:
    """The last cell prints the figures as JSON: the strategy trades on the tagged data (a
    recording of 4,000 trades over ten minutes, none quarantined), the 1m chart has one bar per
    minute with trades and is an inline image, and the tag reads the same bars after more data."""
    last = next(c for c in reversed(nb.cells) if c.cell_type == "code")
    summary = json.loads("".join(o.get("text", "") for o in last.outputs).strip().splitlines()[-1])
    assert summary["trades"] == 4_000, summary
    assert summary["fills"] > 0, summary
    # ten minutes of trades ending at an arbitrary time touch 11 minute windows (10 if aligned)
    assert summary["bars_1m"] == summary["minutes_with_trades"] and summary["bars_1m"] in (10, 11), summary
    assert summary["tag_unchanged"] is True, summary
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    assert any("image/png" in o.get("data", {}) for o in outputs), "the candle chart is not shown inline"


CHECKS: dict[str, Callable[[nbformat.NotebookNode], None]] = {"backtest": _check_backtest}


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_executes(path: Path, tmp_path: Path) -> None:
    nb = nbformat.read(path, as_version=4)
    _check_public_api(nb)
    NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    if path.stem in CHECKS:
        CHECKS[path.stem](nb)


def test_there_is_a_notebook() -> None:
    assert NOTEBOOKS, "notebooks/ holds no notebook"
    assert set(CHECKS) <= {p.stem for p in NOTEBOOKS}, "a notebook with checks is gone"
