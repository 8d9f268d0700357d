"""The project's exceptions: every error a user can cause is a :class:`LakehouseError`.

The CLI turns a ``LakehouseError`` into one readable line and exit code 2, never a traceback.
"""

from __future__ import annotations

__all__ = ["ConfigError", "LakehouseError"]


class LakehouseError(Exception):
    """An error the user can fix (bad config, unknown table, missing recording, busy port, ...)."""

    exit_code: int = 2


class ConfigError(LakehouseError):
    """Invalid configuration: the message names the key and the problem."""
