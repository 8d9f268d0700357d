"""The read-only SQL sandbox of the query service: what SQL from the network may do, and the
DuckDB it runs in.

Three layers, each enough to stop most escapes on its own:

1. :func:`check_sql` parses the text with DuckDB's own parser (``duckdb.extract_statements``
   for the statement list and types, ``json_serialize_sql`` for the tree) and accepts exactly one
   ``SELECT`` whose table references are lakehouse tables (:data:`VISIBLE`) or its own CTEs and
   whose table functions are on :data:`TABLE_FUNCTIONS` (``range``, ``generate_series``,
   ``unnest``): COPY, ATTACH, INSTALL, LOAD, PRAGMA, SET, EXPORT, stacked statements,
   ``read_csv``/``read_parquet``/``glob``/``query``/``duckdb_settings()``... are refused with a
   :class:`QueryRejected` naming what is not allowed.
2. :func:`sandbox` is a fresh in-memory DuckDB per query in which only the tables the query names
   are attached (Arrow datasets from delta-rs: DuckDB opens no file itself), then
   ``enable_external_access=false`` (no file, URL or extension) and ``lock_configuration=true``
   (no setting can be changed back), with a memory limit and a thread count.
3. :class:`Deadline` interrupts the query (``connection.interrupt()``: DuckDB stops it, the
   thread is not abandoned) when its time is up; the service counts rows and bytes as it streams.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import duckdb

from crypto_lakehouse.errors import InvalidArgument
from crypto_lakehouse.query.lakehouse import SQL_VIEWS
from crypto_lakehouse.schemas import TABLE_NAMES

if TYPE_CHECKING:
    from crypto_lakehouse.config import ApiLimits
    from crypto_lakehouse.query import AsOf, Lakehouse

__all__ = [
    "HIDDEN",
    "MAX_SQL_CHARS",
    "TABLE_FUNCTIONS",
    "VISIBLE",
    "Deadline",
    "QueryRejected",
    "check_sql",
    "sandbox",
    "sql_hash",
]

HIDDEN = frozenset({"meta.api_keys", "meta.audit"})
"""Tables SQL over HTTP never sees: key hashes and the audit trail."""
VISIBLE = frozenset({*TABLE_NAMES, *SQL_VIEWS} - HIDDEN)
"""``layer.kind`` names a query may read."""
TABLE_FUNCTIONS = frozenset({"range", "generate_series", "unnest"})
"""Table functions a query may call: they read nothing outside the query."""
# scalar functions that read the environment or the engine's state rather than data
_SCALAR_DENIED = frozenset({"getenv", "current_setting", "getvariable", "set_variable"})
MAX_SQL_CHARS = 100_000

_PARSER = duckdb.connect(config={"enable_external_access": False})  # parses only: no table, no file
_PARSER_LOCK = threading.Lock()


class QueryRejected(InvalidArgument):
    """SQL the query service does not run (HTTP 400): the message says what is not allowed."""


def sql_hash(sql: str) -> str:
    """What logs and the audit keep of a query: the first 16 hex digits of its SHA-256 (the text
    may hold literals a user would not want logged)."""
    return hashlib.sha256(sql.encode("utf-8", "surrogatepass")).hexdigest()[:16]


def check_sql(sql: str) -> str:
    """``sql`` if it is one read-only ``SELECT`` over the lakehouse's tables, else
    :class:`QueryRejected` saying why (see the module docstring)."""
    if len(sql) > MAX_SQL_CHARS:
        raise QueryRejected(f"the query is {len(sql)} characters long; at most {MAX_SQL_CHARS} are accepted")
    if "\x00" in sql:
        raise QueryRejected("the query holds a NUL character")
    try:
        statements = duckdb.extract_statements(sql)
    except duckdb.Error as exc:
        raise QueryRejected(f"the query does not parse: {_first_line(exc)}") from None
    if len(statements) != 1:
        raise QueryRejected(f"send exactly one statement, not {len(statements)} (no ';'-separated statements)")
    try:
        kind = statements[0].type
    except ValueError:  # a statement kind duckdb's Python enum lacks (e.g. CONNECT, code 31): not a SELECT
        raise QueryRejected("only SELECT queries are allowed here (the service is read-only)") from None
    if kind != duckdb.StatementType.SELECT:
        name = str(kind).rsplit(".", 1)[-1]
        raise QueryRejected(f"only SELECT queries are allowed here, not {name} (the service is read-only)")
    tree = _parse_tree(sql)
    ctes: set[str] = set()
    tables: list[tuple[str, str, str]] = []
    functions: list[tuple[str, bool]] = []  # (name, is a table function)
    _walk(tree, ctes=ctes, tables=tables, functions=functions)
    for name, table_function in functions:
        if table_function and name not in TABLE_FUNCTIONS:
            raise QueryRejected(
                f"table function {name}() is not allowed: query the lakehouse's tables "
                f"(GET /tables); allowed table functions: {', '.join(sorted(TABLE_FUNCTIONS))}"
            )
        if not table_function and name in _SCALAR_DENIED:
            raise QueryRejected(f"function {name}() is not allowed here")
    for catalog, schema, table in tables:
        full = f"{schema}.{table}"
        if catalog or (schema and full not in VISIBLE) or (not schema and table not in ctes):
            shown = ".".join(p for p in (catalog, schema, table) if p)
            raise QueryRejected(
                f"{shown} is not a table you can query: use layer.kind names such as silver.trades "
                "or gold.ohlcv (GET /tables lists them)"
            )
    return sql


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def _parse_tree(sql: str) -> Any:
    """DuckDB's parse tree of the one SELECT in ``sql`` (``json_serialize_sql``)."""
    with _PARSER_LOCK:
        row = _PARSER.execute("SELECT json_serialize_sql(?)", [sql]).fetchone()
    assert row is not None
    tree = json.loads(row[0])
    if tree.get("error"):
        raise QueryRejected(f"the query is not a plain SELECT: {tree.get('error_message', 'it does not parse')}")
    return tree


def _walk(node: Any, *, ctes: set[str], tables: list[tuple[str, str, str]], functions: list[tuple[str, bool]]) -> None:
    """Collect from the parse tree: CTE names, base-table references (catalog, schema, table),
    and function calls (name, whether it is a table function), lower case, at any depth."""
    if isinstance(node, list):
        for item in node:
            _walk(item, ctes=ctes, tables=tables, functions=functions)
        return
    if not isinstance(node, dict):
        return
    kind = node.get("type")
    if kind == "BASE_TABLE":
        tables.append(
            (
                str(node.get("catalog_name") or "").lower(),
                str(node.get("schema_name") or "").lower(),
                str(node.get("table_name") or "").lower(),
            )
        )
    elif kind == "TABLE_FUNCTION":
        function = node.get("function") or {}
        functions.append((str(function.get("function_name", "")).lower(), True))
        # its arguments are walked below (with the function node, as a scalar call: skip it)
        _walk(function.get("arguments"), ctes=ctes, tables=tables, functions=functions)
        for key, value in node.items():
            if key != "function":
                _walk(value, ctes=ctes, tables=tables, functions=functions)
        return
    elif node.get("class") == "FUNCTION":
        functions.append((str(node.get("function_name", "")).lower(), False))
    cte_map = node.get("cte_map")
    if isinstance(cte_map, dict):
        for entry in cte_map.get("map") or []:
            ctes.add(str(entry.get("key", "")).lower())
    for value in node.values():
        if isinstance(value, dict | list):
            _walk(value, ctes=ctes, tables=tables, functions=functions)


@contextmanager
def sandbox(lakehouse: Lakehouse, sql: str, *, as_of: AsOf, limits: ApiLimits) -> Iterator[duckdb.DuckDBPyConnection]:
    """A fresh DuckDB connection in which ``sql`` (checked by :func:`check_sql`) can run: the
    tables it names attached at ``as_of`` through :meth:`Lakehouse.attach` (Arrow datasets
    only), then external access off and the configuration locked. Closed on exit."""
    con = duckdb.connect(
        config={
            "memory_limit": limits.memory_limit,
            "threads": limits.threads,
            "autoinstall_known_extensions": False,
            "autoload_known_extensions": False,
        }
    )
    try:
        lakehouse.attach(con, sql, as_of=as_of, extension=False, only=VISIBLE)
        con.execute("SET enable_external_access = false")
        con.execute("SET lock_configuration = true")
        yield con
    finally:
        con.close()


class Deadline:
    """Interrupts ``con``'s running query ``seconds`` from now (``connection.interrupt()``);
    :attr:`expired` tells afterwards whether it did. Cancel it when the query is done."""

    def __init__(self, con: duckdb.DuckDBPyConnection, seconds: float) -> None:
        self.expired = False
        self._con = con
        self._timer = threading.Timer(seconds, self._fire)
        self._timer.daemon = True
        self._timer.start()

    def _fire(self) -> None:
        self.expired = True
        self._con.interrupt()

    def cancel(self) -> None:
        self._timer.cancel()
