"""Every job a user can run, one typed function each: the composition root.

A job takes the :class:`~crypto_lakehouse.config.Settings` it runs with and keyword-only
options, wires up the catalog, clients and options the stages need, and returns a typed result.
The ``lakehouse`` command (:mod:`crypto_lakehouse.cli`) and the Prefect flows (``flows/``) are
thin wrappers over these functions with the same options (``tests/test_jobs_parity.py`` checks
that they stay so).

=========================  ==================================  =========================
job                        ``lakehouse``                       Prefect flow
=========================  ==================================  =========================
:func:`stream`             ``stream``                          ``ingest``
:func:`ingest_recording`   ``ingest-recording``                -
:func:`ingest_capture`     (not on the CLI yet)                -
:func:`archive_import`     ``archive import``                  ``archive-import``
:func:`promote_silver`     ``promote silver``                  ``promote-silver``
:func:`promote_gold`       ``promote gold``                    ``build-gold``
:func:`backfill`           ``backfill``                        ``backfill``
:func:`quality`            ``quality``                         (promote-silver's artifact)
:func:`compact`            ``maintain compact``                ``compact``
:func:`checkpoint`         ``maintain checkpoint``             ``checkpoint``
:func:`vacuum`             ``maintain vacuum``                 ``vacuum``
:func:`delete_old_data`    ``maintain retention``              ``retention``
:func:`maintain`           (any of the four in turn)           -
:func:`create_tag`         ``tag create``                      -
:func:`delete_tag`         ``tag delete``                      -
:func:`list_tags`          ``tag list``                        -
=========================  ==================================  =========================

The functions load on first use (each group of jobs imports only the stages it needs), so
importing this package is cheap: ``lakehouse --help`` stays quick.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from crypto_lakehouse.jobs._capture import CaptureResult, ingest_capture
    from crypto_lakehouse.jobs._fanout import InProcess, Runner, dask_runner, runner_from_settings
    from crypto_lakehouse.jobs._ingest import DEFAULT_ARCHIVE_CACHE, StreamResult, archive_import, stream
    from crypto_lakehouse.jobs._maintain import (
        MAINTENANCE_ACTIONS,
        MaintenanceAction,
        MaintenanceStep,
        checkpoint,
        compact,
        delete_old_data,
        maintain,
        maintenance_steps,
        plan_maintenance,
        run_maintenance_step,
        vacuum,
    )
    from crypto_lakehouse.jobs._promote import (
        BackfillResult,
        SilverResult,
        SilverSummary,
        Window,
        backfill,
        count_open_gaps,
        promote_gold,
        promote_silver,
    )
    from crypto_lakehouse.jobs._quality import quality
    from crypto_lakehouse.jobs._replay import RecordingResult, ingest_recording
    from crypto_lakehouse.jobs._signals import run_until_signal
    from crypto_lakehouse.jobs._tags import create_tag, delete_tag, list_tags

_MODULES = {
    "_capture": ("CaptureResult", "ingest_capture"),
    "_fanout": ("InProcess", "Runner", "dask_runner", "runner_from_settings"),
    "_ingest": ("DEFAULT_ARCHIVE_CACHE", "StreamResult", "archive_import", "stream"),
    "_maintain": (
        "MAINTENANCE_ACTIONS",
        "MaintenanceAction",
        "MaintenanceStep",
        "checkpoint",
        "compact",
        "delete_old_data",
        "maintain",
        "maintenance_steps",
        "plan_maintenance",
        "run_maintenance_step",
        "vacuum",
    ),
    "_promote": (
        "BackfillResult",
        "SilverResult",
        "SilverSummary",
        "Window",
        "backfill",
        "count_open_gaps",
        "promote_gold",
        "promote_silver",
    ),
    "_quality": ("quality",),
    "_replay": ("RecordingResult", "ingest_recording"),
    "_signals": ("run_until_signal",),
    "_tags": ("create_tag", "delete_tag", "list_tags"),
}
_HOME = {name: module for module, names in _MODULES.items() for name in names}  # __all__, by module

__all__ = [
    "BackfillResult",
    "CaptureResult",
    "DEFAULT_ARCHIVE_CACHE",
    "InProcess",
    "MAINTENANCE_ACTIONS",
    "MaintenanceAction",
    "MaintenanceStep",
    "RecordingResult",
    "Runner",
    "SilverResult",
    "SilverSummary",
    "StreamResult",
    "Window",
    "archive_import",
    "backfill",
    "checkpoint",
    "compact",
    "count_open_gaps",
    "create_tag",
    "dask_runner",
    "delete_old_data",
    "delete_tag",
    "ingest_capture",
    "ingest_recording",
    "list_tags",
    "maintain",
    "maintenance_steps",
    "plan_maintenance",
    "promote_gold",
    "promote_silver",
    "quality",
    "run_maintenance_step",
    "run_until_signal",
    "runner_from_settings",
    "stream",
    "vacuum",
]


def __getattr__(name: str) -> Any:
    module = _HOME.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return __all__
