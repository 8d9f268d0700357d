"""Every job has one function in ``crypto_lakehouse.jobs``; its ``lakehouse`` command and its
Prefect flow are thin wrappers over it with the same options.

For each command that runs a job, this checks that the command's parameters, the job's keyword
parameters and the flow's parameters carry the same names (a CLI flag may be spelt otherwise:
``--duration`` sets ``duration_s``, the repeatable ``--table`` sets ``tables``), that they are
required in all three or in none, and that their defaults agree. Every difference is listed below
with its reason; an entry no longer needed fails the test too, so the lists stay true.
"""

from __future__ import annotations

import importlib
import inspect
import sys
from pathlib import Path
from typing import Any

import pytest
import typer

from crypto_lakehouse import jobs
from crypto_lakehouse.cli import app

ROOT = Path(__file__).resolve().parents[1]

# command -> (its job in crypto_lakehouse.jobs, its flow as "module:function" or None)
JOBS: dict[str, tuple[str, str | None]] = {
    "stream": ("stream", "flows.ingest:ingest_flow"),
    "ingest-recording": ("ingest_recording", None),
    "archive import": ("archive_import", "flows.archive:archive_import_flow"),
    "promote silver": ("promote_silver", "flows.silver:promote_silver_flow"),
    "promote gold": ("promote_gold", "flows.gold:build_gold_flow"),
    "backfill": ("backfill", "flows.backfill:backfill_flow"),
    "maintain compact": ("compact", "flows.maintenance:compact_flow"),
    "maintain checkpoint": ("checkpoint", "flows.maintenance:checkpoint_flow"),
    "maintain vacuum": ("vacuum", "flows.maintenance:vacuum_flow"),
    "maintain retention": ("delete_old_data", "flows.maintenance:retention_flow"),
    "tag create": ("create_tag", None),
    "tag delete": ("delete_tag", None),
    "tag list": ("list_tags", None),
    "quality": ("quality", None),
}

# job commands without a flow, and why
NO_FLOW = {
    "ingest-recording": "replays a recording through the loopback exchange: a development and test tool, "
    "nothing to schedule or retry",
    "tag create": "a person names a tag for a backtest; it takes a second, nothing to schedule or retry",
    "tag delete": "as tag create",
    "tag list": "prints the tags: a read, nothing to orchestrate",
    "quality": "prints the completeness ledger: a read; promote-silver builds it and publishes it as an artifact",
}

# commands that run no job, and why
NOT_JOBS = {
    "query": "reads the lakehouse (crypto_lakehouse.query)",
    "history": "reads a table's commits",
    "tables": "reads the catalog",
    "venues": "prints the venue registry",
    "config show": "prints the configuration",
    "exchange serve": "the loopback exchange: a test double and user tool, not a lakehouse job",
    "exchange record": "writes a synthetic recording for the loopback exchange",
    "demo": "runs the jobs above on embedded defaults, printing as it goes",
    "api": "the HTTP query service (crypto_lakehouse.service): a server over the reads, not a job",
    "audit": "reads the query service's audit trail",
    "keys create": "API keys of the query service (crypto_lakehouse.service.keys): access control, not data",
    "keys list": "as keys create",
    "keys revoke": "as keys create",
}

# (command, parameter) of the job that its flow does not take, and why
RUNNER = (
    "where a job's groups run: a Runner the flow builds from scale.runner (Prefect tasks on prefect-dask's "
    "DaskTaskRunner), the command from scale.runner (LAKEHOUSE_SCALE__RUNNER)"
)
NOT_IN_FLOW = {
    ("stream", "progress"): "a live table on the terminal; a flow run has no terminal (its logs are in the UI)",
    ("archive import", "progress"): "a progress bar on the terminal; a flow run has none",
    ("backfill", "progress"): "a progress bar on the terminal; a flow run has none",
    ("backfill", "runner"): RUNNER,
    ("promote silver", "runner"): RUNNER,
    ("promote gold", "runner"): RUNNER,
    ("archive import", "runner"): RUNNER,
}

# (command, parameter) of the job that the command sets without an option of its own, and why
NOT_IN_CLI = {
    ("archive import", "progress"): "shown whenever stdout is a terminal, as for every command",
    ("backfill", "progress"): "shown whenever stderr is a terminal",
    ("backfill", "runner"): RUNNER,
    ("promote silver", "runner"): RUNNER,
    ("promote gold", "runner"): RUNNER,
    ("archive import", "runner"): RUNNER,
}

# (command, option) of the command that is no parameter of the job, and why
CLI_ONLY = {
    ("quality", "as_json"): "how the command prints the ledger the job returns (a table or JSON)",
}

# every command and flow takes these; the job takes the Settings they load
SETTINGS_PARAMS = {"config", "root"}


def _commands(group: Any, prefix: str = "") -> dict[str, Any]:
    """Every command below ``group`` by its path (``maintain compact``). Typer builds its commands
    on its own copy of click: groups are told apart by their ``commands``."""
    found: dict[str, Any] = {}
    for name, cmd in group.commands.items():
        path = f"{prefix}{name}"
        if hasattr(cmd, "commands"):
            found |= _commands(cmd, f"{path} ")
        else:
            found[path] = cmd
    return found


COMMANDS = _commands(typer.main.get_command(app))


def _flow(ref: str) -> Any:
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))  # flows/ sits beside src/, as prefect.yaml's entrypoints say
    module, name = ref.split(":")
    return getattr(importlib.import_module(module), name)


def _signature(func: Any) -> dict[str, inspect.Parameter]:
    return dict(inspect.signature(func).parameters)


def _same_default(a: Any, b: Any) -> bool:
    """Defaults compared as the values they stand for (a Path option and a str parameter alike)."""
    if isinstance(a, Path) or isinstance(b, Path):
        return Path(a) == Path(b)
    return a == b


def test_every_command_is_a_job_or_says_why_not() -> None:
    assert set(JOBS) | set(NOT_JOBS) == set(COMMANDS), "classify every command in JOBS or NOT_JOBS"
    assert not set(JOBS) & set(NOT_JOBS)
    assert {c for c, (_, flow) in JOBS.items() if flow is None} == set(NO_FLOW)


def test_every_job_is_exported_and_takes_settings_then_keyword_only_options() -> None:
    for command, (job, _) in JOBS.items():
        assert job in jobs.__all__, command
        params = list(_signature(getattr(jobs, job)).values())
        assert params[0].name == "settings" and params[0].kind is inspect.Parameter.POSITIONAL_OR_KEYWORD, job
        assert all(p.kind is inspect.Parameter.KEYWORD_ONLY for p in params[1:]), f"{job}: options are keyword-only"


@pytest.mark.parametrize("command", sorted(JOBS))
def test_command_job_and_flow_take_the_same_options(command: str) -> None:
    job_name, flow_ref = JOBS[command]
    cli = {p.name: p for p in COMMANDS[command].params if p.name}
    job = {n: p for n, p in _signature(getattr(jobs, job_name)).items() if n != "settings"}
    assert SETTINGS_PARAMS <= set(cli), f"{command}: every command takes --config and --root"

    cli_names = set(cli) - SETTINGS_PARAMS - {p for c, p in CLI_ONLY if c == command}
    not_in_cli = {p for c, p in NOT_IN_CLI if c == command}
    assert cli_names == set(job) - not_in_cli, f"{command}: the command's options are the job's parameters"

    for name in cli_names:
        assert cli[name].required == (job[name].default is inspect.Parameter.empty), f"{command} {name}: required"
        if (command, name) not in NOT_IN_FLOW and cli[name].default is not None:
            assert _same_default(cli[name].default, job[name].default), f"{command} {name}: default"

    if flow_ref is None:
        return
    flow = _signature(_flow(flow_ref).fn)
    assert SETTINGS_PARAMS <= set(flow), f"{flow_ref}: every flow takes config and root"
    not_in_flow = {p for c, p in NOT_IN_FLOW if c == command}
    assert set(flow) - SETTINGS_PARAMS == set(job) - not_in_flow, f"{flow_ref}: the flow's parameters are the job's"
    for name in set(flow) - SETTINGS_PARAMS:
        assert (flow[name].default is inspect.Parameter.empty) == (job[name].default is inspect.Parameter.empty), (
            f"{flow_ref} {name}: required"
        )
        if flow[name].default is not inspect.Parameter.empty:
            assert _same_default(flow[name].default, job[name].default), f"{flow_ref} {name}: default"


def test_the_allow_lists_name_real_commands_and_parameters() -> None:
    for command, param in NOT_IN_FLOW.keys() | NOT_IN_CLI.keys():
        assert command in JOBS and param in _signature(getattr(jobs, JOBS[command][0])), (command, param)
    for command, param in NOT_IN_FLOW:
        flow_ref = JOBS[command][1]
        assert flow_ref is not None and param not in _signature(_flow(flow_ref).fn), (command, param)
    for command, param in NOT_IN_CLI:
        assert param not in {p.name for p in COMMANDS[command].params}, (command, param)
    for command, param in CLI_ONLY:
        assert command in JOBS and param in {p.name for p in COMMANDS[command].params}, (command, param)
        assert param not in _signature(getattr(jobs, JOBS[command][0])), (command, param)
