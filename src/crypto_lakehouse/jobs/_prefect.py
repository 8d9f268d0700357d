"""What the Prefect flows (``flows/``) use to fan a job out: its groups as Prefect tasks on
prefect-dask's ``DaskTaskRunner``, so the Prefect UI shows every group of a job run on a Dask
cluster. (Here, not in ``flows/``, so that Dask workers import it from the installed package;
only the flows import it: it imports Prefect.)

``scale.runner`` (``crypto_lakehouse.config.ScaleSettings``) picks the task runner: ``none`` runs
the job in the flow's process as one call (no tasks), ``local`` a LocalCluster of
``scale.workers`` processes for the run, an address (``tcp://host:8786``) a running cluster. The
Dask workers report to the Prefect API the flow uses (``PREFECT_API_URL``, which they inherit):
without one, each worker would start its own temporary server.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.task_runners import TaskRunner
from prefect.utilities.annotations import unmapped
from prefect_dask.task_runners import DaskTaskRunner

from crypto_lakehouse.config import ScaleSettings

__all__ = ["PrefectTasks", "dask_task_runner"]


@task(name="group", cache_policy=NO_CACHE, persist_result=False)
def _group(fn: Callable[[Any], Any], item: Any) -> Any:
    """One group of a fanned-out job (its rows staged as files; the job commits them)."""
    return fn(item)


class PrefectTasks:
    """A ``crypto_lakehouse.jobs.Runner`` that submits each item as a Prefect task on the flow's
    task runner and waits for all of them."""

    def map[T, R](self, fn: Callable[[T], R], items: Sequence[T], /) -> list[R]:
        if not items:
            return []
        name = getattr(fn, "__name__", "group").strip("_")
        futures = _group.with_options(name=name).map(unmapped(fn), list(items))
        return [f.result() for f in futures]


def dask_task_runner(scale: ScaleSettings) -> TaskRunner[Any] | None:
    """The task runner ``scale.runner`` names (None: ``none``, the job runs unsplit)."""
    if scale.runner == "none":
        return None
    runner: TaskRunner[Any]
    if scale.runner == "local":
        runner = DaskTaskRunner(
            cluster_kwargs={
                "n_workers": scale.workers,
                "threads_per_worker": scale.threads_per_worker,
                "processes": True,
                "dashboard_address": None,
            }
        )
    else:
        runner = DaskTaskRunner(address=scale.runner)
    return runner
