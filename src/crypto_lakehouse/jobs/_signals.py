"""Running a long job until SIGINT/SIGTERM, so that it stops cleanly (flushes) instead of dying."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Awaitable, Callable

__all__ = ["run_until_signal"]

_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def run_until_signal[T](main: Callable[[asyncio.Event], Awaitable[T]]) -> T:
    """Run ``main(stop)`` in a new event loop; SIGINT and SIGTERM set ``stop`` (``main`` then
    winds down and returns) instead of interrupting it.

    Off the main thread (a Prefect flow run in a worker thread) signal handlers cannot be
    installed: ``stop`` is then set only by ``main`` itself, and the caller's own cancellation
    applies."""

    async def runner() -> T:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        installed: list[signal.Signals] = []
        for sig in _SIGNALS:
            try:
                loop.add_signal_handler(sig, stop.set)
            except (RuntimeError, ValueError):  # not the main thread
                break
            installed.append(sig)
        try:
            return await main(stop)
        finally:
            for sig in installed:
                loop.remove_signal_handler(sig)

    return asyncio.run(runner())
