"""Sharded ingest: N ``lakehouse stream`` processes split the (exchange, symbol) pairs of one config.

Shard ``I/N`` streams the pairs whose **stable hash** falls on it: the first 8 bytes of
BLAKE2b of ``"EXCHANGE:SYMBOL"`` (cryptofeed's spelling, see :func:`pair_key`) as a big-endian
integer, modulo N. Not Python's ``hash()``, which is salted per process: every process, on any
host and Python version, computes the same owner for a pair, so with one config each pair, and
with it every channel of that pair, is streamed by exactly one of the N processes. A pair's
shard depends on that pair and N only: adding a symbol to the config moves no other symbol.

The split is by count of pairs, balanced as a hash is: a shard gets about ``pairs / N`` give or
take its square root (500 pairs a shard: within a few per cent; 5: anything from 1 to 10), and a
shard may get none (it says so and exits 0). It does not know which symbols are busy: place a
hot symbol by hand with its own process (its own ``--symbols`` and ``writer.id``) when load per
pair matters.

Each shard writes under its own writer id, ``<writer.id or host>-shard-I-of-N``
(:attr:`Shard.name`), so its exactly-once batch ids, spool and session ledger are its own, while
all of them append to the same bronze tables.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass

from crypto_lakehouse.config import parse_shard
from crypto_lakehouse.errors import InvalidArgument

__all__ = ["Shard", "assign", "pair_key", "shard_of"]


def pair_key(exchange: str, symbol: str) -> bytes:
    """The bytes a pair is hashed by: ``EXCHANGE:SYMBOL``, the exchange upper case, the symbol
    as given (callers pass cryptofeed's normalised spelling, e.g. ``BTC-USDT-PERP``)."""
    return f"{exchange.upper()}:{symbol}".encode()


def shard_of(exchange: str, symbol: str, count: int) -> int:
    """The shard (0 to ``count`` - 1) that streams ``(exchange, symbol)``."""
    digest = hashlib.blake2b(pair_key(exchange, symbol), digest_size=8).digest()
    return int.from_bytes(digest, "big") % count


def assign(pairs: Iterable[tuple[str, str]], count: int) -> dict[int, list[tuple[str, str]]]:
    """Every shard 0 to ``count`` - 1 with the pairs it streams, in the order given (empty lists
    included)."""
    out: dict[int, list[tuple[str, str]]] = {i: [] for i in range(count)}
    for exchange, symbol in pairs:
        out[shard_of(exchange, symbol, count)].append((exchange, symbol))
    return out


@dataclass(frozen=True, slots=True)
class Shard:
    """Shard ``index`` (from 0) of ``count``."""

    index: int
    count: int

    @classmethod
    def parse(cls, text: str) -> Shard:
        """``"I/N"``; an :class:`InvalidArgument` saying what is accepted otherwise."""
        try:
            return cls(*parse_shard(text))
        except ValueError as exc:
            raise InvalidArgument(f"--shard: {exc}") from None

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"

    @property
    def name(self) -> str:
        """``shard-I-of-N``: the suffix of the shard's writer id."""
        return f"shard-{self.index}-of-{self.count}"

    def owns(self, exchange: str, symbol: str) -> bool:
        return shard_of(exchange, symbol, self.count) == self.index
