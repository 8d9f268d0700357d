"""API keys and roles of the query service.

A key is ``lhk_<id>_<secret>``: ``id`` (12 hex digits) is public (listed, logged, audited),
``secret`` (32 random bytes, URL-safe base64) is known only to whoever holds the key. The
``meta.api_keys`` Delta table (through the catalog, like every table) keeps per key its id, role,
note, creation and revocation times and an **argon2id** hash of the whole key (argon2-cffi's
defaults: salted, 64 MiB, 3 passes): the key itself is printed once by ``lakehouse keys create``
and stored nowhere. Keys are managed over the CLI only, by whoever can write the storage root:
no HTTP route can create a key or raise a role, so a leaked admin key cannot mint others.

Roles, each including the ones before it:

- ``reader``: SQL, tables, history, tags list, metrics;
- ``operator``: + create and delete tags;
- ``admin``: + everything added later for administration (nothing more over HTTP today).
"""

from __future__ import annotations

import hashlib
import secrets
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal, get_args

import polars as pl
import pyarrow as pa
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from crypto_lakehouse.errors import InvalidArgument, LakehouseError
from crypto_lakehouse.schemas import table_spec
from crypto_lakehouse.storage import Catalog

__all__ = ["ROLES", "ApiKey", "KeyStore", "Role", "create_key", "list_keys", "revoke_key", "role_allows"]

Role = Literal["reader", "operator", "admin"]
ROLES: tuple[Role, ...] = get_args(Role)
_TABLE = "meta.api_keys"
_PREFIX = "lhk"
_HASHER = PasswordHasher()
_MAX_REFUSED = 10_000
_RANK: dict[str, int] = {role: rank for rank, role in enumerate(ROLES)}


def role_allows(role: str, needed: Role) -> bool:
    """Whether ``role`` may do what ``needed`` may (roles include the ones below them)."""
    return _RANK.get(role, -1) >= _RANK[needed]


@dataclass(frozen=True, slots=True)
class ApiKey:
    """A key as the service knows it once it has been verified: its public id and role."""

    id: str
    role: Role


def _check_role(role: str) -> Role:
    for known in ROLES:
        if role == known:
            return known
    raise InvalidArgument(f"unknown role {role!r}: choose {', '.join(ROLES)}")


def create_key(catalog: Catalog, *, role: str, note: str | None = None) -> tuple[str, str]:
    """A new key of ``role``: ``(id, key)``. Only its hash is stored; the key is not recoverable."""
    checked = _check_role(role)
    key_id = secrets.token_hex(6)
    key = f"{_PREFIX}_{key_id}_{secrets.token_urlsafe(32)}"
    row = {
        "id": key_id,
        "role": checked,
        "hash": _HASHER.hash(key),
        "created_at": datetime.now(UTC),
        "revoked_at": None,
        "note": note,
    }
    catalog.append(_TABLE, pa.Table.from_pylist([row], schema=table_spec(_TABLE).schema))
    return key_id, key


def list_keys(catalog: Catalog) -> pl.DataFrame:
    """Every key: id, role, created_at, revoked_at, note (never the hash)."""
    return _rows(catalog).drop("hash")


def revoke_key(catalog: Catalog, key_id: str) -> None:
    """Revoke key ``key_id`` (a running service refuses it from its next request on)."""
    rows = _rows(catalog).filter(pl.col("id") == key_id)
    if rows.is_empty():
        raise InvalidArgument(f"no API key with id {key_id!r} (lakehouse keys list)")
    if rows["revoked_at"][0] is not None:
        return
    revoked = rows.with_columns(pl.lit(datetime.now(UTC)).dt.cast_time_unit("us").alias("revoked_at"))
    spec = table_spec(_TABLE)
    # ids are hex digits (checked by the filter above), so the predicate cannot be escaped
    catalog.replace(_TABLE, revoked.to_arrow().cast(spec.schema), predicate=f"id = '{key_id}'")


def _rows(catalog: Catalog) -> pl.DataFrame:
    spec = table_spec(_TABLE)
    if not catalog.exists(_TABLE):
        return pl.DataFrame(pl.from_arrow(spec.schema.empty_table()))
    return catalog.frame(_TABLE)


class KeyStore:
    """Verifies keys for a running service against ``meta.api_keys``, re-read whenever the
    table has a new version (local disk: one stat per request; an object store: at most every
    ``refresh_s``), so a revocation takes effect at once.

    Argon2 is slow by design (0.1-1 s of CPU here): a key that verified once is remembered by
    its SHA-256 (in memory only, never stored) with the id and role it matched, so later
    requests cost one fast hash and a dictionary lookup; a key that failed is remembered too
    (up to 10,000), so a client retrying a wrong key costs nothing either. At most one argon2
    verification runs at a time: a flood of made-up keys queues up instead of taking every
    core. Both memories are dropped on every re-read of the table."""

    def __init__(self, catalog: Catalog, *, refresh_s: float = 5.0) -> None:
        self._catalog = catalog
        self._refresh_s = refresh_s
        self._lock = threading.Lock()
        self._version: int | None = None
        self._checked_at = 0.0
        self._keys: dict[str, tuple[str, str, bool]] = {}  # id -> (role, hash, revoked)
        self._verified: dict[bytes, ApiKey] = {}
        self._refused: set[bytes] = set()
        self._slow = threading.Lock()  # one argon2 verification at a time

    def verify(self, key: str | None) -> ApiKey | None:
        """The key's id and role, or None for a missing, malformed, unknown or revoked key."""
        if not key:
            return None
        parts = key.split("_", 2)
        if len(parts) != 3 or parts[0] != _PREFIX:
            return None
        with self._lock:
            self._refresh()
            digest = hashlib.sha256(key.encode("utf-8", "surrogatepass")).digest()
            known = self._verified.get(digest)
            if known is not None or digest in self._refused:
                return known
            entry = self._keys.get(parts[1])
        if entry is None or entry[2]:
            return None
        role, hashed, _ = entry
        try:
            with self._slow:
                _HASHER.verify(hashed, key)
            found: ApiKey | None = ApiKey(parts[1], _check_role(role))
        except (VerificationError, InvalidHashError):
            found = None
        with self._lock:
            if self._keys.get(parts[1]) == entry:  # not revoked meanwhile
                if found is not None:
                    self._verified[digest] = found
                elif len(self._refused) < _MAX_REFUSED:
                    self._refused.add(digest)
        return found

    def _refresh(self) -> None:
        now = time.monotonic()
        if self._version is not None:
            unchanged = self._catalog.unchanged_since(_TABLE, self._version)
            if unchanged or (unchanged is None and now - self._checked_at < self._refresh_s):
                return  # (None: an object store, where knowing costs a listing: at most every refresh_s)
        self._checked_at = now
        if not self._catalog.exists(_TABLE):
            self._keys, self._verified, self._refused = {}, {}, set()
            return
        try:
            dt = self._catalog.open(_TABLE)
        except LakehouseError:
            return
        version = dt.version()
        if version == self._version:
            return
        rows = self._catalog.frame(_TABLE, version=version)
        self._keys = {r["id"]: (r["role"], r["hash"], r["revoked_at"] is not None) for r in rows.iter_rows(named=True)}
        self._verified, self._refused = {}, set()
        self._version = version
