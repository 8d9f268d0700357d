"""Settings: embedded defaults = config/local.yaml; YAML < env < flags; bad values name the key."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from crypto_lakehouse.config import load_settings
from crypto_lakehouse.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]


def test_local_yaml_is_the_embedded_default() -> None:
    assert load_settings(ROOT / "config" / "local.yaml") == load_settings()
    s = load_settings()
    assert s.root == "./lakehouse_data"
    assert s.writer.max_age == timedelta(seconds=1)


def test_precedence_yaml_then_env_then_flags(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("root: /from/yaml\nwriter:\n  max_rows: 10\n  max_age: 250ms\n")
    s = load_settings(cfg)
    assert (s.root, s.writer.max_rows, s.writer.max_age) == ("/from/yaml", 10, timedelta(milliseconds=250))
    monkeypatch.setenv("LAKEHOUSE_ROOT", "s3://bucket/prefix")
    monkeypatch.setenv("LAKEHOUSE_WRITER__MAX_ROWS", "20")
    s = load_settings(cfg)
    assert (s.root, s.writer.max_rows, s.writer.max_age) == ("s3://bucket/prefix", 20, timedelta(milliseconds=250))
    assert load_settings(cfg, root="/from/flag").root == "/from/flag"


@pytest.mark.parametrize(
    ("yaml_text", "key", "problem"),
    [
        ("bogus: 1\n", "bogus", "unknown key"),
        ("writer:\n  max_rowz: 5\n", "writer.max_rowz", "unknown key"),
        ("writer:\n  max_rows: -5\n", "writer.max_rows", "greater than 0"),
        ("gold:\n  intervals: [1m, 5x]\n", "gold.intervals.1", "unparsable duration '5x'"),
        ("writer:\n  max_age: 3\n", "writer.max_age", "durations need a unit"),
        ("gold:\n  intervals: [1mo]\n", "gold.intervals.0", "unparsable duration"),
    ],
)
def test_bad_values_name_the_key_and_the_problem(tmp_path: Path, yaml_text: str, key: str, problem: str) -> None:
    cfg = tmp_path / "bad.yaml"
    cfg.write_text(yaml_text)
    with pytest.raises(ConfigError) as info:
        load_settings(cfg)
    assert f"{key}: " in str(info.value) and problem in str(info.value)


def test_missing_or_broken_files_are_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_settings(tmp_path / "nope.yaml")
    broken = tmp_path / "broken.yaml"
    broken.write_text("root: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_settings(broken)


def test_docs_tables_page_matches_the_schemas() -> None:
    from crypto_lakehouse.schemas import markdown

    assert (ROOT / "docs" / "tables.md").read_text() == markdown(), "regenerate: python -m crypto_lakehouse.schemas"


def test_vacuum_horizon_is_per_layer_or_one_for_all(tmp_path: Path) -> None:
    s = load_settings()
    assert s.maintenance.horizon_of("bronze.trades") == timedelta(hours=1)
    assert s.maintenance.horizon_of("gold.ohlcv") == timedelta(days=7)
    cfg = tmp_path / "c.yaml"
    cfg.write_text("maintenance:\n  vacuum_horizon: 30m\n")
    one = load_settings(cfg).maintenance
    assert {one.horizon_of(t) for t in ("bronze.book", "silver.trades", "gold.ohlcv")} == {timedelta(minutes=30)}


def test_the_maintenance_settings_old_names_are_still_read(tmp_path: Path) -> None:
    # before the rename, the vacuum horizon was `vacuum_retention` and the data retention `retention`
    cfg = tmp_path / "old.yaml"
    cfg.write_text("maintenance:\n  vacuum_retention: 2h\n  retention: {bronze: 3d}\n")
    m = load_settings(cfg).maintenance
    assert m.horizon_of("silver.trades") == timedelta(hours=2)
    assert m.data_retention_of("bronze.trades") == timedelta(days=3)
    assert m.data_retention_of("silver.trades") is None
