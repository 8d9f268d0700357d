"""The compiled parts of the stream's hot path: whether they are built, and making the callbacks.

The package's build compiles two modules with Cython where a C compiler is found
(``pyproject.toml``: optional extensions): ``_callbacks.pyx``, the busy channels' callbacks
(made here), and ``_columns.pyx``, the gathering of buffered column lists into Arrow (used by
:func:`.rows.convert_column`). Where none is, the package installs without them, :data:`BUILT`
is False, and the Python code, which makes the same rows, runs instead
(``tests/ingest/test_compiled.py`` holds the two to each other). What they are for:
docs/bronze.md (the event loop's time a message).
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from cryptofeed.defines import L2_BOOK, TICKER, TRADES

from crypto_lakehouse.errors import InvalidArgument
from crypto_lakehouse.schemas import ROW_LAYOUT

if TYPE_CHECKING:
    from crypto_lakehouse.ingest.writer import BronzeWriter

__all__ = ["BUILT", "callbacks", "stale_layouts"]

LOG = logging.getLogger(__name__)

try:
    import crypto_lakehouse.ingest._callbacks as _ext
    import crypto_lakehouse.ingest._columns  # noqa: F401  # (rows.py uses it; here: is it built)

    BUILT = True
    """The compiled modules are importable (the package was built with a C compiler)."""
except ImportError:  # built without one
    BUILT = False


def stale_layouts() -> dict[str, tuple[str, ...]]:
    """Tables whose compiled callback was written for another row layout than
    ``schemas.ROW_LAYOUT`` has now (a module built from older source): table -> its layout."""
    if not BUILT:
        return {}
    classes = (_ext.TradeCallback, _ext.TickerCallback, _ext.BookDeltaCallback)
    return {c.TABLE: c.LAYOUT for c in classes if c.LAYOUT != ROW_LAYOUT[c.TABLE]}


def callbacks(
    writer: BronzeWriter, *, whole_book: Callable[[Any, float], None], updates: Iterator[int]
) -> dict[str, Callable[..., Any]]:
    """The compiled trades, ticker and L2 book callbacks putting rows into ``writer``'s buffers
    (cryptofeed awaits them as it awaits async callbacks). ``whole_book(book, receipt)`` buffers
    what the compiled book callback leaves to Python (snapshots, deltas with no level), and
    ``updates`` numbers book updates for both. A table whose compiled layout is stale is left out
    (its Python callback stays; logged). :class:`InvalidArgument` when the module is not built."""
    if not BUILT:
        raise InvalidArgument(
            "the compiled stream callbacks are not built (no C compiler when the package was installed): "
            "install gcc and run `make setup`, or use compiled=False"
        )
    stale = stale_layouts()
    if stale:
        LOG.warning("compiled callbacks built for an older row layout, not used for %s: rebuild (make setup)", stale)
    made: dict[str, Callable[..., Any]] = {}
    if "bronze.trades" not in stale:
        made[TRADES] = _ext.TradeCallback(writer.column_buffer("bronze.trades"))
    if "bronze.ticker" not in stale:
        made[TICKER] = _ext.TickerCallback(writer.column_buffer("bronze.ticker"), TICKER)
    if "bronze.book" not in stale:
        made[L2_BOOK] = _ext.BookDeltaCallback(writer.column_buffer("bronze.book"), whole_book, updates)
    return {channel: inspect.markcoroutinefunction(cb) for channel, cb in made.items()}
