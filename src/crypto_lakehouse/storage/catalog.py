"""The table catalog: ``layer.kind`` -> ``<root>/<layer>/<kind>`` Delta tables.

The only module that knows whether the root is a local path or an object store URL; everything
else passes table names. Appends are ACID Delta commits, optionally tagged with an application
transaction ``(app_id, version)`` so a batch is committed at most once even when retried.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, NotRequired, TypedDict, cast
from urllib.parse import unquote

import polars as pl
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
from deltalake import CommitProperties, DeltaTable, Transaction, WriterProperties, write_deltalake
from deltalake import Schema as DeltaSchema
from deltalake.exceptions import TableNotFoundError
from deltalake.transaction import AddAction, RemoveAction
from pydantic import SecretStr

import crypto_lakehouse.storage._parquet as _parquet
from crypto_lakehouse.config import REDACTED, is_secret
from crypto_lakehouse.errors import (
    CommitError,
    FilesRewritten,
    InvalidArgument,
    LakehouseError,
    TableBusy,
    TableNotFound,
    VersionNotFound,
)
from crypto_lakehouse.schemas import TableSpec, table_spec
from crypto_lakehouse.storage.frames import to_frame

if TYPE_CHECKING:  # pyarrow.dataset imports pandas (~1.6 s): only the reads that need it load it
    import pyarrow.dataset as pads

    from crypto_lakehouse.config import Settings

__all__ = ["TABLE_PROPERTIES", "Catalog", "CommitError", "TableSummary", "normalise_root"]

LOG = logging.getLogger(__name__)

# Deliberate retention, per layer. Silver, gold and meta commit every few minutes: 30 days of log
# for time travel, removed files listed in checkpoints for 7 days. Bronze commits about once a
# second per table: opening a table lists its whole log directory on local disk (~2 us a file)
# and reads every tombstone of its checkpoint (~1.4 us each), so 30 days of log would be 2.6M
# files: bronze keeps 6 hours of log (cleaned hourly) and 1 hour of tombstones (= its vacuum horizon, see
# MaintenanceSettings). No deletion vectors: readers of any age can read every table.
# Every append loads the table and delta-rs replays the log since the last checkpoint again to
# commit, so an append's CPU grows with the commits since it: bronze checkpoints every 10
# versions (20k-row appends: 34 ms of CPU on average over 150 commits, against 63 ms at 100;
# 138 against 181 ms with 50 partitions a commit; benchmarks/commit_cost.py), the other layers
# every 100 (a commit every few minutes, and 30 days of log each checkpoint stays in).
_COMMON: dict[str, str] = {
    # log clean-up only from `lakehouse maintain checkpoint`, which keeps the log tags need
    "delta.enableExpiredLogCleanup": "false",
}
TABLE_PROPERTIES: dict[str, dict[str, str]] = {
    "bronze": {
        "delta.logRetentionDuration": "interval 6 hours",
        "delta.deletedFileRetentionDuration": "interval 1 hours",
        "delta.checkpointInterval": "10",
        **_COMMON,
    },
    **{
        layer: {
            "delta.logRetentionDuration": "interval 30 days",
            "delta.deletedFileRetentionDuration": "interval 7 days",
            "delta.checkpointInterval": "100",
            **_COMMON,
        }
        for layer in ("silver", "gold", "meta")
    },
}
_HELD = threading.local()  # the lock files (Catalog.lock) this thread holds
_COMPRESSION_LEVEL = 3  # ZSTD, both writers (see Catalog._append_files)
_WRITER = WriterProperties(compression="ZSTD", compression_level=_COMPRESSION_LEVEL)


class _S3Options(TypedDict, total=False):
    """The ``pyarrow.fs.S3FileSystem`` options a catalog sets (None: pyarrow's default)."""

    access_key: str | None
    secret_key: str | None
    session_token: str | None
    region: str | None
    scheme: Literal["http", "https"]
    endpoint_override: str | None


class TableSummary(TypedDict):
    """:meth:`Catalog.summary`: a table that does not exist has only the first three keys."""

    table: str
    exists: bool
    uri: str
    version: NotRequired[int]
    rows: NotRequired[int]
    files: NotRequired[int]
    bytes: NotRequired[int]


def normalise_root(root: str | Path) -> str:
    """One spelling per place: a local root (``./dir``, ``/abs``, ``file:///abs``) becomes its
    absolute path, so every reader, writer and maintenance task (and delta-rs, which would read
    ``file:`` as a relative directory name in some calls) sees the same table; an object store URL
    (``s3://bucket/prefix``) is kept, less a trailing slash."""
    text = str(root)
    if text.startswith("file://"):
        text = text.removeprefix("file://") or "/"
    if "://" in text:
        return text.rstrip("/")
    return os.path.abspath(os.path.expanduser(text))


class _Options(dict[str, str]):
    """A catalog's storage options, in clear (delta-rs, Polars and pyarrow take them as they are)
    but printed with every secret (:func:`~crypto_lakehouse.config.is_secret`) as ``**********``:
    its ``repr`` and ``str``, so also those of anything holding it (a dataclass a job ships to a
    Dask worker, an f-string, a log line). It pickles as itself. A copy (``dict(...)``, ``{**o}``)
    or its items are clear text: never print those."""

    def __repr__(self) -> str:
        return repr({name: REDACTED if is_secret(name) else value for name, value in self.items()})

    __str__ = __repr__


class Catalog:
    """Delta tables under one storage root.

    ``storage_options`` may hold secrets (a :class:`pydantic.SecretStr` each, as the settings
    hold them, or text): the catalog unwraps them here, the one place, into what it hands to
    delta-rs, Polars and pyarrow, which prints its secrets as ``**********`` (:class:`_Options`);
    the catalog's own ``repr`` shows the root only."""

    def __init__(self, root: str | Path, *, storage_options: Mapping[str, str | SecretStr] | None = None):
        self.root = normalise_root(root)
        self.storage_options: dict[str, str] | None = (
            _Options(
                (name, value.get_secret_value() if isinstance(value, SecretStr) else value)
                for name, value in (storage_options or {}).items()
            )
            or None
        )
        self.is_local = "://" not in self.root
        if self.is_local and os.path.exists(self.root) and not os.path.isdir(self.root):
            raise InvalidArgument(
                f"storage root {self.root} is a file: give a directory (created on the first write) "
                "or s3://bucket/prefix"
            )

    @classmethod
    def from_settings(cls, settings: Settings, *, root: str | Path | None = None) -> Catalog:
        """The catalog of ``settings`` (its root, or ``root``, with its storage options)."""
        return cls(root or settings.root, storage_options=settings.storage_options)

    def __repr__(self) -> str:
        return f"Catalog({self.root!r})"

    def uri(self, table: str) -> str:
        spec = table_spec(table)
        return f"{self.root}/{spec.layer}/{spec.kind}"

    def exists(self, table: str) -> bool:
        return DeltaTable.is_deltatable(self.uri(table), storage_options=self.storage_options)

    def create(self, table: str) -> None:
        """Create ``table`` with no rows unless it exists (a concurrent creator winning is fine)."""
        if self.exists(table):
            return
        try:
            self.append(table, table_spec(table).schema.empty_table())
        except Exception:  # noqa: BLE001 - a racing creator won: the table exists now
            if not self.exists(table):
                raise

    def open(self, table: str, *, version: int | None = None) -> DeltaTable:
        """The Delta table, at ``version`` if given. :class:`TableNotFound` if it does not exist,
        :class:`VersionNotFound` if it does but ``version``'s log cannot be found."""
        try:
            return DeltaTable(self.uri(table), version=version, storage_options=self.storage_options)
        except TableNotFoundError:
            if version is not None and self.exists(table):
                raise VersionNotFound(f"version {version} of {table} cannot be found under {self.root}") from None
            raise TableNotFound(f"table {table} does not exist yet under {self.root}") from None

    def dataset(self, table: str, *, version: int | None = None) -> pads.Dataset:
        """``table`` (at ``version``) as a pyarrow dataset read through pyarrow's **native**
        filesystem (local disk, or S3 from the storage options). deltalake's default, a Python
        ``PyFileSystem`` over its Rust object store, makes about 1 in 2 processes that read through
        it abort at interpreter exit on this machine ("terminate called without an active
        exception", exit code 134): pyarrow's I/O threads still call into it while Python shuts
        down. docs/reading.md has the same workaround for code that uses deltalake directly."""
        dt = self.open(table, version=version)
        return dt.to_pyarrow_dataset(filesystem=pafs.SubTreeFileSystem(self._fs_path(table), self._filesystem()))

    def read(self, table: str, *, version: int | None = None) -> pa.Table:
        """The whole of ``table`` (at ``version``) as one Arrow table (see :meth:`dataset`)."""
        return self.dataset(table, version=version).to_table()

    def scan(self, table: str, *, version: int | None = None) -> pl.LazyFrame:
        """``table`` (at ``version``) as a lazy Polars scan with this catalog's storage options:
        partition pruning and predicate pushdown on what the caller filters."""
        return pl.scan_delta(self.uri(table), version=version, storage_options=self.storage_options)

    def frame(self, table: str, *, version: int | None = None) -> pl.DataFrame:
        """The whole of ``table`` (at ``version``) as one Polars frame: :meth:`scan` collected."""
        return self.scan(table, version=version).collect()

    @staticmethod
    def scan_snapshot(snapshot: DeltaTable) -> pl.LazyFrame:
        """A lazy Polars scan of ``snapshot``, a version of a table :meth:`open` returned (the
        scan reads that version, whatever has been committed since)."""
        return pl.scan_delta(snapshot)

    def unchanged_since(self, table: str, version: int) -> bool | None:
        """Whether ``version`` is known to be the latest version of ``table`` without loading it:
        on local disk, one stat (Delta versions are contiguous, so no ``<version + 1>.json``
        means no newer commit), where an update lists the whole log directory. None on an object
        store (cannot tell that cheaply: there an update lists from an offset and is as cheap)."""
        if not self.is_local:
            return None
        return not Path(self.uri(table), "_delta_log", f"{version + 1:020d}.json").exists()

    def duckdb_source(self, table: str) -> str | None:
        """A DuckDB ``delta_scan(...)`` expression reading the latest version of ``table``, or
        None when DuckDB's delta extension cannot read it with this catalog's settings (an object
        store: its credentials are not passed to DuckDB)."""
        if not self.is_local:
            return None
        return "delta_scan('{}')".format(self.uri(table).replace("'", "''"))

    def lock_file(self, table: str, *, purpose: str) -> Path:
        """A lock file for ``purpose`` on ``table``: beside the data for a local root (every process
        using that root shares it); for an object store, in this host's temp directory (processes
        on other hosts do not see it)."""
        if self.is_local:
            return Path(self.root) / "_locks" / f"{table}.{purpose}.lock"
        digest = hashlib.sha256(self.uri(table).encode()).hexdigest()[:16]
        return Path(tempfile.gettempdir()) / "crypto-lakehouse-locks" / f"{digest}.{purpose}.lock"

    @contextmanager
    def lock(self, table: str, *, purpose: str, wait: bool = True, reentrant: bool = False) -> Iterator[None]:
        """Hold the exclusive lock for ``purpose`` on ``table`` (:meth:`lock_file`) for the block;
        :class:`TableBusy` at once if another process or thread holds it and ``wait`` is False.
        ``reentrant``: a thread that holds it already goes on inside (else it waits for itself).

        ``purpose="rewrite"`` is the lock of whatever removes a table's data files: compaction,
        and a distributed write's commit that replaces files (:meth:`commit_staged`)."""
        import fcntl

        path = self.lock_file(table, purpose=purpose)
        held: set[Path] = _HELD.__dict__.setdefault("paths", set())
        if reentrant and path in held:
            yield
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a") as fh:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
            except BlockingIOError:
                raise TableBusy(f"{table}: the {purpose} lock is held by another process or thread") from None
            held.add(path)
            try:
                yield
            finally:
                held.discard(path)
                fcntl.flock(fh, fcntl.LOCK_UN)

    def stored_files(self, table: str) -> tuple[int, int]:
        """Data files of ``table`` and their bytes. On local disk every Parquet file under the
        table, referenced or not (what vacuum can free); on an object store, the latest
        version's files."""
        if not self.is_local:
            s = self.summary(table)
            return s.get("files", 0), s.get("bytes", 0)
        files = list(Path(self.uri(table)).rglob("*.parquet"))
        return len(files), sum(p.stat().st_size for p in files)

    def _fs_path(self, table: str) -> str:
        uri = self.uri(table)
        return uri if self.is_local else uri.split("://", 1)[1]

    def _filesystem(self) -> pafs.FileSystem:
        if self.is_local:
            return pafs.LocalFileSystem()
        scheme = self.root.split("://", 1)[0]
        if scheme not in ("s3", "s3a"):
            raise LakehouseError(f"unsupported storage root {self.root!r}: a local path or s3://bucket/prefix")
        opts = {k.lower(): v for k, v in (self.storage_options or {}).items()}
        endpoint = opts.get("aws_endpoint_url") or opts.get("endpoint_url") or opts.get("aws_endpoint")
        kwargs = _S3Options(
            access_key=opts.get("aws_access_key_id"),
            secret_key=opts.get("aws_secret_access_key"),
            session_token=opts.get("aws_session_token"),
            region=opts.get("aws_region") or opts.get("region"),
        )
        if endpoint:
            scheme, _, kwargs["endpoint_override"] = endpoint.rpartition("://")
            scheme = scheme or ("http" if opts.get("aws_allow_http") == "true" else "https")
            kwargs["scheme"] = cast(Literal["http", "https"], scheme)  # any other: pyarrow raises ArrowInvalid
        return pafs.S3FileSystem(**kwargs)

    def transaction_version(self, table: str, app_id: str) -> int | None:
        """The last transaction version committed by ``app_id`` (None: never, or no table)."""
        if not self.exists(table):
            return None
        return self.open(table).transaction_version(app_id)

    def append(
        self,
        table: str,
        data: pa.Table,
        *,
        app_id: str | None = None,
        version: int | None = None,
        retries: int = 0,
        backoff_s: float = 0.2,
    ) -> bool:
        """Append ``data`` as one commit; returns False if ``(app_id, version)`` was already
        committed (nothing written). Retries with exponential backoff, checking the
        transaction before each retry so an ambiguous failure never commits twice."""
        spec = table_spec(table)
        delay = backoff_s
        for attempt in range(retries + 1):
            try:
                if app_id is not None and version is not None and attempt > 0:
                    done = self.transaction_version(table, app_id)
                    if done is not None and done >= version:
                        return False
                self._write(spec, data, app_id, version)
                return True
            except Exception as exc:  # storage errors come in many types (IO, object store, commit)
                if attempt == retries:
                    raise CommitError(f"append to {table} failed after {retries + 1} attempts: {exc}") from exc
                LOG.warning("append to %s failed (%s); retry %d/%d in %.2fs", table, exc, attempt + 1, retries, delay)
                time.sleep(delay)
                delay *= 2
        raise AssertionError("unreachable")

    def append_against(
        self, table: str, data: pa.Table, *, snapshot: DeltaTable, transactions: Sequence[tuple[str, int]] = ()
    ) -> None:
        """Append ``data`` as one commit made against ``snapshot`` (an open version of ``table``,
        not necessarily the latest): delta-rs checks every commit since it for a conflict and
        raises :class:`deltalake.exceptions.CommitFailedError` on one, so a caller that decided
        what to write from ``snapshot`` (say, rows not yet in it) reads again and retries.
        ``transactions`` (app id, version) are recorded in the same commit."""
        self._write(table_spec(table), data, None, None, target=snapshot, transactions=transactions)

    def replace(
        self,
        table: str,
        data: pa.Table,
        *,
        predicate: str | None = None,
        app_id: str | None = None,
        version: int | None = None,
        transactions: Sequence[tuple[str, int]] = (),
        snapshot: DeltaTable | None = None,
    ) -> None:
        """One atomic commit that replaces the rows matching ``predicate`` (SQL, delta-rs syntax)
        with ``data``, or the whole table when ``predicate`` is None; creates the table if it
        does not exist. ``(app_id, version)`` and ``transactions`` (app id, version: a job
        consuming several tables records its progress in each) go in the same commit.

        ``snapshot``: the open version of ``table`` the rows were computed from; the commit is
        made against it, so one since that touched the replaced rows raises
        :class:`deltalake.exceptions.CommitFailedError` instead of being overwritten unseen."""
        exists = snapshot is not None or self.exists(table)
        self._write(
            table_spec(table),
            data,
            app_id,
            version,
            mode="overwrite" if exists or predicate is None else "append",
            predicate=predicate if exists else None,
            transactions=transactions,
            target=snapshot,
        )

    def overwrite(self, table: str, data: pa.Table, *, snapshot: DeltaTable | None = None) -> None:
        """Replace a small table's whole content in one commit (state tables like silver.gaps),
        against ``snapshot`` if given (see :meth:`replace`)."""
        self.replace(table, data, snapshot=snapshot)

    def changes(self, table: str, *, after: int | None, upto: int) -> pa.Table:
        """Rows appended by commits ``after`` < version <= ``upto`` (all rows if ``after`` is None).

        Reads only the files those commits added (compaction adds no rows here)."""
        if after is None:
            return self.read(table, version=upto)
        try:
            appends = self._append_versions(table, range(after + 1, upto + 1))
            reader = self.open(table, version=upto).load_cdf(starting_version=after + 1, ending_version=upto)
            data = pa.table(reader.read_all())
            if data.num_rows:  # (filtered in Polars: Arrow's kernels lack the string_view type delta-rs emits)
                data = to_frame(data).filter(pl.col("_commit_version").is_in(appends)).to_arrow()
        except Exception as exc:  # e.g. log files past retention: fall back to the whole snapshot
            LOG.warning("reading %s changes %d..%d failed (%s); reading the whole table", table, after + 1, upto, exc)
            return self.read(table, version=upto)
        return data.drop_columns(
            [c for c in ("_change_type", "_commit_version", "_commit_timestamp") if c in data.column_names]
        )

    def _append_versions(self, table: str, versions: range) -> list[int]:
        """The versions in ``versions`` whose commit is a plain append (WRITE, mode Append)."""
        return sorted({v for v, _, _ in self._appends(table, versions)})

    def appended_files(self, table: str, *, after: int, upto: int) -> list[tuple[str, dict[str, str]]]:
        """The data files the plain appends ``after`` < version <= ``upto`` added to ``table``
        (path relative to its root, partition values): the rows those commits brought, for a
        worker to read (:meth:`read_files`). Compaction's files are not among them (they add no
        rows)."""
        return [(path, values) for _, path, values in self._appends(table, range(after + 1, upto + 1)) if path]

    def _appends(self, table: str, versions: range) -> list[tuple[int, str, dict[str, str]]]:
        """(version, added file, its partition values) of each plain append (WRITE, mode Append,
        no file removed) in ``versions`` (``""`` for an append that added no file), read from each commit's own log
        file: ``DeltaTable.history()`` cannot be used, as deltalake 1.6.6 numbers the newest
        commits in storage from the *loaded* version, so commits landing while it runs shift every
        number (an append read as the OPTIMIZE before it)."""
        fs, log = self._filesystem(), f"{self._fs_path(table)}/_delta_log"
        out = []
        for v in versions:
            with fs.open_input_stream(f"{log}/{v:020d}.json") as fh:
                actions = [json.loads(line) for line in fh.read().decode().splitlines() if line.strip()]
            info: dict[str, Any] = next((a["commitInfo"] for a in actions if "commitInfo" in a), {})
            params: dict[str, Any] = info.get("operationParameters") or {}
            if (
                info.get("operation") != "WRITE"
                or "Append" not in str(params.get("mode", ""))
                or any("remove" in a for a in actions)  # (a distributed replace: not rows added)
            ):
                continue
            adds = [a["add"] for a in actions if "add" in a]
            out += [
                (v, unquote(a["path"]), {k: str(x) for k, x in (a.get("partitionValues") or {}).items()}) for a in adds
            ] or [(v, "", {})]
        return out

    def _write(
        self,
        spec: TableSpec,
        data: pa.Table,
        app_id: str | None,
        version: int | None,
        *,
        mode: Literal["append", "overwrite"] = "append",
        predicate: str | None = None,
        target: DeltaTable | None = None,
        transactions: Sequence[tuple[str, int]] = (),
    ) -> None:
        """The one place tables are written: layout, properties, compression, progress txn.
        ``target``: an open snapshot to commit against (conflicts since it are checked).

        Appends evolve a table additively: a table made by an earlier release gains the
        (nullable) columns its schema has had since, its old rows reading null there. Only the
        schema's own columns can be added that way."""
        extra = set(data.schema.names) - set(spec.schema.names)
        if extra:
            raise LakehouseError(f"{spec.name} has no column(s) {sorted(extra)}: not written")
        if self.is_local and target is None:
            Path(self.uri(spec.name)).parent.mkdir(parents=True, exist_ok=True)
        apps = [*transactions, *_transaction(app_id, version)]
        if mode == "append" and target is None and predicate is None and self._append_files(spec, data, apps):
            return
        commit = (
            CommitProperties(app_transactions=[Transaction(app_id=a, version=v) for a, v in apps]) if apps else None
        )
        if target is not None or self.exists(spec.name):
            # the column docs are the table's since it was made: delta-rs refuses to merge a doc that
            # changed since ("Cannot merge metadata with different values for key doc"), which made
            # a lake made by an earlier release unwritable (spooled batches never drained)
            data = data.cast(pa.schema([f.remove_metadata() for f in data.schema]))
        if any(column.num_chunks > 1 for column in data.columns):
            # deltalake 1.6.6's writer writes the chunks of a many-chunk table out of order (6 of 6
            # new tables from 3 concatenated pieces): one chunk a column keeps the rows' order
            data = data.combine_chunks()
        where = target if target is not None else self.uri(spec.name)
        partition_by = list(spec.partition_by) or None
        storage_options = None if target is not None else self.storage_options
        if mode == "overwrite":  # (deltalake types `predicate` for overwrites only)
            write_deltalake(
                where,
                data,
                mode=mode,
                predicate=predicate,
                partition_by=partition_by,
                configuration=TABLE_PROPERTIES[spec.layer],
                storage_options=storage_options,
                writer_properties=_WRITER,
                commit_properties=commit,
            )
        else:
            assert predicate is None, "a predicate needs mode='overwrite'"
            write_deltalake(
                where,
                data,
                mode=mode,
                schema_mode="merge",
                partition_by=partition_by,
                configuration=TABLE_PROPERTIES[spec.layer],
                storage_options=storage_options,
                writer_properties=_WRITER,
                commit_properties=commit,
            )

    def _append_files(self, spec: TableSpec, data: pa.Table, transactions: Sequence[tuple[str, int]]) -> bool:
        """Append ``data`` by writing its Parquet files with pyarrow, a partition a thread, and
        committing them with delta-rs (:mod:`crypto_lakehouse.storage._parquet`): about twice as
        fast as ``write_deltalake`` on 2 cores. Only a plain append to a table that exists with
        ``spec``'s columns and partitioning, of rows with every column of ``spec`` that cast to
        its types, in partitions whose values are safe in a path unescaped; otherwise returns
        False having written nothing (``write_deltalake`` then creates, evolves or escapes)."""
        if not data.num_rows:
            return False
        try:
            snapshot = self.open(spec.name)
        except TableNotFound:
            return False
        actions = self._files_for(spec, snapshot, data)
        if actions is None:
            return False
        _parquet.commit(snapshot, actions, partition_by=spec.partition_by, transactions=transactions)
        return True

    def _files_for(self, spec: TableSpec, snapshot: DeltaTable, data: pa.Table) -> list[AddAction] | None:
        """Write ``data``'s Parquet files into ``snapshot``'s table, uncommitted, and return their
        ``add`` actions; None (nothing written) when they cannot be added to it as they are (see
        :meth:`_append_files`)."""
        fields = {f.name: f.remove_metadata() for f in spec.schema}
        if sorted(data.schema.names) != sorted(fields):
            return None
        columns = _plain_columns(snapshot, spec)
        if columns is None:
            return None
        schema = pa.schema([fields[name] for name in columns])  # the table's order
        try:
            data = data.select(columns).cast(schema)  # (a null in a non-null column raises)
        except pa.ArrowException:
            return None
        parts = _parquet.split(data, spec.partition_by)
        if parts is None:
            return None
        return _parquet.write_partitions(
            parts,
            filesystem=self._filesystem(),
            root=self._fs_path(spec.name),
            schema=pa.schema([f for f in schema if f.name not in spec.partition_by]),
            local=self.is_local,
            compression_level=_COMPRESSION_LEVEL,
        )

    def stage(self, table: str, data: pa.Table) -> list[AddAction]:
        """Write ``data`` as data files of ``table`` (which exists) **without committing them**,
        and return their ``add`` actions: the worker half of a distributed write, whose
        coordinator commits the actions of every worker at once (:meth:`commit_staged`). Until
        then no reader sees the files; if that commit never comes, vacuum removes them.

        The rows must have ``table``'s columns, cast to its types, and partition values that
        are plain text (letters, digits, ``._-``); :class:`LakehouseError` otherwise."""
        if not data.num_rows:
            return []
        spec = table_spec(table)
        actions = self._files_for(spec, self.open(table), data)
        if actions is None:
            raise LakehouseError(
                f"{table}: these rows cannot be staged as files (columns {sorted(data.schema.names)}, the table's "
                "schema or partition values need delta-rs' own writer): run the job in-process (runner none)"
            )
        return actions

    def commit_staged(
        self,
        table: str,
        files: Sequence[AddAction],
        *,
        snapshot: DeltaTable,
        transactions: Sequence[tuple[str, int]] = (),
        removes: Sequence[str] = (),
    ) -> None:
        """Commit ``files`` (from :meth:`stage`, by any number of workers) and the application
        transactions ``transactions`` (app id, version) as **one** commit of ``table``, made
        against ``snapshot``: :class:`deltalake.exceptions.CommitFailedError` if a commit since
        it carried one of the same app ids (a racing job), in which case nothing is committed.

        ``removes``: data files of ``snapshot`` (paths relative to the table's root) the commit
        removes (the rows ``files`` replace). :class:`FilesRewritten` (nothing committed) if one
        of them is no longer in the table's latest version (a compaction rewrote it)."""
        partition_by = table_spec(table).partition_by
        if not removes:
            _parquet.commit(snapshot, files, partition_by=partition_by, transactions=transactions)
            return
        known = {f["path"]: f for f in _file_list(snapshot)}
        unknown = [p for p in removes if p not in known]
        if unknown:
            raise LakehouseError(f"{table}: {unknown[:3]} are not files of version {snapshot.version()}")
        now_ms = int(time.time() * 1000)
        gone = [
            RemoveAction(
                p,
                data_change=True,
                deletion_timestamp=now_ms,
                size=known[p]["size"],
                partition_values={k: known[p]["values"].get(k) for k in partition_by},
            )
            for p in removes
        ]
        # delta-rs 1.6 does not check a remove against a concurrent compaction that removed the
        # same file (both commits land: the compacted copy's rows come back). Compaction takes
        # this lock, so no file can go between this check of the latest version and the commit.
        with self.lock(table, purpose="rewrite"):
            active = {p for p, _ in self.active_files(table)}
            missing = [p for p in removes if p not in active]
            if missing:
                raise FilesRewritten(
                    f"{table}: {len(missing)} file(s) this commit replaces were rewritten since version "
                    f"{snapshot.version()}; stage again"
                )
            _parquet.commit(snapshot, [*files, *gone], partition_by=partition_by, transactions=transactions)

    def read_files(self, table: str, files: Sequence[tuple[str, Mapping[str, str]]]) -> pa.Table:
        """The rows of data files of ``table`` (paths relative to its root, with their partition
        values), in ``table``'s columns: what a worker reads of the files a coordinator listed
        (:meth:`appended_files`), whether or not a later commit has removed them since."""
        spec = table_spec(table)
        fs, root = self._filesystem(), self._fs_path(table)
        parts = []
        for path, values in files:
            with fs.open_input_file(f"{root}/{path}") as fh:
                data = pq.read_table(fh)
            n = data.num_rows
            for name in spec.partition_by:
                field = spec.schema.field(name)
                data = data.append_column(
                    field, pa.repeat(pa.scalar(values.get(name), pa.string()).cast(field.type), n)
                )
            missing = [f for f in spec.schema if f.name not in data.schema.names]  # (files of an older schema)
            for field in missing:
                data = data.append_column(field, pa.nulls(n, field.type))
            parts.append(data.select(spec.schema.names).cast(spec.schema))
        return pa.concat_tables(parts) if parts else spec.schema.empty_table()

    def active_files(self, table: str, *, version: int | None = None) -> list[tuple[str, dict[str, str]]]:
        """The data files of ``table`` at ``version`` (default: the latest): (path relative to
        the table's root, partition values)."""
        return [(f["path"], f["values"]) for f in _file_list(self.open(table, version=version))]

    def files_overlapping(
        self,
        table: str,
        *,
        version: int,
        column: str,
        ranges: Sequence[tuple[Mapping[str, str], datetime, datetime]],
    ) -> list[tuple[str, dict[str, str]]]:
        """The data files of ``table`` at ``version`` that may hold a row of one of ``ranges``: a
        partition (its values as text) and ``[lo, hi)`` of ``column``, going by the files'
        statistics (a file without them may hold any value); as :meth:`active_files`. Every
        partition names the same columns."""
        names = sorted({k for partition, _, _ in ranges for k in partition})
        by_partition: dict[tuple[str | None, ...], list[tuple[datetime, datetime]]] = {}
        for partition, lo, hi in ranges:
            by_partition.setdefault(tuple(partition.get(k) for k in names), []).append((lo, hi))
        out = []
        for f in _file_list(self.open(table, version=version), column=column):
            key = tuple(f["values"].get(k) for k in names)
            spans = by_partition.get(key, [])
            low, high = f["min"], f["max"]
            # (delta-rs truncates a timestamp's maximum to the millisecond: widen it by one)
            if spans and (low is None or high is None or any(low < hi and lo <= high + _MS for lo, hi in spans)):
                out.append((f["path"], f["values"]))
        return out

    def summary(self, table: str) -> TableSummary:
        """Rows, version, data files and location of a table (for demos and CLIs)."""
        if not self.exists(table):
            return {"table": table, "exists": False, "uri": self.uri(table)}
        dt = self.open(table)
        actions = dt.get_add_actions(flatten=True)
        rows = sum(actions.column("num_records").to_pylist()) if actions.num_rows else 0
        size = sum(actions.column("size_bytes").to_pylist()) if actions.num_rows else 0
        return {
            "table": table,
            "exists": True,
            "uri": self.uri(table),
            "version": dt.version(),
            "rows": rows,
            "files": actions.num_rows,
            "bytes": size,
        }


_MS = timedelta(milliseconds=1)


class _File(TypedDict):
    path: str
    size: int
    values: dict[str, str]
    min: Any
    max: Any


def _file_list(snapshot: DeltaTable, *, column: str | None = None) -> list[_File]:
    """``snapshot``'s data files: path (relative to the table's root), size, partition values as
    text, and the statistics' bounds of ``column`` (None where not recorded)."""
    actions = pa.table(snapshot.get_add_actions(flatten=True))
    wanted = {"path", "size_bytes", *(f"{b}.{column}" for b in ("min", "max") if column)}
    actions = actions.select([c for c in actions.column_names if c in wanted or c.startswith("partition.")])
    rows = actions.to_pylist()
    out: list[_File] = []
    for row in rows:
        values = {
            k.removeprefix("partition."): v.isoformat() if isinstance(v, date) else str(v)
            for k, v in row.items()
            if k.startswith("partition.") and v is not None
        }
        low = row.get(f"min.{column}") if column else None
        high = row.get(f"max.{column}") if column else None
        out.append({"path": row["path"], "size": row["size_bytes"], "values": values, "min": low, "max": high})
    return out


def _plain_columns(snapshot: DeltaTable, spec: TableSpec) -> list[str] | None:
    """The columns of ``snapshot`` in its order, if files of ``spec``'s columns can be added to it
    as they are (else None): its columns are ``spec``'s (names, types, nullability; their docs
    and order aside: a column added by schema evolution comes last), partitioned the same, at
    writer protocol 2 at most with no column invariants (nothing to check in the rows), and
    statistics kept for every column (no ``delta.dataSkipping*`` setting)."""
    ours = json.loads(DeltaSchema.from_arrow(spec.schema).to_json())["fields"]
    theirs = json.loads(snapshot.schema().to_json())["fields"]
    meta = snapshot.metadata()
    plain = (
        sorted(map(_bare, theirs)) == sorted(map(_bare, ours))
        and not any("delta.invariants" in (f.get("metadata") or {}) for f in theirs)
        and list(meta.partition_columns) == list(spec.partition_by)
        and snapshot.protocol().min_writer_version <= 2
        and not any(k.startswith("delta.dataSkipping") for k in meta.configuration)
    )
    return [f["name"] for f in theirs] if plain else None


def _bare(field: dict[str, Any]) -> tuple[str, str, bool]:
    """A Delta schema field (JSON) less its metadata."""
    return field["name"], json.dumps(field["type"], sort_keys=True), bool(field["nullable"])


def _transaction(app_id: str | None, version: int | None) -> list[tuple[str, int]]:
    """The ``(app_id, version)`` application transaction to record, if any."""
    if app_id is None:
        return []
    if version is None:
        raise TypeError(f"transaction {app_id!r} needs a version")
    return [(app_id, version)]
