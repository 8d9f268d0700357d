"""Where a job's groups run: this process, a Dask LocalCluster, or a Dask cluster.

A fanned-out job splits its work into coarse groups (a day of one symbol, or several), maps a
plain function over them with a :class:`Runner` and commits what the workers wrote once. The
runner is chosen by ``scale.runner`` (:class:`~crypto_lakehouse.config.ScaleSettings`); the
Prefect flows pass their own, which submits each group as a Prefect task on prefect-dask's
``DaskTaskRunner`` so the UI shows every one (``flows/_fanout.py``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Protocol

from crypto_lakehouse.config import ScaleSettings

__all__ = ["InProcess", "Runner", "dask_runner", "runner_from_settings"]


class Runner(Protocol):
    """Runs ``fn`` on each of ``items`` (anywhere) and returns the results in their order; the
    first failure is raised once every item has finished or failed."""

    def map[T, R](self, fn: Callable[[T], R], items: Sequence[T], /) -> list[R]: ...


class InProcess:
    """Each item in turn, in this process."""

    def map[T, R](self, fn: Callable[[T], R], items: Sequence[T], /) -> list[R]:
        return [fn(item) for item in items]


class _Dask:
    """Each item as a Dask task on ``client``'s cluster (pure=False: a re-run recomputes)."""

    def __init__(self, client: Any) -> None:
        self.client = client

    def map[T, R](self, fn: Callable[[T], R], items: Sequence[T], /) -> list[R]:
        if not items:
            return []
        futures = self.client.map(fn, list(items), pure=False)
        return list(self.client.gather(futures))


@contextmanager
def dask_runner(address: str | None = None, *, workers: int = 2, threads_per_worker: int = 1) -> Iterator[Runner]:
    """A runner on the Dask scheduler at ``address``, or (None) on a LocalCluster of ``workers``
    processes started now and closed on exit."""
    from distributed import Client, LocalCluster

    if address is not None:
        with Client(address) as client:  # type: ignore[no-untyped-call]  # distributed ships no annotations for it
            yield _Dask(client)
        return
    with (
        LocalCluster(  # type: ignore[no-untyped-call]  # distributed ships no annotations for it
            n_workers=workers, threads_per_worker=threads_per_worker, processes=True, dashboard_address=None
        ) as cluster,
        Client(cluster) as client,  # type: ignore[no-untyped-call]  # distributed ships no annotations for it
    ):
        yield _Dask(client)


@contextmanager
def runner_from_settings(scale: ScaleSettings) -> Iterator[Runner | None]:
    """The runner ``scale`` names; None for ``none`` (the job runs as it always has, unsplit)."""
    if scale.runner == "none":
        yield None
    elif scale.runner == "local":
        with dask_runner(workers=scale.workers, threads_per_worker=scale.threads_per_worker) as runner:
            yield runner
    else:
        with dask_runner(scale.runner) as runner:
            yield runner
