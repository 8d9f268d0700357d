"""``make serve`` / ``make stop``: an offline local Prefect server (SQLite, analytics off), a
process worker, every deployment of ``prefect.yaml``, the loopback exchange and the streaming
writer, each a background process whose PID and log live under ``.serve/``.

    python -m crypto_lakehouse.devtools.serve start [--port 4200]
    python -m crypto_lakehouse.devtools.serve stop
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

__all__ = ["deploy_all", "prefect_env", "start", "start_prefect_server", "start_worker", "stop"]

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


def deploy_all(env: dict[str, str], project: Path) -> None:
    """Create the process work pool (if missing) and deploy everything in ``prefect.yaml``."""
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


def start_worker(env: dict[str, str], state: Path, project: Path) -> subprocess.Popen[bytes]:
    return _spawn("prefect-worker", [str(_BIN / "prefect"), "worker", "start", "--pool", POOL], env, state, project)


def start(project: Path, *, port: int = 4200) -> None:
    state = project / ".serve"
    env = start_prefect_server(state, port)
    print(f"Prefect UI: http://127.0.0.1:{port}")
    deploy_all(env, project)
    start_worker(env, state, project)
    ex = _spawn("exchange", [sys.executable, "-m", "crypto_lakehouse.cli", "exchange", "serve"], env, state, project)
    rest = _wait_for_line(state / "logs" / "exchange.log", "rest:")
    _spawn(
        "stream",
        [sys.executable, "-m", "crypto_lakehouse.cli", "stream", "--endpoint", rest, "--no-progress"],
        env,
        state,
        project,
    )
    print(
        f"loopback exchange (pid {ex.pid}) at {rest}; streaming writer into the embedded root; "
        f"worker on pool {POOL!r}; logs in {state}/logs; `make stop` stops everything"
    )


def _wait_for_line(path: Path, prefix: str, timeout: float = 60) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for line in path.read_text().splitlines() if path.exists() else []:
            if line.startswith(prefix):
                return line.split()[1]
        time.sleep(0.2)
    raise RuntimeError(f"{path} never printed {prefix!r}")


def stop(state: Path) -> None:
    """Stop what ``start`` started (PIDs under ``state``), writer first and server last."""
    pids = state / "pids"
    for name in ("stream", "exchange", "prefect-worker", "prefect-server"):
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
