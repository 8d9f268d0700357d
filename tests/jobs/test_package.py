"""crypto_lakehouse.jobs: every exported name resolves, and importing the package is cheap."""

from __future__ import annotations

import subprocess
import sys

from crypto_lakehouse import jobs
from crypto_lakehouse.jobs import _MODULES


def test_every_exported_name_resolves_from_the_module_that_exports_it() -> None:
    assert sorted(jobs.__all__) == sorted(n for names in _MODULES.values() for n in names)
    for module, names in _MODULES.items():
        exported = __import__(f"crypto_lakehouse.jobs.{module}", fromlist=["__all__"]).__all__
        assert sorted(exported) == sorted(names), module
    for name in jobs.__all__:
        assert getattr(jobs, name) is not None, name


def test_importing_the_package_and_the_cli_loads_no_stage() -> None:
    code = (
        "import sys, crypto_lakehouse.jobs, crypto_lakehouse.cli; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in "
        "('polars', 'deltalake', 'pyarrow', 'duckdb', 'cryptofeed', 'ccxt') "
        "or m.startswith(('crypto_lakehouse.storage', 'crypto_lakehouse.ingest', 'crypto_lakehouse.transform'))))"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert res.stdout.strip() == "[]"  # `lakehouse --help` stays quick
