"""Storage owns every path and URI: outside ``crypto_lakehouse/storage/`` no code in ``src/`` or
``flows/`` opens, scans or writes a Delta table by path, builds a table URI, looks inside a
table's log or handles a ``file://`` root. They go through :class:`Catalog` instead."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
STORAGE = REPO / "src" / "crypto_lakehouse" / "storage"

# calls (by function or method name) that reach a Delta table by path or say where it lives
_CALLS = {
    "scan_delta": "Catalog.scan / Catalog.scan_snapshot",
    "read_delta": "Catalog.frame",
    "write_deltalake": "Catalog.append / replace / overwrite",
    "DeltaTable": "Catalog.open",
    "is_deltatable": "Catalog.exists",
    "uri": "a Catalog method that does the work",
}
# string literals that only code handling paths and URIs itself needs
_TEXTS = {"file://": "normalise_root / Catalog", "_delta_log": "a Catalog method"}
# attributes whose use means knowing local vs object store
_ATTRIBUTES = {"is_local": "a Catalog method that does the work"}


def _sources() -> list[Path]:
    files = [*(REPO / "src").rglob("*.py"), *(REPO / "flows").rglob("*.py")]
    return sorted(p for p in files if STORAGE not in p.parents)


def _called_name(node: ast.Call) -> str | None:
    if isinstance(node.func, ast.Attribute):
        return node.func.attr
    if isinstance(node.func, ast.Name):
        return node.func.id
    return None


def violations(source: str, where: str) -> list[str]:
    """``where:line: what; use instead`` for every storage-owned operation in ``source``."""
    tree = ast.parse(source, filename=where)
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and (name := _called_name(node)) in _CALLS:
            out.append(f"{where}:{node.lineno}: calls {name}(...); use {_CALLS[name]}")
        elif isinstance(node, ast.Attribute) and node.attr in _ATTRIBUTES:
            out.append(f"{where}:{node.lineno}: uses .{node.attr}; use {_ATTRIBUTES[node.attr]}")
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            for text, instead in _TEXTS.items():
                if text in node.value and not _is_prose(node.value):
                    out.append(f"{where}:{node.lineno}: handles {text!r}; use {instead}")
    return sorted(out, key=lambda v: int(v.split(":")[1]))


def _is_prose(text: str) -> bool:
    """A message or docstring (several words), not a path, URI or prefix being handled."""
    return len(text.split()) > 3


def test_sources_are_found() -> None:
    names = {p.name for p in _sources()}
    assert {"lakehouse.py", "silver.py", "gold.py", "tasks.py"} <= names
    assert not any(STORAGE in p.parents for p in _sources())


def test_nothing_outside_storage_reaches_a_table_by_path() -> None:
    found = [v for path in _sources() for v in violations(path.read_text(), str(path.relative_to(REPO)))]
    assert not found, "storage operations outside crypto_lakehouse/storage/:\n" + "\n".join(found)


@pytest.mark.parametrize(
    "code",
    [
        "pl.scan_delta(catalog.uri(t), storage_options=o)",
        "pl.read_delta(u)",
        "DeltaTable(path)",
        "write_deltalake(u, data)",
        "x = root.removeprefix('file://')",
        "Path(u, '_delta_log')",
        "if catalog.is_local: pass",
    ],
)
def test_each_kind_is_caught(code: str) -> None:
    found = violations("import polars as pl\n" + code + "\n", "src/probe.py")
    assert found and all(v.startswith("src/probe.py:2: ") for v in found)


def test_prose_is_not_flagged() -> None:
    assert not violations('print("Read them with polars.scan_delta(...) or a file:// URL in docs")', "x.py")
