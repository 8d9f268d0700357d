"""A root's local state: the writers' spools, their id locks, the live-buffer registry and the
cryptofeed log, in one directory per root on this host, wherever a command is started from.

The directory is ``<state home>/<name>-<hash>`` where the hash is of the root's one spelling
(:func:`~crypto_lakehouse.storage.catalog.normalise_root`), so ``./lake`` from two working
directories, ``/abs/lake`` and ``file:///abs/lake`` share it, and another root (or an ``s3://``
root of the same name) never does. The state home is ``$LAKEHOUSE_STATE_DIR``, else
``$XDG_STATE_HOME/crypto-lakehouse``, else ``~/.local/state/crypto-lakehouse``. A ``ROOT`` file
in each directory names its root.
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

from crypto_lakehouse.storage.catalog import normalise_root

__all__ = ["spool_dir", "state_dir", "state_home"]


def state_home() -> Path:
    """Where the per-root state directories of this host live."""
    explicit = os.environ.get("LAKEHOUSE_STATE_DIR")
    if explicit:
        return Path(explicit).expanduser()
    xdg = os.environ.get("XDG_STATE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".local" / "state"
    return base / "crypto-lakehouse"


def state_dir(root: str | Path) -> Path:
    """The local state directory of ``root`` (created, with its ``ROOT`` file)."""
    text = normalise_root(root)
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", text.rstrip("/").rsplit("/", 1)[-1])[:40] or "root"
    path = state_home() / f"{name}-{hashlib.sha256(text.encode()).hexdigest()[:12]}"
    path.mkdir(parents=True, exist_ok=True)
    marker = path / "ROOT"
    if not marker.exists():
        marker.write_text(text + "\n")
    return path


def spool_dir(root: str | Path) -> Path:
    """The default spool directory of ``root``'s writers (one sub-directory per writer id)."""
    return state_dir(root) / "spool"
