"""`lakehouse api` as a real process: HTTPS with the configured certificate and key, on the
port given, answering a key."""

from __future__ import annotations

import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from crypto_lakehouse.devtools.serve import summary_lines
from crypto_lakehouse.loopback.tls import make_certificate
from crypto_lakehouse.service.keys import create_key
from crypto_lakehouse.storage import Catalog
from tests.service.conftest import auth


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_lakehouse_api_serves_https_with_the_configured_certificate(lake_root: Path, tmp_path: Path) -> None:
    cert = make_certificate()
    (tmp_path / "cert.pem").write_bytes(cert.cert_pem)
    (tmp_path / "key.pem").write_bytes(cert.key_pem)
    port = _free_port()
    env = {
        **os.environ,
        "LAKEHOUSE_ROOT": str(lake_root),
        "LAKEHOUSE_API__TLS_CERT": str(tmp_path / "cert.pem"),
        "LAKEHOUSE_API__TLS_KEY": str(tmp_path / "key.pem"),
    }
    cli = [sys.executable, "-m", "crypto_lakehouse.cli"]
    key = create_key(Catalog(lake_root), role="reader")[1]  # `keys create` itself: tests/service/test_keys.py
    proc = subprocess.Popen([*cli, "api", "--port", str(port)], env=env, stderr=subprocess.PIPE, text=True)
    try:
        context = ssl.create_default_context(cadata=cert.cert_pem.decode())
        base = f"https://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"{base}/health", context=context, timeout=2) as r:
                    assert json.load(r)["ready"]
                break
            except OSError:
                assert proc.poll() is None and time.monotonic() < deadline, "lakehouse api did not start"
                time.sleep(0.2)
        request = urllib.request.Request(
            f"{base}/query/sql",
            data=json.dumps({"sql": "SELECT count(*) AS n FROM silver.trades"}).encode(),
            headers={**auth(key), "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, context=context, timeout=10) as r:
            assert json.load(r) == [{"n": 1200}]
    finally:
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=20)
    assert key.split("_", 2)[2] not in err  # uvicorn's access log names the path, never the key


def test_make_serve_prints_where_the_query_service_is(tmp_path: Path) -> None:
    lines = summary_lines(port=4200, root="/data/lake", logs=tmp_path, api="http://127.0.0.1:8400")
    assert any(line.startswith("query service:   http://127.0.0.1:8400") for line in lines)
    assert lines[-1].startswith("export PREFECT_API_URL=")
