"""``lakehouse venues``: the venue capability registry (docs/venues.md), as a table or JSON."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from crypto_lakehouse.cli._common import ConfigOpt, RootOpt, emit

if TYPE_CHECKING:
    import polars as pl

__all__ = ["registry_frame", "venues"]


def registry_frame(*, evidence: bool = False) -> pl.DataFrame:
    """One row per cryptofeed venue: what the lakehouse may assume of it (``evidence``: and why)."""
    import polars as pl

    from crypto_lakehouse.venues import VENUES

    rows = [
        {
            "venue": v.exchange,
            "kind": v.kind,
            "channels": ",".join(v.offered_channels),
            "trade_ids": v.trade_ids,
            "book_sequence": v.book_sequence,
            "ccxt": v.ccxt_id or "-",
            "paging": v.ccxt_paging,
            "backfill": "yes" if v.can_backfill else "no",
            **({"evidence": v.evidence} if evidence else {}),
        }
        for v in VENUES.values()
    ]
    return pl.DataFrame(rows)


def venues(
    as_json: Annotated[bool, typer.Option("--json", help="JSON (one object per venue, with the evidence).")] = False,
    config: ConfigOpt = None,
    root: RootOpt = None,
) -> None:
    """Every cryptofeed venue and what silver may assume of it: trade ids, book sequence, ccxt paging, backfill."""
    emit(registry_frame(evidence=as_json), "json" if as_json else "table", None)
