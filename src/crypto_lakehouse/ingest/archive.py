"""Bulk import of Binance public-data archives (data.binance.vision layout) into bronze.

For each (symbol, period) the importer picks the monthly archive when a whole month is asked and
daily ones otherwise, downloads them in parallel (bounded, resumable with HTTP ranges, with a
progress bar), verifies each against its ``.CHECKSUM`` before anything is written, and parses the
CSV (with or without a header row; millisecond or microsecond timestamps) strictly.

A file's identity is its **full archive path** (market, kind, symbol and file name: spot and
futures publish files of the same *name*). Its rows carry ``writer_id = "archive:<path>"``, which
silver turns into ``source='archive'``, and they are written by **one commit that replaces that
identity**: the commit removes any rows the file had (an earlier import, a half-finished one, or
the previous version of a file whose checksum changed upstream) and adds the new ones. Importing a
file is therefore idempotent whatever fails when: a crash or a storage error before the commit
leaves the old rows, one after it leaves the same rows the next run writes again, and of two
concurrent imports of the same file Delta's conflict check fails one (which retries). Only then
is ``meta.archive_manifest`` (keyed by the same path) updated: a re-run skips files whose checksum
it records.
"""

from __future__ import annotations

import calendar
import hashlib
import http.client
import io
import logging
import random
import time
import urllib.error
import urllib.request
import zipfile
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import polars as pl
import pyarrow as pa
from deltalake import DeltaTable
from deltalake.exceptions import CommitFailedError
from deltalake.transaction import AddAction

from crypto_lakehouse.errors import LakehouseError
from crypto_lakehouse.ingest.rows import columns_to_arrow
from crypto_lakehouse.schemas import META
from crypto_lakehouse.storage import Catalog
from crypto_lakehouse.venues.registry import venue

__all__ = ["ArchiveFile", "ImportResult", "archive_files", "import_archives", "import_archives_fanned"]

LOG = logging.getLogger(__name__)
DEFAULT_BASE_URL = "https://data.binance.vision"
_MARKETS = {
    "spot": ("spot", "BINANCE"),
    "um": ("futures/um", "BINANCE_FUTURES"),
    "cm": ("futures/cm", "BINANCE_DELIVERY"),
}
_MONTHLY_ONLY = {"fundingRate"}
_TABLES = {"aggTrades": "bronze.trades", "klines": "bronze.candles", "fundingRate": "bronze.funding"}


@dataclass(frozen=True, slots=True)
class ArchiveFile:
    path: str  # below the base URL: data/spot/daily/aggTrades/BTCUSDT/BTCUSDT-aggTrades-2024-01-01.zip
    market: str
    kind: str  # aggTrades, klines, fundingRate, bookTicker
    interval: str | None
    symbol: str  # exchange symbol, BTCUSDT

    @property
    def writer_id(self) -> str:
        """The file's identity in bronze: ``archive:`` + its full path (the prefix is what silver
        maps to ``source='archive'``; nothing parses the rest)."""
        return f"archive:{self.path}"

    @property
    def legacy_writer_id(self) -> str:
        """The id imports before the full-path identity wrote (``archive:<file name>``). Unique
        together with the exchange and symbol (the name holds symbol, kind or interval and
        period), so the rows of lakes imported then are still replaced, not duplicated."""
        return f"archive:{self.path.rsplit('/', 1)[-1]}"

    @property
    def table(self) -> str:
        """The bronze table the file's rows go to."""
        return _TABLES.get(self.kind, "bronze.ticker")


@dataclass(slots=True)
class ImportResult:
    imported: dict[str, int] = field(default_factory=dict)  # file -> rows
    skipped: list[str] = field(default_factory=list)  # already imported with the same checksum
    failed: dict[str, str] = field(default_factory=dict)  # file -> error

    @property
    def ok(self) -> bool:
        return not self.failed


def _periods(start: date, end: date, *, monthly_only: bool) -> list[tuple[str, str]]:
    """[start, end] -> ("monthly", "2024-01") for whole months, ("daily", "2024-02-03") else."""
    out: list[tuple[str, str]] = []
    d = start
    while d <= end:
        last = date(d.year, d.month, calendar.monthrange(d.year, d.month)[1])
        if monthly_only or (d.day == 1 and last <= end):
            out.append(("monthly", f"{d:%Y-%m}"))
            d = last + timedelta(days=1)
        else:
            out.append(("daily", f"{d:%Y-%m-%d}"))
            d += timedelta(days=1)
    return out


def archive_files(*, market: str, kind: str, symbols: list[str], start: date, end: date) -> list[ArchiveFile]:
    """The archives covering ``symbols`` from ``start`` to ``end`` (inclusive dates)."""
    if market not in _MARKETS:
        raise LakehouseError(f"unknown market {market!r}: choose spot, um or cm")
    base_kind, _, interval = kind.partition(":")
    if base_kind == "trades":
        raise LakehouseError(
            "kind 'trades' holds raw trade ids, which differ from the aggregate trade ids the stream and "
            "silver use: import 'aggTrades' instead"
        )
    if base_kind not in ("aggTrades", "klines", "fundingRate", "bookTicker"):
        raise LakehouseError(f"unknown kind {kind!r}: aggTrades, klines:<interval>, fundingRate or bookTicker")
    if base_kind == "klines" and not interval:
        raise LakehouseError("klines needs an interval: klines:1m")
    if base_kind in ("fundingRate", "bookTicker") and market == "spot":
        raise LakehouseError(f"{base_kind} archives exist for futures only (--market um or cm)")
    if end < start:
        raise LakehouseError(f"--end {end} is before --start {start}")
    root = _MARKETS[market][0]
    files = []
    for sym in symbols:
        s = sym.upper()
        for gran, period in _periods(start, end, monthly_only=base_kind in _MONTHLY_ONLY):
            if base_kind == "klines":
                path = f"data/{root}/{gran}/klines/{s}/{interval}/{s}-{interval}-{period}.zip"
            else:
                path = f"data/{root}/{gran}/{base_kind}/{s}/{s}-{base_kind}-{period}.zip"
            files.append(ArchiveFile(path, market, base_kind, interval or None, s))
    return files


# ---------------------------------------------------------------------------------------- download
def _fetch(url: str, dest: Path, *, timeout: float = 60) -> Path:
    """Download ``url`` to ``dest``, resuming a partial ``dest.part`` with an HTTP range request."""
    part = dest.with_name(dest.name + ".part")
    dest.parent.mkdir(parents=True, exist_ok=True)
    have = part.stat().st_size if part.exists() else 0
    req = urllib.request.Request(url, headers={"Range": f"bytes={have}-"} if have else {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            mode = "ab" if have and r.status == 206 else "wb"
            with open(part, mode) as fh:
                while chunk := r.read(1 << 20):
                    fh.write(chunk)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and have:  # already complete
            part.replace(dest)
            return dest
        raise LakehouseError(f"{url}: HTTP {exc.code} {exc.reason}") from None
    except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
        raise LakehouseError(f"{url}: download failed ({exc!r}); re-run to resume") from None
    part.replace(dest)
    return dest


def _checksum(base_url: str, path: str) -> str:
    url = f"{base_url}/{path}.CHECKSUM"
    try:
        with urllib.request.urlopen(url, timeout=60) as r:
            text = r.read().decode().strip()
    except urllib.error.HTTPError as exc:
        raise LakehouseError(f"{url}: HTTP {exc.code} {exc.reason}") from None
    except (urllib.error.URLError, OSError) as exc:
        raise LakehouseError(f"{url}: {exc}") from None
    digest = text.split()[0] if text else ""
    if len(digest) != 64:
        raise LakehouseError(f"{url}: not a sha256 checksum file")
    return digest.lower()


# ---------------------------------------------------------------------------------------- parsing
def _read_csv(data: bytes, name: str, columns: int) -> list[pl.Series]:
    """The CSV's first ``columns`` columns as strings (values kept exactly as written), with or
    without a header row; any malformed row fails the whole file."""
    import pyarrow as pa
    import pyarrow.csv as pacsv

    first = data.split(b"\n", 1)[0].split(b",", 1)[0].strip()
    header = bool(first) and not first.lstrip(b"-").isdigit()
    try:
        t = pacsv.read_csv(
            io.BytesIO(data),
            read_options=pacsv.ReadOptions(autogenerate_column_names=True, skip_rows=1 if header else 0),
            convert_options=pacsv.ConvertOptions(column_types={f"f{i}": pa.string() for i in range(32)}),
        )
    except pa.ArrowInvalid as exc:
        raise LakehouseError(f"{name}: corrupt CSV ({exc})") from None
    if t.num_columns < columns:
        raise LakehouseError(f"{name}: {t.num_columns} columns, expected {columns}")
    return [pl.Series(t.column(i).combine_chunks()).cast(pl.String) for i in range(columns)]


def _seconds(values: pl.Series) -> pl.Series:
    """Epoch ms or µs (Binance switched spot to µs in 2025) -> float seconds; strict."""
    v = values.cast(pl.Int64, strict=True)
    return pl.select(pl.when(v > 10**14).then(v / 1e6).otherwise(v / 1e3)).to_series()


def _to_bronze(table: str, df: pl.DataFrame, *, writer_id: str) -> pa.Table:
    """Rows in the row layout (epoch-second floats) -> the bronze table, by the writer's own
    conversion (:func:`.rows.columns_to_arrow`): one commit per file, so ``batch_id`` 0."""
    columns = {name: df.get_column(name).to_arrow() for name in df.columns}
    return columns_to_arrow(table, columns, writer_id=writer_id, batch_id=0)


def _manifest(catalog: Catalog) -> dict[str, str]:
    if not catalog.exists("meta.archive_manifest"):
        return {}
    m = catalog.frame("meta.archive_manifest")
    return dict(zip(m["file"].to_list(), m["checksum"].to_list(), strict=True))


def import_archives(
    catalog: Catalog,
    files: list[ArchiveFile],
    *,
    base_url: str = DEFAULT_BASE_URL,
    cache_dir: str | Path = "./lakehouse_archive_cache",
    workers: int = 4,
    progress: bool = True,
) -> ImportResult:
    """Download, verify and import ``files`` (see module doc); failures are reported per file
    and never stop the others."""
    from rich.progress import Progress

    base = base_url.rstrip("/")
    result = ImportResult()
    done = _manifest(catalog)
    cache = Path(cache_dir)

    def download(f: ArchiveFile) -> tuple[ArchiveFile, str, bytes]:
        digest = _checksum(base, f.path)
        if done.get(f.path) == digest:
            return f, digest, b""
        return f, digest, _verified(base, f, digest, cache)

    with Progress(disable=not progress, transient=True) as bar, ThreadPoolExecutor(max_workers=workers) as pool:
        task = bar.add_task("archives", total=len(files))
        futures = {pool.submit(download, f): f for f in files}
        for fut in as_completed(futures):
            f = futures[fut]
            bar.advance(task)
            try:
                _, digest, data = fut.result()
                if not data:
                    result.skipped.append(f.path)
                    continue
                result.imported[f.path] = _commit_file(catalog, f, digest, data, base=base)
            except Exception as exc:  # noqa: BLE001 - one bad file never stops the others; it is reported
                msg = f"{f.path}: {exc}" if isinstance(exc, zipfile.BadZipFile) else str(exc)
                LOG.error("archive import failed: %s", msg)
                result.failed[f.path] = msg
    return result


@dataclass(frozen=True, slots=True)
class _Task:
    """One file of a fanned-out import (a :class:`Catalog` travels as its root and options)."""

    root: str
    storage_options: dict[str, str] | None
    file: ArchiveFile
    base: str
    cache_dir: str
    known: str | None  # the checksum the manifest records for it


@dataclass(frozen=True, slots=True)
class _Staged:
    """A file a worker verified and staged as bronze files (uncommitted), or why not."""

    file: ArchiveFile
    digest: str = ""
    table: str = ""
    rows: int = 0
    actions: tuple[AddAction, ...] = ()
    error: str | None = None
    skipped: bool = False


def _stage_file(task: _Task) -> _Staged:
    """A worker's part of :func:`import_archives_fanned`: download, verify, parse and write one
    file's bronze rows as uncommitted data files."""
    f = task.file
    try:
        digest = _checksum(task.base, f.path)
        if task.known == digest:
            return _Staged(f, digest, skipped=True)
        data = _verified(task.base, f, digest, Path(task.cache_dir))
        exchange = _MARKETS[f.market][1]
        table, df = _parse(f, data, exchange, venue(exchange).std_symbol(f.symbol), datetime.now(UTC).timestamp())
        arrow = _to_bronze(table, df, writer_id=f.writer_id)
        catalog = Catalog(task.root, storage_options=task.storage_options)  # (made by the coordinator)
        return _Staged(f, digest, table, arrow.num_rows, tuple(catalog.stage(table, arrow)))
    except Exception as exc:  # noqa: BLE001 - one bad file never stops the others; it is reported
        return _Staged(f, error=f"{f.path}: {exc}" if isinstance(exc, zipfile.BadZipFile) else str(exc))


def _verified(base: str, f: ArchiveFile, digest: str, cache: Path) -> bytes:
    """``f``'s bytes (downloaded to ``cache``, resumable), checked against ``digest``."""
    local = _fetch(f"{base}/{f.path}", cache / f.path)
    data = local.read_bytes()
    if hashlib.sha256(data).hexdigest() != digest:
        local.unlink(missing_ok=True)  # a re-run downloads it again
        raise LakehouseError(f"{f.path}: checksum mismatch (expected {digest[:12]}...)")
    return data


def _imported_before(snapshot: DeltaTable | None, files: Sequence[ArchiveFile]) -> set[str]:
    """The paths of ``files`` whose identity (or legacy identity) has rows in ``snapshot``."""
    if snapshot is None or not files:
        return set()
    ids = {i: f.path for f in files for i in (f.writer_id, f.legacy_writer_id)}
    symbols = [venue(_MARKETS[f.market][1]).std_symbol(f.symbol) for f in files]
    found = (
        Catalog.scan_snapshot(snapshot)
        .filter(pl.col("symbol").is_in(symbols) & pl.col("writer_id").is_in(list(ids)))  # (pruned by symbol)
        .select("writer_id")
        .unique()
        .collect()
        .get_column("writer_id")
        .to_list()
    )
    return {ids[i] for i in found}


def import_archives_fanned(
    catalog: Catalog,
    files: list[ArchiveFile],
    fanout: Callable[[Callable[[_Task], _Staged], Sequence[_Task]], list[_Staged]],
    *,
    base_url: str = DEFAULT_BASE_URL,
    cache_dir: str | Path = "./lakehouse_archive_cache",
) -> ImportResult:
    """:func:`import_archives` with each file downloaded, verified, parsed and written as data
    files by ``fanout`` (anywhere: Dask workers), then **one commit per bronze table** adding the
    files imported for the first time, each file's identity recorded as an application
    transaction (``archive:<path>``, version 1) in that commit, so two imports of a file racing
    (fanned or not) never both add it: the loser's files are left for vacuum and the file is
    imported again by the replacing commit of :func:`import_archives`, as is a file whose rows
    bronze already holds (a changed checksum, a half-finished import). One manifest commit last."""
    base = base_url.rstrip("/")
    result = ImportResult()
    known = _manifest(catalog)
    tables = ("bronze.trades", "bronze.candles", "bronze.funding", "bronze.ticker")
    snapshots = {t: catalog.open(t) if catalog.exists(t) else None for t in tables}
    for table in {f.table for f in files} - {t for t, s in snapshots.items() if s is not None}:
        catalog.create(table)  # here, not in the workers: racing creators leave an extra empty commit
    tasks = [_Task(catalog.root, catalog.storage_options, f, base, str(cache_dir), known.get(f.path)) for f in files]
    staged = fanout(_stage_file, tasks)
    done: list[tuple[ArchiveFile, str, str, int]] = []
    for table in tables:
        mine = [s for s in staged if s.table == table and s.error is None and not s.skipped]
        again = _imported_before(snapshots[table], [s.file for s in mine])
        first = [s for s in mine if s.file.path not in again]
        replace = [s for s in mine if s.file.path in again]
        if first:
            snapshot = snapshots[table] or catalog.open(table, version=0)  # (the empty version made above)
            try:
                catalog.commit_staged(
                    table,
                    [a for s in first for a in s.actions],
                    snapshot=snapshot,
                    transactions=[(s.file.writer_id, 1) for s in first],
                )
                done += [(s.file, s.digest, table, s.rows) for s in first]
            except CommitFailedError as exc:  # another import of one of them won: replace each file's rows
                LOG.info("%s: archive commit conflicted (%s); importing its files one by one", table, exc)
                replace += first
        for s in replace:
            try:
                data = _verified(base, s.file, s.digest, Path(cache_dir))
                result.imported[s.file.path] = _commit_file(catalog, s.file, s.digest, data, base=base)
            except Exception as exc:  # noqa: BLE001 - reported per file, as in import_archives
                result.failed[s.file.path] = str(exc)
    _record(catalog, done, base=base)
    result.imported |= {f.path: n for f, _, _, n in done}
    for s in staged:
        if s.error is not None:
            LOG.error("archive import failed: %s", s.error)
            result.failed[s.file.path] = s.error
        elif s.skipped:
            result.skipped.append(s.file.path)
    return result


def _commit_file(catalog: Catalog, f: ArchiveFile, digest: str, data: bytes, *, base: str) -> int:
    """Import one verified file: its bronze rows, then its manifest row.

    The bronze write is one commit that replaces the file's identity (see module doc), so a
    failure anywhere (before, during or after it, or before the manifest write) never loses the
    old rows nor doubles the new ones on the next run."""
    exchange = _MARKETS[f.market][1]
    std = venue(exchange).std_symbol(f.symbol)
    table, df = _parse(f, data, exchange, std, datetime.now(UTC).timestamp())
    arrow = _to_bronze(table, df, writer_id=f.writer_id)
    identity = (
        f"exchange = {_sql(exchange)} AND symbol = {_sql(std)}"
        f" AND writer_id IN ({_sql(f.writer_id)}, {_sql(f.legacy_writer_id)})"
    )
    _replace_identity(catalog, table, arrow, predicate=identity, app_id=f.writer_id)
    _record(catalog, [(f, digest, table, arrow.num_rows)], base=base)
    return arrow.num_rows


def _record(catalog: Catalog, done: Sequence[tuple[ArchiveFile, str, str, int]], *, base: str) -> None:
    """Manifest rows of imported files (file, checksum, table, rows), replacing theirs in one commit."""
    if not done:
        return
    now = datetime.now(UTC)
    rows = [
        {"file": f.path, "url": f"{base}/{f.path}", "checksum": d, "table": t, "rows": n, "imported_at": now}
        for f, d, t, n in done
    ]
    manifest = pl.DataFrame(rows).to_arrow().cast(META["meta.archive_manifest"].schema)
    files = ", ".join(_sql(f.path) for f, *_ in done)
    _replace_identity(catalog, "meta.archive_manifest", manifest, predicate=f"file IN ({files})")


def _sql(text: str) -> str:
    """``text`` as a SQL string literal for a delta-rs predicate (quotes doubled)."""
    return "'" + text.replace("'", "''") + "'"


def _replace_identity(
    catalog: Catalog, table: str, data: pa.Table, *, predicate: str, app_id: str | None = None, attempts: int = 5
) -> None:
    """Replace the rows of ``table`` matching ``predicate`` with ``data`` (which matches it too)
    in one commit; with ``app_id``, the commit records it as an application transaction (its
    next version), so a fanned-out import of the same file racing it conflicts.

    The table is created (empty) first: on a missing table a replace is a plain append, and two
    concurrent first imports would both append. On an existing table Delta fails the commit that
    loses a race with another replace of the same rows (or with a compaction of them): the
    replace is idempotent, so it is simply retried on the newest version."""
    if not catalog.exists(table):
        catalog.create(table)
    delay = 0.05
    for attempt in range(1, attempts + 1):
        try:
            version = None if app_id is None else (catalog.transaction_version(table, app_id) or 0) + 1
            catalog.replace(table, data, predicate=predicate, app_id=app_id, version=version)
            return
        except CommitFailedError as exc:
            if attempt == attempts:
                raise LakehouseError(f"{table}: commit conflicted {attempts} times ({exc}); re-run") from None
            LOG.info("%s: commit conflict (%s); retry %d/%d", table, exc, attempt, attempts - 1)
            time.sleep(delay * (1 + random.random()))  # jittered: two losers do not collide again
            delay *= 2


def _nulls(n: int, dtype: type[pl.DataType]) -> pl.Series:
    """``n`` nulls: the bronze columns an archive kind does not have."""
    return pl.Series([None] * n, dtype=dtype)


def _parse(file: ArchiveFile, data: bytes, exchange: str, std: str, now: float) -> tuple[str, pl.DataFrame]:
    """CSV -> (bronze table, rows in the writer's row layout, timestamps as epoch seconds).

    Columns by position (Binance's formats; a header row, when present, is skipped):
    aggTrades ``agg_trade_id,price,quantity,first_trade_id,last_trade_id,transact_time,
    is_buyer_maker[,is_best_match]``; klines ``open_time,open,high,low,close,volume,close_time,
    quote_volume,count,...``; fundingRate ``calc_time,funding_interval_hours,last_funding_rate``;
    bookTicker ``update_id,best_bid_price,best_bid_qty,best_ask_price,best_ask_qty,
    transaction_time,event_time``."""
    name = file.path.rsplit("/", 1)[-1]
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        members = [m for m in z.namelist() if m.endswith(".csv")]
        if len(members) != 1:
            raise LakehouseError(f"{name}: expected one CSV inside, found {members}")
        text = z.read(members[0])
    try:
        if file.kind == "aggTrades":
            c = _read_csv(text, name, 7)
            n = len(c[0])
            maker = c[6].str.to_lowercase()
            if not maker.is_in(["true", "false"]).all():
                raise LakehouseError(f"{name}: is_buyer_maker must be true/false")
            df = pl.DataFrame(
                {
                    "exchange": exchange,
                    "symbol": std,
                    "ts": _seconds(c[5]),
                    "receipt_ts": now,
                    "id": c[0].cast(pl.Int64, strict=True).cast(pl.String),
                    "side": pl.select(
                        pl.when(maker == "true").then(pl.lit("sell")).otherwise(pl.lit("buy"))
                    ).to_series(),
                    "price": c[1],
                    "amount": c[2],
                    "type": _nulls(n, pl.String),
                }
            )
            return file.table, df
        if file.kind == "klines":
            c = _read_csv(text, name, 9)
            start, stop = _seconds(c[0]), _seconds(c[6])
            df = pl.DataFrame(
                {
                    "exchange": exchange,
                    "symbol": std,
                    "ts": stop,
                    "receipt_ts": now,
                    "interval": file.interval,
                    "start": start,
                    "stop": stop,
                    "trades": c[8].cast(pl.Int64, strict=True),
                    "open": c[1],
                    "high": c[2],
                    "low": c[3],
                    "close": c[4],
                    "volume": c[5],
                    "closed": True,
                }
            )
            return file.table, df
        if file.kind == "fundingRate":
            c = _read_csv(text, name, 3)
            n = len(c[0])
            df = pl.DataFrame(
                {
                    "exchange": exchange,
                    "symbol": std,
                    "ts": _seconds(c[0]),  # the settlement's calc_time
                    "receipt_ts": now,
                    "mark_price": _nulls(n, pl.String),
                    "index_price": _nulls(n, pl.String),
                    "rate": c[2],
                    "predicted_rate": _nulls(n, pl.String),
                    "next_funding_time": _nulls(n, pl.Float64),
                }
            )
            return file.table, df
        c = _read_csv(text, name, 7)  # bookTicker
        df = pl.DataFrame(
            {
                "exchange": exchange,
                "symbol": std,
                # event_time, as the stream's ticker rows (cryptofeed stamps them with the message's
                # E), so an update seen by both has one (sequence, ts) key in silver
                "ts": _seconds(c[6]),
                "receipt_ts": now,
                "sequence": c[0].cast(pl.Int64, strict=True),
                "bid": c[1],
                "bid_size": c[2],
                "ask": c[3],
                "ask_size": c[4],
                "channel": "ticker",  # the stream's channel of bookTicker updates
            }
        )
        return file.table, df
    except (pl.exceptions.PolarsError, UnicodeDecodeError) as exc:
        raise LakehouseError(f"{name}: corrupt CSV ({exc})") from None
