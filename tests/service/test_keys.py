"""API keys: created over the CLI (printed once), stored only as a salted argon2 hash, listed
without it, revoked by id; roles include the ones below them."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from crypto_lakehouse.cli import app
from crypto_lakehouse.errors import InvalidArgument
from crypto_lakehouse.service import create_app
from crypto_lakehouse.service.keys import KeyStore, create_key, list_keys, revoke_key, role_allows
from crypto_lakehouse.storage import Catalog
from tests.service.conftest import auth, settings_for


def test_keys_over_the_cli_create_list_revoke(tmp_path: Path) -> None:
    runner = CliRunner()
    created = runner.invoke(app, ["keys", "create", "--role", "operator", "--note", "ci", "--root", str(tmp_path)])
    assert created.exit_code == 0, created.output
    key = created.stdout.strip().splitlines()[0]
    assert key.startswith("lhk_")
    key_id = key.split("_")[1]
    listed = runner.invoke(app, ["keys", "list", "--root", str(tmp_path)])
    assert key_id in listed.stdout and "operator" in listed.stdout and key.split("_", 2)[2] not in listed.stdout
    store = KeyStore(Catalog(tmp_path))
    found = store.verify(key)
    assert found is not None and (found.id, found.role) == (key_id, "operator")
    assert runner.invoke(app, ["keys", "revoke", key_id, "--root", str(tmp_path)]).exit_code == 0
    assert store.verify(key) is None  # the running store sees the new version at once
    assert list_keys(Catalog(tmp_path)).filter(revoked_at=None).is_empty()


def test_only_a_salted_argon2_hash_is_stored(tmp_path: Path) -> None:
    catalog = Catalog(tmp_path)
    _, key1 = create_key(catalog, role="reader")
    _, key2 = create_key(catalog, role="reader")
    stored = catalog.frame("meta.api_keys")
    hashes = stored["hash"].to_list()
    assert all(h.startswith("$argon2id$") for h in hashes) and len(set(hashes)) == 2
    text = stored.write_csv()
    for key in (key1, key2):
        assert key not in text and key.split("_", 2)[2] not in text
    assert "hash" not in list_keys(catalog).columns


def test_unknown_roles_and_ids_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(InvalidArgument, match="unknown role 'root'"):
        create_key(Catalog(tmp_path), role="root")
    with pytest.raises(InvalidArgument, match="no API key with id"):
        revoke_key(Catalog(tmp_path), "x' OR true OR id = '")
    assert (
        role_allows("admin", "operator") and role_allows("operator", "reader") and not role_allows("reader", "operator")
    )
    assert not role_allows("root", "reader")


def test_no_key_or_sql_text_reaches_the_logs(
    lake_root: Path, keys: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    sql = "SELECT count(*) AS n FROM silver.trades WHERE symbol = 'LITERAL-IN-SQL'"
    with TestClient(create_app(settings_for(lake_root), audit=False)) as client:
        assert client.post("/query/sql", json={"sql": sql}, headers=auth(keys["reader"])).status_code == 200
        client.get("/tables", headers=auth(keys["reader"] + "x"))
    text = caplog.text
    assert "LITERAL-IN-SQL" not in text and keys["reader"].split("_", 2)[2] not in text
    assert keys["reader"].split("_")[1] in text  # the key id is what logs name


def test_a_wrong_secret_for_a_real_id_stays_refused_and_the_right_key_still_works(tmp_path: Path) -> None:
    catalog = Catalog(tmp_path)
    key_id, key = create_key(catalog, role="reader")
    wrong = f"lhk_{key_id}_{'A' * 43}"
    store = KeyStore(catalog)
    assert store.verify(wrong) is None and store.verify(wrong) is None  # the second from memory
    assert store.verify(key) is not None and store.verify(wrong) is None
    for malformed in ("", "lhk_", "Bearer x", key.replace("lhk_", "xyz_"), key + "\n", key.upper()):
        assert store.verify(malformed) is None, malformed
