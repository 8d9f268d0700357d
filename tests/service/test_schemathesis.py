"""Schemathesis against the OpenAPI the service serves, on a real uvicorn server: requests
generated from every route's schema, with a reader's key and with an operator's, and none is
answered with a server error (5xx). Bounded: a few examples per route."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error

from crypto_lakehouse.service.keys import create_key
from crypto_lakehouse.storage import Catalog
from tests.service.conftest import Running, build_lake, settings_for

ROLES = ("reader", "operator")


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, dict[str, str]]]:
    """A server over a lake of its own (operators' generated requests create tags there)."""
    root = build_lake(tmp_path_factory.mktemp("fuzzed"))
    keys = {role: create_key(Catalog(root), role=role)[1] for role in ROLES}
    with Running(settings_for(root, timeout_s=5.0, max_rows=10_000)) as base:
        yield base, keys


def test_no_request_is_answered_with_a_server_error(served: tuple[str, dict[str, str]]) -> None:
    base, keys = served
    schema = schemathesis.openapi.from_url(f"{base}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert {op.path for op in operations} >= {"/query/sql", "/query/stream", "/quality", "/tags/{name}", "/health"}
    checked: list[str] = []
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        def no_server_error(case: schemathesis.Case) -> None:
            for role in ROLES:  # each generated request with a reader's key, then an operator's
                headers = {"Authorization": f"Bearer {keys[role]}", "X-API-Key": keys[role]}
                if case.path == "/query/stream":  # an endless response: its status, then hang up
                    with requests.request(**case.as_transport_kwargs(base, headers), stream=True, timeout=20) as r:
                        assert r.status_code < 500, (case.as_curl_command(headers), r.status_code, r.reason)
                    continue
                response = case.call(base_url=base, headers=headers, timeout=20)
                case.validate_response(response, checks=[not_a_server_error])

        no_server_error()
        checked.append(f"{operation.method.upper()} {operation.path}")
    assert len(checked) == len(operations) >= 11
