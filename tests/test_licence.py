"""The licence is coherent: our code is Apache-2.0 (LICENSE, pyproject), and the parts the README
says work without cryptofeed (AGPL-3.0-or-later) import without it."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# a meta-path finder that refuses cryptofeed, then the modules users read with
_WITHOUT_CRYPTOFEED = """
import sys
class Refuse:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "cryptofeed":
            raise ImportError("cryptofeed refused by the test")
sys.meta_path.insert(0, Refuse())
import crypto_lakehouse.storage, crypto_lakehouse.query, crypto_lakehouse.maintenance
import crypto_lakehouse.transform.gold
from crypto_lakehouse import Lakehouse
print("ok")
"""


def test_licence_file_and_metadata_say_apache_2() -> None:
    text = (ROOT / "LICENSE").read_text()
    assert text.split()[:4] == ["Apache", "License", "Version", "2.0,"]
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["license"] == "Apache-2.0" and project["license-files"] == ["LICENSE"]
    readme = (ROOT / "README.md").read_text()
    assert "## Licence" in readme and "AGPL-3.0-or-later" in readme


def test_reading_and_gold_need_no_cryptofeed() -> None:
    res = subprocess.run([sys.executable, "-c", _WITHOUT_CRYPTOFEED], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0 and res.stdout.strip() == "ok", res.stderr[-2000:]
