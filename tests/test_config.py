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


SECRET = "S3CR3T-config-test-7f3a"


@pytest.mark.parametrize(
    ("name", "secret"),
    [
        ("AWS_SECRET_ACCESS_KEY", True),
        ("aws_secret_access_key", True),
        ("AWS_SESSION_TOKEN", True),
        ("AZURE_STORAGE_ACCOUNT_KEY", True),
        ("azure_storage_sas_key", True),
        ("AZURE_CLIENT_SECRET", True),
        ("GOOGLE_SERVICE_ACCOUNT_KEY", True),
        ("AWS_SSE_CUSTOMER_KEY_BASE64", True),
        ("api_key", True),
        ("password", True),
        ("AWS_ACCESS_KEY_ID", False),
        ("aws_sse_kms_key_id", False),
        ("AWS_REGION", False),
        ("AWS_ENDPOINT_URL", False),
        ("AWS_ALLOW_HTTP", False),
        ("AWS_CONDITIONAL_PUT", False),
    ],
)
def test_a_storage_option_is_secret_by_its_name(name: str, secret: bool) -> None:
    from crypto_lakehouse.config import is_secret

    assert is_secret(name) is secret


def test_secret_storage_options_print_as_stars_and_the_rest_as_given(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pydantic import SecretStr

    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"storage_options:\n  AWS_REGION: eu-west-1\n  AWS_SESSION_TOKEN: {SECRET}-token\n")
    # the variable that always worked still works; its key arrives lower-cased
    monkeypatch.setenv("LAKEHOUSE_STORAGE_OPTIONS__AWS_SECRET_ACCESS_KEY", SECRET)
    monkeypatch.setenv("LAKEHOUSE_STORAGE_OPTIONS__AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
    s = load_settings(cfg)
    opts = s.storage_options
    assert isinstance(opts["aws_secret_access_key"], SecretStr) and isinstance(opts["AWS_SESSION_TOKEN"], SecretStr)
    assert opts["aws_secret_access_key"].get_secret_value() == SECRET
    assert (opts["AWS_REGION"], opts["aws_access_key_id"]) == ("eu-west-1", "AKIDEXAMPLE")
    shown = [repr(s), str(s), str(s.model_dump()), s.model_dump_json(), str(s.model_dump(mode="json"))]
    for text in shown:
        assert SECRET not in text and "**********" in text and "eu-west-1" in text and "AKIDEXAMPLE" in text
    assert s.model_dump(mode="json")["storage_options"]["aws_secret_access_key"] == "**********"
    assert load_settings(cfg) == s  # equal settings compare their secrets' values


@pytest.mark.parametrize(
    ("yaml_text", "env", "problem"),
    [
        # a secret YAML read as a number: refused, and not quoted
        ("storage_options:\n  AWS_SECRET_ACCESS_KEY: 12345678\n", {}, "a storage option is text"),
        # a mistyped section: the unknown key's value is quoted less its secrets
        (f"storage_option:\n  AWS_SECRET_ACCESS_KEY: {SECRET}\n  AWS_REGION: eu\n", {}, "storage_option: unknown key"),
        # JSON that does not parse in the variable that holds the options
        ("", {"LAKEHOUSE_STORAGE_OPTIONS": f'{{"AWS_SECRET_ACCESS_KEY": "{SECRET}"'}, "LAKEHOUSE_STORAGE_OPTIONS is"),
        # what `config show` printed, read back as the secret
        ("storage_options:\n  AWS_SECRET_ACCESS_KEY: '**********'\n", {}, "give the secret itself"),
    ],
)
def test_configuration_errors_never_quote_a_secret(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, yaml_text: str, env: dict[str, str], problem: str
) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml_text or "{}\n")
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError) as info:
        load_settings(cfg)
    message = str(info.value)
    assert problem in message, message
    assert SECRET not in message and "12345678" not in message, message


def test_a_typo_outside_the_secrets_is_still_quoted(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("storage_option:\n  AWS_REGION: eu-west-1\n  AWS_SECRET_ACCESS_KEY: x\n")
    with pytest.raises(ConfigError) as info:
        load_settings(cfg)
    assert "'AWS_REGION': 'eu-west-1'" in str(info.value) and "'AWS_SECRET_ACCESS_KEY': '**********'" in str(info.value)


def test_secrets_can_come_from_files_in_a_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "storage_options__aws_secret_access_key").write_text(SECRET + "\n")
    (secrets / "STORAGE_OPTIONS__AWS_SESSION_TOKEN").write_text("from-file")
    (secrets / "..data").mkdir()  # a Kubernetes secret volume's own entries are skipped
    (secrets / ".hidden").write_text("x")
    cfg = tmp_path / "c.yaml"
    cfg.write_text("storage_options:\n  AWS_REGION: eu-west-1\n  aws_session_token: from-yaml\n")
    monkeypatch.setenv("LAKEHOUSE_SECRETS_DIR", str(secrets))
    monkeypatch.setenv("LAKEHOUSE_STORAGE_OPTIONS__AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
    opts = load_settings(cfg).storage_options
    assert opts["aws_secret_access_key"].get_secret_value() == SECRET
    assert opts["aws_session_token"].get_secret_value() == "from-file"  # file > YAML
    assert (opts["AWS_REGION"], opts["aws_access_key_id"]) == ("eu-west-1", "AKIDEXAMPLE")  # merged with both
    monkeypatch.setenv("LAKEHOUSE_STORAGE_OPTIONS__AWS_SESSION_TOKEN", "from-env")
    assert load_settings(cfg).storage_options["aws_session_token"].get_secret_value() == "from-env"
    monkeypatch.setenv("LAKEHOUSE_SECRETS_DIR", str(tmp_path / "nope"))
    with pytest.raises(ConfigError, match="LAKEHOUSE_SECRETS_DIR=.* is not a directory"):
        load_settings(cfg)


def _fields(model: type, prefix: str = "") -> list[tuple[str, object]]:
    from pydantic import BaseModel

    found = []
    for name, info in model.model_fields.items():
        found.append((prefix + name, info.annotation))
        if isinstance(info.annotation, type) and issubclass(info.annotation, BaseModel):
            found.extend(_fields(info.annotation, f"{prefix}{name}."))
    return found


def test_every_setting_named_like_a_secret_is_held_as_one() -> None:
    """An API key or password added to the settings later must be a ``SecretStr`` (or a map of
    them, as storage_options holds its secrets), so it prints as stars like the storage keys."""
    from crypto_lakehouse.config import Settings, is_secret

    fields = _fields(Settings)
    assert "writer.max_rows" in dict(fields)
    named = {name: annotation for name, annotation in fields if is_secret(name.rsplit(".", 1)[-1])}
    assert all("SecretStr" in str(annotation) for annotation in named.values()), named


def test_bar_thresholds_most_specific_key_wins(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        "gold:\n  bars:\n    tick: {default: 1000, BTC-USDT: 700, 'BINANCE:BTC-USDT': 500, 'KRAKEN:ETH-USD': null}\n"
        "    dollar: {'BINANCE:BTC-USDT': 2.5e6}\n"
    )
    bars = load_settings(cfg).gold.bars
    assert bars.threshold("tick", "BINANCE", "BTC-USDT") == 500
    assert bars.threshold("tick", "OKX", "BTC-USDT") == 700
    assert bars.threshold("tick", "OKX", "SOL-USDT") == 1000
    assert bars.threshold("tick", "KRAKEN", "ETH-USD") is None  # null: off for that key
    assert bars.threshold("dollar", "BINANCE", "BTC-USDT") == 2_500_000
    assert bars.threshold("dollar", "OKX", "BTC-USDT") is None and bars.threshold("volume", "X", "Y") is None
    assert not load_settings().gold.bars.enabled()  # off by default


@pytest.mark.parametrize(
    ("yaml_text", "key"),
    [
        ("gold:\n  bars:\n    tick: {default: 0}\n", "gold.bars.tick.default"),
        ("gold:\n  bars:\n    volume: {BTC-USDT: -1}\n", "gold.bars.volume.BTC-USDT"),
        ("gold:\n  bars:\n    renko: {default: 5}\n", "gold.bars.renko"),
    ],
)
def test_bad_bar_thresholds_name_the_key(tmp_path: Path, yaml_text: str, key: str) -> None:
    cfg = tmp_path / "bad.yaml"
    cfg.write_text(yaml_text)
    with pytest.raises(ConfigError, match=f"{key}[.:]"):
        load_settings(cfg)
