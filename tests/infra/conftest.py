"""Fixtures of the infra/ tests.

The terraform run (fmt, init, validate, apply against moto, plan) takes a minute or more, most
of it the AWS provider sleeping in its own waiters (a lifecycle configuration is polled until it
reads back the same several times). So it starts in a background thread with the first test of
tests/infra when a test using it is selected, and the tests that use it run last in the session
(:func:`pytest_collection_modifyitems`): the rest of the suite runs meanwhile, where the other
infra tests alone left the terraform tests waiting about a minute for it.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from .helpers import TerraformRun

_TERRAFORM: TerraformRun | None = None


def terraform_run() -> TerraformRun:
    global _TERRAFORM
    if _TERRAFORM is None:
        _TERRAFORM = TerraformRun().start()
    return _TERRAFORM


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The tests that use the terraform run go last (in their order; every other test keeps its
    place), so the run started with tests/infra goes on beside the rest of the suite."""
    items.sort(key=lambda item: "terraform" in getattr(item, "fixturenames", ()))


@pytest.fixture(scope="session", autouse=True)
def _start_terraform_early(request: pytest.FixtureRequest) -> Iterator[None]:
    """Start the terraform run with the first infra test when a test that needs it is selected;
    stop whatever is left of it when the session ends."""
    if any("terraform" in getattr(item, "fixturenames", ()) for item in request.session.items):
        terraform_run()
    yield
    if _TERRAFORM is not None:
        _TERRAFORM.stop()


@pytest.fixture(scope="session")
def terraform() -> TerraformRun:
    return terraform_run().wait()
