"""Shard assignment (pure, fast): stable across processes, complete, disjoint, balanced as a hash
is; ``--shard`` validation; which targets a shard streams; its writer id."""

from __future__ import annotations

import subprocess
import sys
from collections import Counter

import pytest

from crypto_lakehouse.config import load_settings
from crypto_lakehouse.errors import ConfigError, InvalidArgument
from crypto_lakehouse.ingest import BronzeWriter, FeedTarget
from crypto_lakehouse.ingest.shards import Shard, assign, shard_of
from crypto_lakehouse.ingest.stream import shard_targets
from crypto_lakehouse.ingest.writer import default_writer_id

EXCHANGES = ["BINANCE", "BINANCE_FUTURES", "OKX"]
PAIRS = [(e, f"SYM{i}-USDT") for e in EXCHANGES for i in range(400)]


def test_a_pairs_shard_is_the_same_in_another_process_and_pinned() -> None:
    """Not Python's hash() (salted per process): a fresh interpreter with another hash seed
    computes the same shards, and the values are pinned so no release moves a pair silently."""
    code = f"from crypto_lakehouse.ingest.shards import shard_of\nprint([shard_of(e, s, 8) for e, s in {PAIRS[:50]!r}])"
    here = [shard_of(e, s, 8) for e, s in PAIRS[:50]]
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env={"PYTHONHASHSEED": "12345"}
    )
    assert out.stdout.strip() == str(here)
    assert [shard_of("BINANCE_FUTURES", s, 4) for s in ("BTC-USDT-PERP", "ETH-USDT-PERP", "SOL-USDT-PERP")] == [
        shard_of("binance_futures", s, 4) for s in ("BTC-USDT-PERP", "ETH-USDT-PERP", "SOL-USDT-PERP")
    ]
    assert [shard_of("BINANCE_FUTURES", f"S{i}", 1000) for i in range(5)] == PINNED


PINNED = [435, 826, 222, 536, 854]  # shard_of("BINANCE_FUTURES", f"S{i}", 1000): BLAKE2b, fixed forever


@pytest.mark.parametrize("count", [1, 2, 3, 4, 8, 23])
def test_every_pair_has_exactly_one_shard_and_shards_are_balanced_as_a_hash(count: int) -> None:
    shards = assign(PAIRS, count)
    assert sorted(shards) == list(range(count))
    every = [p for pairs in shards.values() for p in pairs]
    assert sorted(every) == sorted(PAIRS)  # complete and disjoint
    assert all(Shard(i, count).owns(e, s) for i, pairs in shards.items() for e, s in pairs)
    mean = len(PAIRS) / count
    sizes = [len(p) for p in shards.values()]
    # a shard's count is binomial: about sqrt(mean) either side (23 shards of 1,200 pairs: 52 +- 7)
    assert all(abs(n - mean) <= 4 * mean**0.5 for n in sizes), sizes


def test_adding_a_pair_moves_no_other_pair() -> None:
    before = assign(PAIRS, 4)
    after = assign([*PAIRS, ("BYBIT", "NEW-USDT")], 4)
    for i in range(4):
        assert [p for p in after[i] if p != ("BYBIT", "NEW-USDT")] == before[i]


@pytest.mark.parametrize(("text", "expected"), [("0/1", Shard(0, 1)), ("3/4", Shard(3, 4)), (" 2 / 8 ", Shard(2, 8))])
def test_shard_parses_i_of_n(text: str, expected: Shard) -> None:
    assert Shard.parse(text) == expected
    assert str(expected) == f"{expected.index}/{expected.count}"
    assert expected.name == f"shard-{expected.index}-of-{expected.count}"


@pytest.mark.parametrize("text", ["4/4", "0/0", "-1/4", "1", "a/b", "1/4/8", "", "1.0/4", "²/4"])
def test_a_bad_shard_is_one_clear_error(text: str) -> None:
    with pytest.raises(InvalidArgument, match=r"^--shard: .*(I/N|0 to N-1)") as info:
        Shard.parse(text)
    assert "\n" not in str(info.value)
    with pytest.raises(ConfigError, match="stream.shard"):
        load_settings(stream={"shard": text})


def test_the_config_takes_a_shard_and_normalises_it(monkeypatch: pytest.MonkeyPatch) -> None:
    assert load_settings().stream.shard is None
    monkeypatch.setenv("LAKEHOUSE_STREAM__SHARD", " 1 / 4")
    assert load_settings().stream.shard == "1/4"


def _target(exchange: str, symbols: list[str], **kw: object) -> FeedTarget:
    return FeedTarget(exchange, symbols=symbols, channels=["trades", "l2_book"], **kw)  # type: ignore[arg-type]


def test_shard_targets_split_pairs_keep_channels_and_drop_empty_targets() -> None:
    symbols = [f"S{i}-USDT" for i in range(40)]
    targets = [_target("BINANCE", symbols), _target("OKX", symbols), _target("BYBIT", ["ONLY-USDT"])]
    got = Counter()
    for i in range(4):
        for t in shard_targets(targets, Shard(i, 4)):
            assert t.symbols and t.channels == ["trades", "l2_book"]
            assert all(Shard(i, 4).owns(t.exchange, s) for s in t.symbols)
            got.update((t.exchange, s) for s in t.symbols)
    assert got == Counter((t.exchange, s) for t in targets for s in t.symbols)  # each pair exactly once
    owner = shard_of("BYBIT", "ONLY-USDT", 4)
    assert [t.exchange for t in shard_targets(targets[2:], Shard(owner, 4))] == ["BYBIT"]
    assert shard_targets(targets[2:], Shard((owner + 1) % 4, 4)) == []


def test_symbols_are_compared_in_cryptofeeds_spelling() -> None:
    lower = shard_targets([_target("BINANCE", ["btc-usdt"])], Shard(shard_of("BINANCE", "BTC-USDT", 2), 2))
    assert [t.symbols for t in lower] == [["btc-usdt"]]


def test_per_channel_subscriptions_are_split_by_pair_too() -> None:
    sub = {"trades": ["A-USDT", "B-USDT", "C-USDT", "D-USDT"], "l2_book": ["A-USDT", "B-USDT"]}
    seen = Counter()
    for i in range(3):
        for t in shard_targets([_target("BINANCE", [], subscription=sub)], Shard(i, 3)):
            assert t.subscription
            seen.update((c, s) for c, syms in t.subscription.items() for s in syms)
    assert seen == Counter((c, s) for c, syms in sub.items() for s in syms)


def test_a_shards_writer_id_is_the_configured_or_host_id_with_its_shard(tmp_path) -> None:
    settings = load_settings(root=str(tmp_path))
    assert BronzeWriter.from_settings(settings, shard="shard-1-of-4").writer_id == f"{default_writer_id()}-shard-1-of-4"
    settings = load_settings(root=str(tmp_path), writer={"id": "ingest-a"})
    assert BronzeWriter.from_settings(settings, shard="shard-0-of-2").writer_id == "ingest-a-shard-0-of-2"
    assert BronzeWriter.from_settings(settings).writer_id == "ingest-a"
