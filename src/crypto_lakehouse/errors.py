"""The project's exceptions: every error a user can cause is a :class:`LakehouseError`.

The CLI turns a ``LakehouseError`` (any class below) into one readable line and exit code 2,
never a traceback. The tree::

    LakehouseError
    ├── ConfigError       invalid configuration
    ├── InvalidArgument   a value passed that cannot be used (a time, a range, a symbol, a table)
    ├── UnknownTable      not a table name (the message lists the known ones)
    ├── TableNotFound     a valid table name, not created under this root yet
    ├── VersionNotFound   a version or time before the table, past its log, or cleaned up
    ├── TagNotFound       no such tag, or the tag does not pin the table
    └── CommitError       an append that still failed after its retries
"""

from __future__ import annotations

__all__ = [
    "CommitError",
    "ConfigError",
    "FilesRewritten",
    "GapUnfillable",
    "InvalidArgument",
    "LakehouseError",
    "TableBusy",
    "TableNotFound",
    "TagNotFound",
    "UnknownTable",
    "VersionNotFound",
]


class LakehouseError(Exception):
    """An error the user can fix (bad config, unknown table, missing recording, busy port, ...)."""

    exit_code: int = 2


class ConfigError(LakehouseError):
    """Invalid configuration: the message names the key and the problem."""


class InvalidArgument(LakehouseError, ValueError):
    """A value passed to a job or a read that cannot be used: a time that does not parse, an end
    not after its start, a symbol or exchange the table does not hold. The message says what is
    accepted or what exists. Also a ``ValueError``, as Python code expects of a bad value."""


class UnknownTable(LakehouseError):
    """A name that is not one of the lakehouse's tables; the message lists the known ones."""


class TableNotFound(LakehouseError):
    """A valid table name whose table has not been created under this root (nothing written yet)."""


class VersionNotFound(LakehouseError):
    """A version or point in time the table cannot be read at: before its first commit, past its
    latest version, or whose Delta log has been cleaned up."""


class TagNotFound(LakehouseError):
    """No tag of that name, or a tag that does not pin the table asked for."""


class CommitError(LakehouseError):
    """An append that still failed after its retries."""


class FilesRewritten(CommitError):
    """A commit that would remove data files another commit (a compaction) has removed since the
    snapshot it was planned on: nothing was committed; plan it again on the latest snapshot."""


class TableBusy(LakehouseError):
    """A table's lock for some purpose is held by another process or thread (and the caller
    asked not to wait)."""


class GapUnfillable(LakehouseError):
    """A gap the venue's REST history cannot fill (it serves only its latest trades, has no
    public history, or no ccxt client): the message is the reason ``silver.gaps`` records with
    status ``unfillable``. Never a reason to mark the gap filled."""
