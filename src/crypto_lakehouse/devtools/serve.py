"""``make serve`` / ``make stop``: an offline local Prefect server (SQLite, analytics off), a
process worker, every deployment of ``prefect.yaml``, the loopback exchange, the streaming
writer and the HTTP query service (``lakehouse api``), each a background process whose PID
and log live under ``.serve/``.

    python -m crypto_lakehouse.devtools.serve start [--port 4200]
    python -m crypto_lakehouse.devtools.serve stop

``start`` prints each step as it starts and finishes, with the seconds elapsed (the whole start
takes about a minute on 2 cores, most of it ``prefect deploy``), then the UI address, the
lakehouse root and the ``export PREFECT_API_URL=...`` line that points a shell's ``prefect``
command at this server (without it ``prefect`` starts a temporary server of its own).
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

__all__ = [
    "Progress",
    "deploy_all",
    "lakehouse_root",
    "prefect_env",
    "progress_line",
    "start",
    "start_prefect_server",
    "start_worker",
    "stop",
    "summary_lines",
]

POOL = "lakehouse"
_BIN = Path(sys.executable).parent


def prefect_env(home: Path, port: int) -> dict[str, str]:
    return {
        **os.environ,
        "PREFECT_HOME": str(home),
        "PREFECT_API_URL": f"http://127.0.0.1:{port}/api",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "DO_NOT_TRACK": "1",
        "PREFECT_WORKER_QUERY_SECONDS": "2",
    }


def _spawn(
    name: str, args: list[str], env: dict[str, str], state: Path, cwd: Path | None = None
) -> subprocess.Popen[bytes]:
    (state / "logs").mkdir(parents=True, exist_ok=True)
    (state / "pids").mkdir(parents=True, exist_ok=True)
    log = open(state / "logs" / f"{name}.log", "w")  # noqa: SIM115 - handed to the child
    proc = subprocess.Popen(args, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=cwd, start_new_session=True)
    (state / "pids" / f"{name}.pid").write_text(str(proc.pid))
    return proc


def start_prefect_server(state: Path, port: int, *, timeout: float = 120) -> dict[str, str]:
    """Start the server and wait until it is healthy; returns the environment to talk to it."""
    env = prefect_env(state / "prefect", port)
    _spawn(
        "prefect-server",
        [str(_BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)],
        env,
        state,
    )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/health", timeout=2):
                return env
        except OSError:
            time.sleep(0.5)
    raise RuntimeError(f"the Prefect server did not become healthy in {timeout:.0f} s (see {state}/logs)")


def deploy_all(env: dict[str, str], project: Path) -> list[str]:
    """Create the process work pool (if missing) and deploy everything in ``prefect.yaml``;
    returns the names of the deployments."""
    subprocess.run(
        [str(_BIN / "prefect"), "work-pool", "create", POOL, "--type", "process", "--overwrite"],
        env=env,
        cwd=project,
        check=True,
        capture_output=True,
    )
    subprocess.run(
        [str(_BIN / "prefect"), "--no-prompt", "deploy", "--all"], env=env, cwd=project, check=True, capture_output=True
    )
    import yaml

    return [d["name"] for d in yaml.safe_load((project / "prefect.yaml").read_text()).get("deployments") or []]


def start_worker(env: dict[str, str], state: Path, project: Path) -> subprocess.Popen[bytes]:
    return _spawn("prefect-worker", [str(_BIN / "prefect"), "worker", "start", "--pool", POOL], env, state, project)


def progress_line(elapsed_s: float, step: str, text: str) -> str:
    """One progress line of ``start``: ``[  12.3 s] server     healthy``."""
    return f"[{elapsed_s:6.1f} s] {step:<11} {text}"


def summary_lines(*, port: int, root: str, logs: Path, api: str | None = None) -> list[str]:
    """What ``start`` prints once everything runs: the UI, the lakehouse root, the query
    service, the logs, and the ``export PREFECT_API_URL=...`` line on a line of its own (so
    ``grep ^export`` finds it)."""
    service = [f"query service:   {api}   (keys: lakehouse keys create --role reader)"] if api else []
    return [
        f"Prefect UI:      http://127.0.0.1:{port}",
        f"lakehouse root:  {root}",
        *service,
        f"logs:            {logs}   (`make stop` stops everything)",
        "To use this server from your shell (`prefect deployment ls`, `prefect deployment run ...`), run:",
        f"export PREFECT_API_URL=http://127.0.0.1:{port}/api",
    ]


def lakehouse_root(project: Path) -> str:
    """The root the streaming writer and the deployments write to: ``LAKEHOUSE_ROOT`` or the
    embedded default, a local path made absolute against ``project`` (their working directory)."""
    from crypto_lakehouse.config import load_settings

    root = load_settings().root
    return root if "://" in root else str((project / root).resolve())


class Progress:
    """Prints ``start``'s steps as they start and finish, with the seconds since it began."""

    def __init__(self) -> None:
        self._t0 = time.monotonic()

    def __call__(self, step: str, text: str) -> None:
        print(progress_line(time.monotonic() - self._t0, step, text), flush=True)


def _running(proc: subprocess.Popen[bytes], name: str, log: Path, *, settle: float = 1.0) -> None:
    """Raise if ``proc`` exits within ``settle`` seconds (a bad config, a port in use)."""
    try:
        proc.wait(settle)
    except subprocess.TimeoutExpired:
        return
    tail = "\n".join(log.read_text().splitlines()[-5:]) if log.exists() else ""
    raise RuntimeError(f"{name} exited with code {proc.returncode} (see {log}):\n{tail}")


def start(project: Path, *, port: int = 4200) -> None:
    state = project / ".serve"
    logs = state / "logs"
    root = lakehouse_root(project)  # a bad LAKEHOUSE_* setting fails here, before anything starts
    say = Progress()
    say("server", f"starting the Prefect server on 127.0.0.1:{port} (log {logs / 'prefect-server.log'})")
    env = start_prefect_server(state, port)
    say("server", "healthy")
    say("deployments", f"creating work pool {POOL!r}, deploying prefect.yaml")
    names = deploy_all(env, project)
    say("deployments", f"{len(names)} deployed: {', '.join(names)}")
    say("worker", f"starting a process worker on pool {POOL!r}")
    worker = start_worker(env, state, project)
    _wait_for_line(logs / "prefect-worker.log", "Worker", contains="started")
    _running(worker, "the worker", logs / "prefect-worker.log", settle=0)
    say("worker", f"polling (pid {worker.pid})")
    say("exchange", "starting the loopback exchange (synthetic market)")
    ex = _spawn("exchange", [sys.executable, "-m", "crypto_lakehouse.cli", "exchange", "serve"], env, state, project)
    rest = _wait_for_line(logs / "exchange.log", "rest:").split()[1]
    say("exchange", f"serving REST {rest} (pid {ex.pid})")
    say("writer", f"starting `lakehouse stream --endpoint {rest}`")
    writer = _spawn(
        "stream",
        [sys.executable, "-m", "crypto_lakehouse.cli", "stream", "--endpoint", rest, "--no-progress"],
        env,
        state,
        project,
    )
    _running(writer, "the streaming writer", logs / "stream.log")
    say("writer", f"streaming into {root} (pid {writer.pid})")
    api = _start_api(env, state, project)
    say("api", f"the query service answers on {api}")
    print()
    print("\n".join(summary_lines(port=port, root=root, logs=logs, api=api)), flush=True)


def _start_api(env: dict[str, str], state: Path, project: Path, *, timeout: float = 60) -> str:
    """``lakehouse api`` on ``api.host``:``api.port`` (config), once its /health answers."""
    from crypto_lakehouse.config import load_settings

    api = load_settings().api
    base = f"http://{api.host}:{api.port}"
    proc = _spawn("api", [sys.executable, "-m", "crypto_lakehouse.cli", "api"], env, state, project)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        _running(proc, "the query service", state / "logs" / "api.log", settle=0)
        try:
            with urllib.request.urlopen(f"{base}/health", timeout=2):
                return base
        except urllib.error.HTTPError:  # 503: up, storage not ready yet
            return base
        except OSError:
            time.sleep(0.3)
    raise RuntimeError(f"the query service did not answer on {base} in {timeout:.0f} s (see {state}/logs/api.log)")


def _wait_for_line(path: Path, prefix: str, timeout: float = 60, *, contains: str = "") -> str:
    """The first line of ``path`` that starts with ``prefix`` (and holds ``contains``)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for line in path.read_text().splitlines() if path.exists() else []:
            if line.startswith(prefix) and contains in line:
                return line
        time.sleep(0.2)
    raise RuntimeError(f"{path} never printed {prefix!r}")


def stop(state: Path) -> None:
    """Stop what ``start`` started (PIDs under ``state``), writer first and server last."""
    pids = state / "pids"
    for name in ("api", "stream", "exchange", "prefect-worker", "prefect-server"):
        f = pids / f"{name}.pid"
        if not f.exists():
            continue
        pid = int(f.read_text())
        try:
            os.killpg(pid, signal.SIGTERM)
            for _ in range(50):
                os.killpg(pid, 0)
                time.sleep(0.2)
            os.killpg(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        f.unlink()
        print(f"stopped {name} (pid {pid})")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("action", choices=["start", "stop"])
    ap.add_argument("--port", type=int, default=4200)
    args = ap.parse_args()
    project = Path.cwd()
    if args.action == "start":
        start(project, port=args.port)
    else:
        stop(project / ".serve")


if __name__ == "__main__":
    main()
