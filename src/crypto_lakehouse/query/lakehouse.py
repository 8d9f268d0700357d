"""The ``Lakehouse`` read API: Polars scans with pruning, DuckDB SQL, history, time travel by
version / time / tag, tags for reproducible backtests, and event-ordered replay."""

from __future__ import annotations

import functools
import logging
import operator
import re
import threading
from collections import OrderedDict
from collections.abc import Collection, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypedDict

import polars as pl
import pyarrow as pa

from crypto_lakehouse.config import Settings, load_settings
from crypto_lakehouse.durations import CandleInterval, candle_interval, parse_time, time_range
from crypto_lakehouse.errors import InvalidArgument, LakehouseError, TagNotFound, VersionNotFound
from crypto_lakehouse.schemas import (
    BRONZE,
    TABLE_NAMES,
    TABLES,
    TIME_COLUMN,
    TableName,
    TableSpec,
    table_name,
    table_spec,
)
from crypto_lakehouse.storage import Catalog
from crypto_lakehouse.storage.frames import to_frame

if TYPE_CHECKING:
    import dask.dataframe as dd
    import duckdb
    import pyarrow.dataset as pads
    from deltalake import DeltaTable

__all__ = ["AsOf", "Lakehouse"]

LOG = logging.getLogger(__name__)

_PINNED_KEPT = 16  # pinned versions a Lakehouse keeps loaded (see Lakehouse._open)

AsOf = int | datetime | str | None
"""A Delta version (int), a point in time (datetime or RFC 3339 string), or a tag name."""

# replay tie-break after exchange time: the order of `tables` given, then symbol, then these
_REPLAY_ORDER = {"trades": "id", "book": "sequence", "ticker": "sequence", "candles": "start"}


class _Filters(TypedDict):
    """What :meth:`Lakehouse.scan` and :meth:`Lakehouse.to_dask` filter on, resolved once by
    :func:`_resolved_filters` and passed on to :func:`_filtered`, :func:`_pruning` and ``_live``."""

    start: datetime | None
    end: datetime | None
    exchange: str | None
    symbols: Sequence[str] | None


def _resolved_filters(
    start: datetime | str | None, end: datetime | str | None, exchange: str | None, symbols: Sequence[str] | None
) -> _Filters:
    """The reads' arguments as stored values: times parsed (UTC; an empty range is an error),
    exchange and symbols upper case."""
    first, last = time_range(start, end)
    exchange, names = _normalised(exchange, symbols)
    return _Filters(start=first, end=last, exchange=exchange, symbols=names)


def _normalised(exchange: str | None, symbols: Sequence[str] | str | None) -> tuple[str | None, list[str] | None]:
    """The exchange and symbols as stored: upper case (``btc-usdt-perp`` is ``BTC-USDT-PERP``)."""
    if isinstance(symbols, str):  # one symbol, not its characters
        symbols = [symbols]
    return (
        None if exchange is None else exchange.strip().upper(),
        None if symbols is None else [s.strip().upper() for s in symbols],
    )


def _checked_columns(table: str, columns: Sequence[str] | None) -> TableSpec:
    """The spec of ``table``; a column it does not have is an error listing those it has."""
    spec = table_spec(table)
    unknown = set(columns or ()) - set(spec.schema.names)
    if unknown:
        raise LakehouseError(f"{table} has no column(s) {sorted(unknown)}; columns: {', '.join(spec.schema.names)}")
    return spec


def _filtered(lf: pl.LazyFrame, table: str, filters: _Filters) -> pl.LazyFrame:
    """The rows of ``lf`` (rows of ``table``) that ``filters`` select: the one definition of what
    a read's arguments mean, for :meth:`Lakehouse.scan`, its live rows and
    :meth:`Lakehouse.to_dask`'s partitions. ``start`` inclusive, ``end`` exclusive, on the
    table's time column; the ``date`` partition is filtered too, so it is pruned."""
    start, end, exchange, symbols = filters["start"], filters["end"], filters["exchange"], filters["symbols"]
    spec = table_spec(table)
    names = spec.schema.names
    if exchange is not None and "exchange" in names:
        lf = lf.filter(pl.col("exchange") == exchange.upper())
    if symbols is not None and "symbol" in names:
        lf = lf.filter(pl.col("symbol").is_in(list(symbols)))
    if start is not None:
        if "date" in spec.partition_by:
            lf = lf.filter(pl.col("date") >= start.date())
        lf = lf.filter(pl.col(TIME_COLUMN[table]) >= start)
    if end is not None:
        if "date" in spec.partition_by:
            lf = lf.filter(pl.col("date") <= end.date())
        lf = lf.filter(pl.col(TIME_COLUMN[table]) < end)
    return lf


class Lakehouse:
    """Read access to every table under one storage root.

    >>> lh = Lakehouse("./lakehouse_data")
    >>> lh.scan("silver.trades", symbols=["BTC-USDT-PERP"], start="2026-11-22T10:00:00Z").collect()
    """

    def __init__(self, root: str | Path | None = None, *, config: Settings | None = None):
        self.settings = config or load_settings()
        self.catalog = Catalog.from_settings(self.settings, root=root)
        self._latest: dict[str, DeltaTable] = {}  # the latest version of each table read, kept up to date
        self._pinned: OrderedDict[tuple[str, int], DeltaTable] = OrderedDict()  # versions read, most recent last
        self._cache_lock = threading.Lock()

    @classmethod
    def from_config(cls, path: str | Path) -> Lakehouse:
        return cls(config=load_settings(path))

    def __repr__(self) -> str:
        return f"Lakehouse({self.catalog.root!r})"

    # ------------------------------------------------------------------ catalog
    def tables(self) -> pl.DataFrame:
        """One row per existing table: ``table, uri, version, rows, files, bytes``."""
        rows = [self.catalog.summary(name) for name in TABLES if self.catalog.exists(name)]
        return pl.DataFrame(
            rows,
            schema={
                "table": pl.String,
                "exists": pl.Boolean,
                "uri": pl.String,
                "version": pl.Int64,
                "rows": pl.Int64,
                "files": pl.Int64,
                "bytes": pl.Int64,
            },
        ).drop("exists")

    def history(self, table: TableName) -> pl.DataFrame:
        """Commits of ``table``, newest first: version, timestamp (UTC), operation, parameters."""
        dt = self._open(table)
        rows = [
            {
                "version": h.get("version"),
                "timestamp": datetime.fromtimestamp(h["timestamp"] / 1000, UTC) if h.get("timestamp") else None,
                "operation": h.get("operation"),
                "parameters": str(h.get("operationParameters", "")),
            }
            for h in dt.history()
        ]
        return pl.DataFrame(
            rows,
            schema={
                "version": pl.Int64,
                "timestamp": pl.Datetime("us", "UTC"),
                "operation": pl.String,
                "parameters": pl.String,
            },
        )

    def version(self, table: TableName) -> int | None:
        """The latest Delta version of ``table`` (None: not created yet). Cheap to ask again:
        the loaded table is brought up to date incrementally (on local disk, one stat when
        nothing was committed)."""
        if table not in self._latest and not self.catalog.exists(table):
            return None
        return self._open(table).version()

    def _open(self, table: str, version: int | None = None) -> DeltaTable:
        """The Delta table (at ``version``), loaded once and reused: the latest is brought up to
        date incrementally (only new log entries are read), a pinned version never changes.
        The :data:`_PINNED_KEPT` pinned versions read last are kept (each holds its table's file
        list: a long-running service reading as of ever new times must not keep them all)."""
        table_spec(table)  # clear error for an unknown name
        if version is None:
            dt = self._latest.get(table)
            if dt is None:
                dt = self._latest[table] = self.catalog.open(table)
            elif not self._unchanged(table, dt.version()):
                dt.update_incremental()
            return dt
        with self._cache_lock:
            dt = self._pinned.get((table, version))
            if dt is not None:
                self._pinned.move_to_end((table, version))
                return dt
        dt = self.catalog.open(table, version=version)
        with self._cache_lock:
            self._pinned[(table, version)] = dt
            while len(self._pinned) > _PINNED_KEPT:
                self._pinned.popitem(last=False)
        return dt

    def _unchanged(self, table: str, version: int) -> bool:
        """On local disk, whether ``version`` is still the latest: Delta versions are contiguous,
        so no ``<version + 1>.json`` means no newer commit. One stat, where an update lists the
        whole log directory (thousands of files on a streaming table). Object stores list from
        an offset: there the update is as cheap."""
        return bool(self.catalog.unchanged_since(table, version))

    # ------------------------------------------------------------------ time travel
    def version_at(self, table: TableName, as_of: AsOf) -> int | None:
        """The Delta version of ``table`` that ``as_of`` designates (None: the latest).

        A string is a tag name when such a tag exists or when it does not read as a time; else a
        time (tag names that read as a time or a version cannot be created, so the two never
        meet, except for a tag made before that rule: it wins). A version that does not exist,
        a time before the table's first commit, a time or version whose log was cleaned up
        (bronze keeps 6 h) or an unknown tag is an error: never a silent fallback to version 0
        or to the latest."""
        if as_of is None:
            return None
        if isinstance(as_of, bool) or not isinstance(as_of, int | str | datetime):
            raise LakehouseError(f"as_of must be a version, a time or a tag name, not {as_of!r}")
        dt = self._open(table)
        latest = dt.version()
        if isinstance(as_of, int):
            if not 0 <= as_of <= latest:
                raise VersionNotFound(f"{table} has versions 0..{latest}; version {as_of} does not exist")
            try:
                self._open(table, as_of)  # loaded once here, reused by the read
            except LakehouseError:  # the table exists, so the log of that version is gone
                raise VersionNotFound(
                    f"version {as_of} of {table} can no longer be read: its log has been cleaned up "
                    f"({_log_retention(dt)}); tag versions you will need to read later"
                ) from None
            return as_of
        if isinstance(as_of, str):
            if as_of in self._tag_names() or not _is_time(as_of):  # a tag first: see the docstring
                return self._tag_version(as_of, table)
        when = parse_time(as_of, name="as_of")
        commits: list[tuple[int, int]] = sorted(
            (h["version"], h["timestamp"]) for h in dt.history() if h.get("timestamp") is not None
        )
        ms = when.timestamp() * 1000
        eligible = [v for v, ts in commits if ts <= ms]
        if not eligible:
            first = datetime.fromtimestamp(commits[0][1] / 1000, UTC) if commits else None
            if commits and commits[0][0] > 0:  # versions before the oldest listed one: log cleaned up
                raise VersionNotFound(
                    f"{table} cannot be read as of {when.isoformat()}: its log before version {commits[0][0]} "
                    f"({first}) has been cleaned up ({_log_retention(dt)}); tag versions you will need to read later"
                )
            raise VersionNotFound(f"{table} did not exist at {when.isoformat()} (its first commit is {first})")
        return max(eligible)

    # ------------------------------------------------------------------ tags
    def tag(self, name: str, *, tables: Sequence[TableName] | None = None, note: str | None = None) -> pl.DataFrame:
        """Pin the current version of every silver and gold table (or of ``tables``) under
        ``name``. Bronze tables are pinned only when named: a tagged table keeps its whole log from
        then on, and bronze commits every second, so its log (read by every open) would grow
        without bound until the tag is deleted. A name that reads as a time or a version is
        refused: ``as_of`` takes all three, so it would be ambiguous."""
        _check_tag_name(name)
        if name in self.tags().get_column("name").to_list():
            raise LakehouseError(f"tag {name!r} exists already; delete it first (lakehouse tag delete {name})")
        default = [t for t in TABLES if t.startswith(("silver.", "gold.")) and self.catalog.exists(t)]
        names = list(tables or ()) or default
        now = datetime.now(UTC)
        rows = [
            {"name": name, "table": t, "version": self._open(t).version(), "created_at": now, "note": note}
            for t in names
        ]
        if not rows:
            raise LakehouseError("nothing to tag: no table exists yet")
        spec = table_spec("meta.tags")
        self.catalog.append("meta.tags", pa.Table.from_pylist(rows, schema=spec.schema))
        return pl.DataFrame(rows)

    def _tag_names(self) -> set[str]:
        return set(self.tags().get_column("name").to_list())

    def tags(self) -> pl.DataFrame:
        """Every tag: name, table, version, created_at, note."""
        spec = table_spec("meta.tags")
        if not self.catalog.exists("meta.tags"):
            return to_frame(spec.schema.empty_table())
        return self.catalog.frame("meta.tags")

    def untag(self, name: str) -> None:
        if name not in self.tags().get_column("name").to_list():
            raise TagNotFound(f"no tag named {name!r}")
        self.catalog.open("meta.tags").delete(f"name = '{name}'")

    def _tag_version(self, name: str, table: str) -> int:
        tags = self.tags()
        pins = tags.filter(pl.col("name") == name)
        if pins.is_empty():
            known = sorted(set(tags.get_column("name").to_list()))
            raise TagNotFound(f"{name!r} is neither a time nor a tag (tags: {', '.join(known) or 'none'})")
        row = pins.filter(pl.col("table") == table)
        if row.is_empty():
            raise TagNotFound(
                f"tag {name!r} does not pin {table} (it pins {', '.join(sorted(pins.get_column('table')))})"
            )
        return int(row.get_column("version")[0])

    # ------------------------------------------------------------------ reads
    def scan(
        self,
        table: TableName,
        *,
        start: datetime | str | None = None,
        end: datetime | str | None = None,
        exchange: str | None = None,
        symbols: Sequence[str] | None = None,
        columns: Sequence[str] | None = None,
        as_of: AsOf = None,
        live: bool = False,
    ) -> pl.LazyFrame:
        """A lazy scan of ``table`` (``"silver.trades"``) with partition pruning (exchange,
        symbol, date) and predicate pushdown; ``start`` inclusive, ``end`` exclusive, in exchange
        time (UTC). ``live=True`` (bronze tables) adds the rows running writers have received but
        not committed yet, without duplicates; with no writer running it is Delta alone.

        A live read asks the writers first and pins the Delta version after: a row a writer
        had received before the read started is then in its live answer (buffered, being
        committed or spooled) or, if its batch committed since, in that Delta version. The
        other order lost every batch that committed between the two."""
        spec = _checked_columns(table, columns)
        filters = _resolved_filters(start, end, exchange, symbols)
        live_parts = self._live(table, as_of=as_of, filters=filters) if live else []  # before Delta: see above
        parts: list[pl.LazyFrame] = []
        if not live or self.catalog.exists(table):
            # live rows may hold symbols no commit has yet: no partition check then
            dt = self._snapshot(table, as_of, filters, check=not live)
            lf = self.catalog.scan_snapshot(dt)
            parts.append(_filtered(lf, table, filters))
        if live:
            parts += live_parts
            if not parts:  # no table yet and no writer running
                parts = [to_frame(spec.schema.empty_table()).lazy()]
            key = list(spec.key) or [c for c in spec.schema.names if c != "batch_id"]
            lf = pl.concat(parts, how="vertical_relaxed").unique(subset=key, keep="first", maintain_order=True)
        else:
            lf = parts[0]
        return lf.select(list(columns)) if columns is not None else lf

    def _snapshot(self, table: TableName, as_of: AsOf, filters: _Filters, *, check: bool = True) -> DeltaTable:
        """The version of ``table`` that ``as_of`` designates, opened (pinned: later commits do
        not change it); ``check``: an exchange or symbol it holds no partition of is an error."""
        dt = self._open(table, self.version_at(table, as_of))
        if check:
            _check_partition_values(table, dt, exchange=filters["exchange"], symbols=filters["symbols"])
        return dt

    def _live(self, table: str, *, as_of: AsOf, filters: _Filters) -> list[pl.LazyFrame]:
        """The running writers' live rows of ``table``, fetched now (materialised, not lazy)."""
        from crypto_lakehouse.storage.live import fetch_live
        from crypto_lakehouse.storage.state import spool_dir

        if table not in BRONZE:
            raise LakehouseError(f"live reads cover the bronze tables (the writers' buffers), not {table}")
        if as_of is not None:
            raise LakehouseError("live=True reads the present; it cannot be combined with as_of")
        return [
            _filtered(to_frame(t).lazy(), table, filters)
            for t in fetch_live(self.settings.writer.spool_dir or spool_dir(self.catalog.root), table)
        ]

    def read(
        self,
        table: TableName,
        *,
        start: datetime | str | None = None,
        end: datetime | str | None = None,
        exchange: str | None = None,
        symbols: Sequence[str] | None = None,
        columns: Sequence[str] | None = None,
        as_of: AsOf = None,
        live: bool = False,
    ) -> pl.DataFrame:
        """:meth:`scan` with the same arguments, collected; ``.to_pandas()`` / ``.to_arrow()`` on
        the result for the others."""
        return self.scan(
            table,
            start=start,
            end=end,
            exchange=exchange,
            symbols=symbols,
            columns=columns,
            as_of=as_of,
            live=live,
        ).collect()

    def to_dask(
        self,
        table: TableName,
        *,
        start: datetime | str | None = None,
        end: datetime | str | None = None,
        exchange: str | None = None,
        symbols: Sequence[str] | None = None,
        columns: Sequence[str] | None = None,
        as_of: AsOf = None,
    ) -> dd.DataFrame:
        """``table`` as a Dask DataFrame, one partition per data file of the version read, for
        work past one machine (a ``distributed`` cluster) or past memory. The arguments mean
        what they mean for :meth:`scan` (resolved by the same code): ``to_dask(...).compute()``
        holds the rows of ``scan(...).collect()``, in another order.

        Only the files that can hold selected rows become partitions: pruned on the partition
        values (exchange, symbol, date) and the min/max statistics each file's entry in the
        Delta log carries (so a time window prunes gold too); row groups are pruned the same way
        inside a file. The version is resolved here, once: every partition reads that snapshot
        whatever is committed meanwhile. Files are read through pyarrow's native filesystem
        with the catalog's storage options (local disk or S3), which the task carries to the
        workers; a worker needs only this package and access to the storage.

        Columns are pandas ``ArrowDtype`` of the table's Arrow types (``timestamp[us, tz=UTC]``,
        ``date32``, ``int64`` with nulls, ``string``, ...): the values and types of
        ``scan(...).collect().to_pandas(use_pyarrow_extension_array=True)``, with no float
        for a nullable integer nor object for a date. No ``live=``: a writer's buffer is on its
        own host. Needs ``dask[dataframe]`` (a dependency)."""
        import dask.dataframe as dd

        _checked_columns(table, columns)
        filters = _resolved_filters(start, end, exchange, symbols)
        version = self._snapshot(table, as_of, filters).version()
        ds = self.catalog.dataset(table, version=version)  # the catalog's filesystem, that version
        schema = pa.schema([pa.field(f.name, f.type) for f in ds.schema])  # less docs and NOT NULL
        out = schema if columns is None else pa.schema([schema.field(c) for c in columns])
        meta = _to_pandas(out.empty_table())
        prune = _pruning(table, filters)
        fragments = list(ds.get_fragments(filter=prune) if prune is not None else ds.get_fragments())
        frame: dd.DataFrame
        if not fragments:
            frame = dd.from_pandas(meta, npartitions=1)  # type: ignore[no-untyped-call]  # dask leaves it unannotated
            return frame
        frame = dd.from_map(  # type: ignore[no-untyped-call]  # dask leaves it unannotated
            _read_fragment,
            fragments,
            meta=meta,
            label=f"read-{table}",
            enforce_metadata=False,
            columns=list(out.names),
            table=table,
            filters=filters,
            prune=prune,
            schema=schema,
        )
        return frame

    def sql(self, query: str, *, as_of: AsOf = None, live: bool = False) -> pl.DataFrame:
        """Run DuckDB SQL over the tables it names (``bronze.trades``, ``silver.trades``,
        ``gold.ohlcv``, ...), each at ``as_of``. Uses DuckDB's delta extension when it is
        installed, else Arrow datasets from delta-rs (same results, partition pruning either way).

        Only the tables the query references are resolved (see :func:`_referenced_tables`): a
        table the query does not read cannot fail it, however young it is or however short its
        log. A referenced table that did not exist at ``as_of``, whose log of then is cleaned up,
        or that an ``as_of`` tag does not pin is an error naming it; one that does not exist at all
        is DuckDB's "does not exist" error."""
        import duckdb

        con = duckdb.connect()
        try:
            con.execute("SET autoinstall_known_extensions = false; SET autoload_known_extensions = false")
            self.attach(con, query, as_of=as_of, live=live)
            result: pl.DataFrame = con.sql(query).pl()  # (duckdb annotates pl() as Any: lazy=True gives a LazyFrame)
            return result
        except duckdb.Error as exc:
            raise LakehouseError(str(exc).strip()) from None
        finally:
            con.close()

    def attach(
        self,
        con: duckdb.DuckDBPyConnection,
        query: str,
        *,
        as_of: AsOf = None,
        live: bool = False,
        extension: bool = True,
        only: Collection[str] | None = None,
    ) -> None:
        """Create in ``con`` a view ``layer.kind`` over each table ``query`` names (and the
        :data:`SQL_VIEWS` it names), each at ``as_of``: what :meth:`sql` runs the query against.
        ``extension=False`` never uses DuckDB's delta extension (Arrow datasets from delta-rs
        only: nothing for DuckDB itself to open, so ``con`` may then disable external access);
        ``only``: tables outside it are not attached even when named (the query then fails on
        them with DuckDB's "does not exist")."""
        # DuckDB's delta extension reads the latest version, where the catalog lets it (loaded once, if at all)
        use_ext = extension and as_of is None and not live
        loaded = functools.cache(lambda: _delta_extension(con))
        views = [v for v in SQL_VIEWS if v in _referenced_names(query) and (only is None or v in only)]
        named = {*_referenced_tables(query), *(SQL_VIEWS[v][0] for v in views)}
        for name in sorted(named, key=list(TABLES).index):
            if only is not None and name not in only and name not in (SQL_VIEWS[v][0] for v in views):
                continue
            if not self.catalog.exists(name) and not (live and name in BRONZE):
                continue
            layer, kind = name.split(".")
            alias = f"__{layer}_{kind}"
            con.execute(f'CREATE SCHEMA IF NOT EXISTS "{layer}"')
            if live and name in BRONZE:  # Delta + the writers' live buffers, deduplicated
                con.register(alias, self.scan(name, live=True).collect().to_arrow())
            elif use_ext and (source := self.catalog.duckdb_source(name)) is not None and loaded():
                con.execute(f'CREATE VIEW "{layer}"."{kind}" AS SELECT * FROM {source}')
                continue
            else:
                con.register(alias, self.catalog.dataset(name, version=self.version_at(name, as_of)))
            con.execute(f'CREATE VIEW "{layer}"."{kind}" AS SELECT * FROM "{alias}"')
        for view in views:
            table, select = SQL_VIEWS[view]
            if self.catalog.exists(table):
                con.execute(f"CREATE VIEW {view} AS {select}")

    # ------------------------------------------------------------------ replay
    def replay_batches(
        self,
        tables: Sequence[str],
        *,
        start: datetime | str,
        end: datetime | str,
        symbols: Sequence[str] | None = None,
        as_of: AsOf = None,
        chunk: timedelta = timedelta(minutes=10),
    ) -> Iterator[pa.RecordBatch]:
        """Events of ``tables`` with event time in [start, end) merged in event-time order, as
        Arrow record batches with columns ``table, event_ts, symbol`` + each table's columns
        (nulls where a table lacks one). Memory stays bounded: one ``chunk`` of event time is
        read at a time.

        An event's time is when it became known: a row's exchange time, but a ``gold.ohlcv``
        bar's window **end** (``window_start`` + ``interval``): its high, low and close exist
        only once the window has closed, so a bar comes after every trade inside its window.

        Tie-break (deterministic): event time, then the position of the table in ``tables``,
        then symbol, then the table's own order key (trade id, book/ticker sequence), then the
        order rows were stored in."""
        s, e = time_range(start, end)
        assert s is not None and e is not None  # both given
        names = [table_name(t if "." in t else f"silver.{t}") for t in tables]
        # pinned: the datasets and the bar intervals below come from the same version
        versions = {t: self._open(t).version() if as_of is None else self.version_at(t, as_of) for t in names}
        # one schema for every batch: the union of the tables' columns (supertypes where they clash)
        template = pl.concat(
            [pl.DataFrame(schema={"table": pl.String, "event_ts": pl.Datetime("us", "UTC"), "symbol": pl.String})]
            + [to_frame(table_spec(t).schema.empty_table()) for t in names],
            how="diagonal_relaxed",
        )
        datasets = {t: self.catalog.dataset(t, version=versions[t]) for t in names}  # opened once
        lengths = {t: _bar_lengths(self._open(t, versions[t]), t) for t in names if t in _BAR_TABLES}
        t0 = s
        while t0 < e:
            t1 = min(t0 + chunk, e)
            frames = []
            for rank, t in enumerate(names):
                df = self._chunk(datasets[t], t, t0, t1, symbols, lengths.get(t))
                if df.is_empty():
                    continue
                order = _REPLAY_ORDER.get(t.split(".")[1])
                frames.append(
                    df.with_columns(
                        pl.lit(t).alias("table"),
                        pl.lit(rank, pl.Int32).alias("__rank"),
                        _event_time(t, lengths.get(t)).alias("__ts"),
                        (
                            pl.col(order).cast(pl.Int64, strict=False)
                            if order and order in df.columns
                            else pl.lit(None, pl.Int64)
                        ).alias("__order"),
                        pl.int_range(pl.len(), dtype=pl.Int64).alias("__row"),
                    )
                )
            if frames:
                merged = pl.concat(frames, how="diagonal_relaxed").sort(
                    ["__ts", "__rank", "symbol", "__order", "__row"], nulls_last=True
                )
                merged = merged.drop("__rank", "__order", "__row").rename({"__ts": "event_ts"})
                merged = pl.concat([template, merged], how="diagonal_relaxed").select(template.columns)
                yield from merged.cast(template.schema).to_arrow().to_batches()
            t0 = t1

    @staticmethod
    def _chunk(
        ds: pads.Dataset,
        table: str,
        t0: datetime,
        t1: datetime,
        symbols: Sequence[str] | None,
        lengths: dict[str, CandleInterval] | None = None,
    ) -> pl.DataFrame:
        """Rows of ``table`` with t0 <= event time < t1 (and ``symbols``) from its Arrow dataset;
        for bars (``lengths``: interval -> bar length) the event time is the window end."""
        import pyarrow.compute as pc
        import pyarrow.dataset as pads

        spec = table_spec(table)
        tcol = TIME_COLUMN[table]
        utc = pa.timestamp("us", "UTC")
        if lengths is not None:  # window_start + length in [t0, t1), one range per interval partition
            if not lengths:
                return to_frame(spec.schema.empty_table())
            f = functools.reduce(
                operator.or_,
                (
                    (pads.field("interval") == iv)
                    & (pads.field(tcol) >= pa.scalar(t0 - _length_bounds(d)[1], utc))
                    & (pads.field(tcol) < pa.scalar(t1 - _length_bounds(d)[0], utc))
                    for iv, d in lengths.items()
                ),
            )
        else:
            f = (pads.field(tcol) >= pa.scalar(t0, utc)) & (pads.field(tcol) < pa.scalar(t1, utc))
        if "date" in spec.partition_by:  # prune partitions by date
            f = f & (pads.field("date") >= pa.scalar(t0.date())) & (pads.field("date") <= pa.scalar(t1.date()))
        if symbols is not None and "symbol" in spec.schema.names:
            f = f & pc.is_in(pads.field("symbol"), pa.array(list(symbols)))
        df = to_frame(ds.to_table(filter=f))
        if lengths is not None:  # exact for calendar months (the range above may be wider)
            end = _event_time(table, lengths)
            df = df.filter((end >= t0) & (end < t1))
        return df

    def replay(
        self,
        tables: Sequence[str],
        *,
        start: datetime | str,
        end: datetime | str,
        symbols: Sequence[str] | None = None,
        as_of: AsOf = None,
    ) -> Iterator[dict[str, Any]]:
        """Like :meth:`replay_batches`, one event (a dict) at a time."""
        for batch in self.replay_batches(tables, start=start, end=end, symbols=symbols, as_of=as_of):
            yield from batch.to_pylist()


def _pruning(table: str, filters: _Filters) -> pads.Expression | None:
    """``filters`` as a pyarrow expression, to skip the files and row groups that cannot hold a
    selected row (by partition values and min/max statistics). It may keep rows
    :func:`_filtered`, which decides, drops; never the reverse."""
    import pyarrow.dataset as pads

    spec = table_spec(table)
    names, time = spec.schema.names, pads.field(TIME_COLUMN[table])
    utc = pa.timestamp("us", "UTC")
    parts = []
    if filters["exchange"] is not None and "exchange" in names:
        parts.append(pads.field("exchange") == filters["exchange"])
    if filters["symbols"] is not None and "symbol" in names:
        parts.append(pads.field("symbol").isin(list(filters["symbols"])))
    if (start := filters["start"]) is not None:
        if "date" in spec.partition_by:
            parts.append(pads.field("date") >= pa.scalar(start.date()))
        parts.append(time >= pa.scalar(start, utc))
    if (end := filters["end"]) is not None:
        if "date" in spec.partition_by:
            parts.append(pads.field("date") <= pa.scalar(end.date()))
        parts.append(time < pa.scalar(end, utc))
    return functools.reduce(operator.and_, parts) if parts else None


def _read_fragment(
    fragment: pads.Fragment,
    columns: Sequence[str] | None = None,
    *,
    table: str,
    filters: _Filters,
    prune: pads.Expression | None,
    schema: pa.Schema,
) -> Any:
    """One partition of :meth:`Lakehouse.to_dask`: the rows of one data file that ``filters``
    select (:func:`_filtered`, as :meth:`Lakehouse.scan` does), ``columns`` of ``schema`` (the
    snapshot's columns; partition values come from the Delta log, not the path). Runs on a
    worker: everything it needs is in its arguments."""
    wanted = list(schema.names) if columns is None else list(columns)
    used = {*wanted, "exchange", "symbol", "date", TIME_COLUMN[table]}
    data = fragment.to_table(schema=schema, columns=[c for c in schema.names if c in used], filter=prune)
    rows = _filtered(to_frame(data).lazy(), table, filters).select(wanted).collect()
    return _to_pandas(rows.to_arrow().cast(pa.schema([schema.field(c) for c in wanted])))


def _to_pandas(data: pa.Table) -> Any:
    """``data`` as a ``pandas.DataFrame`` (typed ``Any``: pandas ships no type information) with
    each column's Arrow type kept (``pd.ArrowDtype``): no float for a nullable integer, no object
    for a date, microsecond UTC timestamps."""
    import pandas as pd  # type: ignore[import-untyped]  # pandas ships no type information (no stubs installed)

    return data.to_pandas(types_mapper=pd.ArrowDtype)


# tables of intervals: a row is known at its window end, window_start (the time column) + interval
# (a bar's close, the book as it stood at the end, a window's statistics). The other gold tables'
# time columns are already when a row became known (schemas.TIME_COLUMN): an information bar's
# last trade, a quote's change or interval end, an anomaly's bar end, a ledger row's computation.
_BAR_TABLES = {"gold.ohlcv", "gold.book_snapshots", "gold.microstructure"}


def _bar_lengths(dt: DeltaTable, table: str) -> dict[str, CandleInterval]:
    """Interval (a partition value, e.g. ``"1m"``, ``"1M"``) -> its bar length, for every
    interval in ``dt``."""
    out = {}
    for iv in sorted({p["interval"] for p in dt.partitions()}):
        length = candle_interval(iv)
        if length is None:
            raise LakehouseError(f"{table} holds bars of interval {iv!r}, which is not a bar length")
        out[iv] = length
    return out


def _length_bounds(length: CandleInterval) -> tuple[timedelta, timedelta]:
    """The shortest and longest a bar of ``length`` lasts (calendar months vary)."""
    if length.fixed is not None:
        return length.fixed, length.fixed
    return timedelta(days=28 * length.months), timedelta(days=31 * length.months)


def _event_time(table: str, lengths: dict[str, CandleInterval] | None) -> pl.Expr:
    """When a row of ``table`` became known: its time column, or a bar's window end."""
    tcol = pl.col(TIME_COLUMN[table])
    if lengths is None:
        return tcol
    offsets = {iv: length.offset for iv, length in lengths.items()}
    return tcol.dt.offset_by(pl.col("interval").replace_strict(offsets, return_dtype=pl.String))


# string literals and comments: table names inside them are not references
_SQL_NOISE = re.compile(r"'(?:[^']|'')*'|--[^\n]*|/\*.*?\*/", re.DOTALL)
# layer.kind, each part optionally double-quoted, any case, spaces around the dot allowed
_TABLE_REF = re.compile(r'(?<![\w$])"?(bronze|silver|gold|meta)"?\s*\.\s*"?(\w+)"?', re.IGNORECASE)


SQL_VIEWS: dict[str, tuple[TableName, str]] = {
    # bars built from the lakehouse's own trades, one row per window: what a query of OHLCV
    # means unless it asks for the exchange's candles (gold.ohlcv holds both, by `source`)
    "gold.bars": ("gold.ohlcv", "SELECT * EXCLUDE (source) FROM gold.ohlcv WHERE source = 'trades'"),
}
"""Views :meth:`Lakehouse.sql` adds over the tables: name -> (table it reads, its SELECT)."""


def _referenced_names(query: str) -> set[str]:
    """Every ``layer.kind`` ``query`` names (``silver.trades``, ``"gold"."ohlcv"``, ...). A
    textual scan rather than DuckDB's parser (``duckdb.get_table_names`` binds ``USING`` joins
    against tables not registered yet and refuses several statements); it errs towards
    over-including (a column reference spelled like a table costs an unneeded resolution)."""
    text = _SQL_NOISE.sub(" ", query)
    return {f"{layer.lower()}.{kind.lower()}" for layer, kind in _TABLE_REF.findall(text)}


def _referenced_tables(query: str) -> list[TableName]:
    """The lakehouse tables ``query`` names (see :func:`_referenced_names`)."""
    named = _referenced_names(query)
    return [t for t in TABLE_NAMES if t in named]


def _log_retention(dt: DeltaTable) -> str:
    retention = dt.metadata().configuration.get("delta.logRetentionDuration")
    return f"log retention {retention}" if retention else "log retention"


def _check_partition_values(table: str, dt: Any, *, exchange: str | None, symbols: Sequence[str] | None) -> None:
    """An exchange or symbol the table (at this version) holds no partition of is a mistake (a
    misspelt or differently written name), not an empty answer: :class:`InvalidArgument` listing
    what it holds. Read from the Delta log (partition values), no data file is opened."""
    spec = table_spec(table)
    wanted = {"exchange": [exchange] if exchange else [], "symbol": symbols or []}
    checked = [c for c in ("exchange", "symbol") if wanted[c] and c in spec.partition_by]
    if not checked:
        return
    present = dt.partitions()
    for column in checked:
        held = sorted({p[column] for p in present if p.get(column) is not None})
        missing = [v for v in wanted[column] if v not in held]
        if missing:
            raise InvalidArgument(
                f"{table} holds no {column} {', '.join(missing)}; {column}s there: {', '.join(held) or 'none yet'}"
            )


def _is_time(text: str) -> bool:
    """Whether ``as_of=text`` reads as a time (RFC 3339 / ISO 8601: ``2026-11-24``,
    ``2026-11-24T10:00:00Z``, ``20261124``, ``2026-W47``, ...). Tag names never do (see
    :func:`_check_tag_name`); a tag made before that rule still wins over the time."""
    try:
        parse_time(text)
        return True
    except ValueError:
        return False


def _check_tag_name(name: str) -> None:
    """A tag name must not be confusable with the other two kinds of ``as_of``: a name that
    reads as a time or as a version number would make ``as_of=name`` mean two things."""
    if not name or name != name.strip() or any(c in name for c in "'\"\\"):
        raise LakehouseError(
            f"invalid tag name {name!r}: use a non-empty name without quotes, backslashes or surrounding spaces"
        )
    kind = "version" if re.fullmatch(r"[+-]?\d+", name) else "time" if _is_time(name) else None
    if kind is not None:
        raise LakehouseError(
            f"tag name {name!r} reads as a {kind}, and as_of takes versions, times and tag names alike, so "
            f"as_of={name!r} would be ambiguous; use a name that is neither a number nor a date or time, e.g. "
            f"'bt-{name}'"
        )


def _delta_extension(con: duckdb.DuckDBPyConnection) -> bool:
    try:
        con.execute("LOAD delta")
        return True
    except Exception:  # not installed (offline): use the Arrow route
        return False
