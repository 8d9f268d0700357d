"""infra/Dockerfile (no Docker engine here, so read, not built): the base image, a frozen
`uv sync` of the lock without dev dependencies, every COPY source present in the repository and
let through by infra/Dockerfile.dockerignore, a non-root user, and the commands the compose file
and the k8s manifests run installed by that lock. (checkov scans it too: test_checkov.py.)"""

from __future__ import annotations

import fnmatch
import re
from pathlib import Path

from .helpers import INFRA, PROJECT

DOCKERFILE = INFRA / "Dockerfile"
IGNORE = INFRA / "Dockerfile.dockerignore"


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def included(path: str) -> bool:
    """Whether the build context keeps ``path`` (last matching .dockerignore rule wins)."""
    keep = True
    for rule in IGNORE.read_text().splitlines():
        rule = rule.strip()
        if not rule or rule.startswith("#"):
            continue
        negate = rule.startswith("!")
        pattern = rule.lstrip("!").rstrip("/")
        if fnmatch.fnmatch(path, pattern) or path.startswith(pattern + "/"):
            keep = negate
    return keep


def test_base_image_and_locked_install() -> None:
    steps = instructions()
    assert steps[0] == ("FROM", "python:3.13-slim")
    runs = [args for word, args in steps if word == "RUN"]
    syncs = [m.group(0).strip() for r in runs if (m := re.search(r"uv sync[^&]*", r))]
    assert len(syncs) == 2, syncs  # dependencies layer, then the project
    assert all("--frozen" in s and "--no-dev" in s for s in syncs)
    assert "--no-install-project" in syncs[0] and "--no-editable" in syncs[1]
    assert any(re.match(r"pip install --no-cache-dir uv==\d+\.\d+\.\d+$", r) for r in runs), runs


def test_the_project_is_built_with_a_compiler_that_leaves_with_its_layer() -> None:
    """The compiled stream callbacks need gcc when the wheel is built; the image does not keep it."""
    [project] = [args for word, args in instructions() if word == "RUN" and "--no-editable" in args]
    install, sync, purge = (project.index(x) for x in ("apt-get install", "uv sync", "apt-get purge"))
    assert install < sync < purge, project
    assert "gcc" in project[install:sync] and "gcc" in project[purge:]


def test_every_copied_file_exists_and_is_in_the_build_context() -> None:
    copies = [args.split() for word, args in instructions() if word == "COPY"]
    sources = [src for args in copies for src in args[:-1] if not src.startswith("--")]
    assert {"pyproject.toml", "uv.lock", "src/", "flows/", "prefect.yaml", "infra/create_bucket.py"} <= set(sources)
    for src in sources:
        assert (PROJECT / src).exists(), src
        assert included(src.rstrip("/")), f"{src} is excluded by {IGNORE.name}"
    assert not included(".venv") and not included("lakehouse_data") and not included(".git")


def test_runs_as_an_unprivileged_user() -> None:
    users = [args for word, args in instructions() if word == "USER"]
    assert users == ["10001:10001"]
    assert instructions()[-1][0] == "CMD"  # nothing after USER runs as root
    assert [w for w, _ in instructions()].index("USER") > max(
        i for i, (w, _) in enumerate(instructions()) if w == "RUN"
    )


def test_the_commands_deployments_run_are_installed_by_the_lock() -> None:
    """compose.yaml and the k8s manifests run lakehouse, prefect, dask and python: the first three
    are console scripts of the locked environment (the same lock the image syncs)."""
    bin_dir = Path(PROJECT / ".venv" / "bin")
    for script in ("lakehouse", "prefect", "dask"):
        assert (bin_dir / script).exists(), script
    used = (INFRA / "compose" / "compose.yaml").read_text() + "".join(
        p.read_text() for p in (INFRA / "k8s").rglob("*.yaml")
    )
    for command in ('"lakehouse"', '"prefect"', '"dask"'):
        assert command in used, command
