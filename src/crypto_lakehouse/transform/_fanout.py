"""What the fanned-out transforms (silver, gold) share: the runner's shape, where a worker finds
the tables, and how a job's files are packed into coarse tasks."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from crypto_lakehouse.storage import Catalog

__all__ = ["MAX_TASKS", "Fanout", "Where", "tasks_of"]

Fanout = Callable[[Callable[[Any], Any], Sequence[Any]], list[Any]]
"""Runs a function on each item (anywhere: this process, Dask workers) and returns the results
in order: ``jobs.Runner.map``."""

MAX_TASKS = 64  # groups are packed into at most this many tasks (Prefect costs ~0.6 s a task)


@dataclass(frozen=True, slots=True)
class Where:
    """Where a worker finds the tables (a :class:`Catalog` travels as its root and options)."""

    root: str
    storage_options: dict[str, str] | None

    @classmethod
    def of(cls, catalog: Catalog) -> Where:
        return cls(catalog.root, catalog.storage_options)

    def catalog(self) -> Catalog:
        return Catalog(self.root, storage_options=self.storage_options)


def tasks_of(
    files: Sequence[tuple[str, dict[str, str]]], *, by: Sequence[str]
) -> list[tuple[tuple[str, dict[str, str]], ...]]:
    """``files`` in groups of equal partition values ``by`` (a group's files never split), packed
    in order into at most :data:`MAX_TASKS` tasks of about as many groups each."""
    groups: dict[tuple[str, ...], list[tuple[str, dict[str, str]]]] = {}
    for path, values in files:
        groups.setdefault(tuple(values.get(k, "") for k in by), []).append((path, values))
    ordered = [groups[k] for k in sorted(groups)]
    per_task = -(-len(ordered) // MAX_TASKS) if ordered else 1
    return [tuple(f for group in ordered[i : i + per_task] for f in group) for i in range(0, len(ordered), per_task)]
