"""The adaptive batch age (pure, fast): slow commits grow it (at most doubling), failed attempts
double it, quick commits take 10 % off; bounded; jitter; the writer's deadlines and row limits
follow it."""

from __future__ import annotations

import random

import pytest

from crypto_lakehouse.ingest import BronzeWriter
from crypto_lakehouse.ingest.pacing import JITTER, BatchAge, jittered_backoff
from crypto_lakehouse.storage import Catalog


def test_a_quick_commit_keeps_the_floor() -> None:
    age = BatchAge(1.0, 10.0)
    for _ in range(100):
        assert age.committed(0.05) == 1.0
    assert age.scale == 1.0


def test_a_commit_slow_for_its_age_grows_the_age_to_keep_its_duty() -> None:
    age = BatchAge(1.0, 10.0, duty=0.25)
    assert age.committed(0.5) == pytest.approx(2.0)  # 0.5 s of commit per 2 s of batch = the duty
    assert age.committed(0.4) == pytest.approx(1.8)  # under the duty now: 10 % off
    assert age.committed(1.5) == pytest.approx(3.6)  # would be 6 s: at most a doubling per commit
    assert age.committed(1.5) == pytest.approx(6.0)
    assert age.committed(5.0) == 10.0  # never beyond the ceiling


def test_a_failed_attempt_doubles_the_age_and_quick_commits_bring_it_back_step_by_step() -> None:
    age = BatchAge(0.5, 8.0)
    assert [age.failed() for _ in range(5)] == [1.0, 2.0, 4.0, 8.0, 8.0]
    steps = 0
    while age.age > age.floor:
        age.committed(0.01)
        steps += 1
    assert steps == 27  # 0.9 ** 27 < 0.5 / 8: from the ceiling back to the floor in a few dozen commits
    assert age.age == 0.5


def test_aimd_settles_where_the_writers_share_the_table() -> None:
    """Writers whose commits take longer the more often they all commit (a toy table: commit time
    = 10 ms + 40 ms per commit a second on it) end near the rate where commit time / age = duty,
    whatever age they start from, and stay inside their bounds."""
    writers = [BatchAge(0.05, 20.0, duty=0.25) for _ in range(8)]
    writers[0].age = 15.0
    rng = random.Random(1)
    for _ in range(300):
        rate = sum(1 / w.age for w in writers)  # commits a second on the table
        for w in writers:
            w.committed((0.01 + 0.04 * rate) * rng.uniform(0.8, 1.2))
    rate = sum(1 / w.age for w in writers)
    assert all(w.floor <= w.age <= w.ceiling for w in writers)
    assert 5.5 < rate < 8.5, rate  # (0.01 + 0.04 r) / (8 / r) = 0.25 at r = 6.8; from 160 a second at the start
    assert max(w.age for w in writers) < 1.5 * min(w.age for w in writers)  # and alike


def test_equal_bounds_turn_adaptation_off() -> None:
    age = BatchAge(1.0, 0.5)  # a limit below the age: a fixed age
    assert not age.adaptive and age.ceiling == 1.0
    assert age.failed() == 1.0 and age.committed(30.0) == 1.0


@pytest.mark.parametrize(
    "kwargs",
    [
        {"floor": 0.0, "ceiling": 1.0},
        {"floor": 1.0, "ceiling": 2.0, "duty": 0.0},
        {"floor": 1, "ceiling": 2, "recover": 1},
    ],
)
def test_bad_bounds_are_refused(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        BatchAge(**kwargs)


def test_deadlines_are_jittered_around_the_age_and_retries_back_off_with_jitter() -> None:
    age = BatchAge(2.0, 4.0)
    assert age.jittered(0.0) == pytest.approx(2.0 * (1 - JITTER))
    assert age.jittered(0.5) == pytest.approx(2.0)
    assert age.jittered(0.999999) == pytest.approx(2.0 * (1 + JITTER))
    rng = random.Random(3)
    waits = [jittered_backoff(0.2, 3, rng=rng) for _ in range(1_000)]
    assert 0.4 <= min(waits) < 0.45 and 1.15 < max(waits) < 1.2  # 0.8 s x [0.5, 1.5)
    assert len({round(w, 6) for w in waits}) > 900


def test_the_writer_scales_its_deadline_and_row_limit_with_the_tables_age(tmp_path) -> None:
    w = BronzeWriter(Catalog(tmp_path), writer_id="w", spool_dir=tmp_path, max_rows=1_000, max_age_s=0.5)
    buf = w._buffers["bronze.trades"]
    assert (buf.due, buf.limit) == (0.5, 1_000)  # not adaptive: exactly the settings
    w = BronzeWriter(
        Catalog(tmp_path), writer_id="w", spool_dir=tmp_path, max_rows=1_000, max_age_s=0.5, max_age_limit_s=5
    )
    w._ages["bronze.trades"].failed()
    w._ages["bronze.trades"].failed()
    w._pace("bronze.trades")
    buf = w._buffers["bronze.trades"]
    assert buf.limit == 4_000 and 2.0 * (1 - JITTER) <= buf.due <= 2.0 * (1 + JITTER)
    assert w.stats["bronze.trades"].batch_age_s == 2.0
    assert w._buffers["bronze.book"].limit == 1_000  # per table
