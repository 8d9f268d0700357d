"""Adaptive batch age: how long a table's rows wait before they are committed, per writer.

One Delta table takes a limited number of commits a second, whoever makes them (docs/scaling.md
measures it: about 20 a second on local disk here, fewer as more writers race). Every appender
re-reads the log and checks each commit that landed since its snapshot; delta-rs retries a lost
race up to 15 times and then gives up (``CommitFailedError``). Writers that commit on a fixed
clock therefore push each other over that edge as their number grows. :class:`BatchAge` keeps a
writer inside the table's budget from what it sees of its own commits (no coordination):

* **A commit that took long** for its batch's age (``seconds > duty * age``: the table is busy,
  its commits race and re-read the log, or the machine is) raises the age to ``seconds / duty``,
  at most doubling it (one slow outlier, such as the commit that writes a checkpoint, costs one
  doubling): bigger batches, fewer commits. Writers of one table see alike latencies, so they
  move to alike ages.
* **An attempt that failed** (delta-rs gave up after its own retries, or storage failed) doubles
  the age: the multiplicative back-off of AIMD, so writers that all saw the same congestion all
  halve their commit rate.
* **A quick commit** takes ``recover`` (10 %) off the age, back towards the configured floor:
  the probe for spare capacity, gentle near the point where commits start to slow, and back
  from the ceiling to the floor in a few dozen commits once the pressure has gone.

The age stays within ``[floor, ceiling]`` (``writer.max_age`` and ``writer.max_age_limit``);
equal bounds turn adaptation off. :meth:`BatchAge.jittered` spreads each batch's deadline by
±10 % so writers started together do not commit in lockstep. Pure: no clock, no I/O.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

__all__ = ["JITTER", "BatchAge", "jittered_backoff"]

JITTER = 0.1
"""A batch's deadline is its age times a factor drawn uniformly from ``1 ± JITTER``."""


@dataclass(slots=True)
class BatchAge:
    """The adaptive batch age of one table in one writer (seconds; see the module doc)."""

    floor: float
    ceiling: float
    duty: float = 0.25
    """Share of a batch's age its commit may take before the age grows."""
    recover: float = 0.1
    """Share of the age taken off after each quick commit."""
    age: float = field(init=False)

    def __post_init__(self) -> None:
        if self.floor <= 0 or not 0 < self.duty <= 1 or not 0 < self.recover < 1:
            raise ValueError(
                f"need floor > 0, duty in (0, 1] and recover in (0, 1); got {self.floor}, {self.duty}, {self.recover}"
            )
        self.ceiling = max(self.ceiling, self.floor)
        self.age = self.floor

    @property
    def adaptive(self) -> bool:
        return self.ceiling > self.floor

    @property
    def scale(self) -> float:
        """``age / floor``: how much bigger than configured a batch may grow (rows too)."""
        return self.age / self.floor

    def committed(self, seconds: float) -> float:
        """A batch committed in ``seconds`` (its append, retries included); the new age."""
        if seconds > self.duty * self.age:
            self.age = min(self.ceiling, 2 * self.age, seconds / self.duty)
        else:
            self.age = max(self.floor, self.age * (1 - self.recover))
        return self.age

    def failed(self) -> float:
        """An append attempt failed (a conflict delta-rs gave up on, or storage); the new age."""
        self.age = min(self.ceiling, self.age * 2)
        return self.age

    def jittered(self, draw: float) -> float:
        """The deadline of a batch, ``draw`` uniform in [0, 1): the age ±:data:`JITTER`."""
        return self.age * (1 - JITTER + 2 * JITTER * draw)


def jittered_backoff(base: float, attempt: int, *, rng: random.Random | None = None) -> float:
    """The wait before retry ``attempt`` (1, 2, ...) of an append: ``base * 2**(attempt-1)``
    times a factor drawn uniformly from [0.5, 1.5), so writers that failed together do not
    retry together."""
    draw = (rng or random).random()
    return base * 2.0 ** (attempt - 1) * (0.5 + draw)
