"""infra/k8s: every base manifest validates on its own with ``kubernetes-validate --strict``;
every file a kustomization names exists; the base and every overlay render with ``kubectl
kustomize`` and what they render validates strictly too, with the hygiene every workload needs
(non-root, read-only root filesystem, no privilege escalation, requests and limits, probes),
the ingest shards' ``--shard i/N`` following the replica count, settings the lakehouse accepts,
and no Secret object committed.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

from crypto_lakehouse.config import load_settings
from crypto_lakehouse.ingest.shards import assign

from .helpers import INFRA

K8S = INFRA / "k8s"
BASE = K8S / "base"
OVERLAYS = sorted(p.parent for p in (K8S / "overlays").glob("*/kustomization.yaml"))
TARGETS = {"base": BASE} | {f"overlays/{p.name}": p for p in OVERLAYS}
KUBERNETES_VERSION = "1.32.0"  # the kubectl on these machines is 1.32; kubernetes-validate ships its schemas
KUBERNETES_VALIDATE = Path(sys.executable).with_name("kubernetes-validate")
NAMESPACE = "crypto-lakehouse"
WORKLOADS = {"Deployment", "StatefulSet", "Job"}
STATE_DIR = "/var/lib/lakehouse"  # LAKEHOUSE_STATE_DIR of the image (infra/Dockerfile)


def kustomization(directory: Path) -> dict[str, Any]:
    return dict(yaml.safe_load((directory / "kustomization.yaml").read_text()))


def validate(*paths: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(KUBERNETES_VALIDATE), "--strict", "--kubernetes-version", KUBERNETES_VERSION, *map(str, paths)],
        capture_output=True,
        text=True,
    )


def test_every_file_a_kustomization_names_exists() -> None:
    assert OVERLAYS, "no overlay"
    for directory in TARGETS.values():
        k = kustomization(directory)
        named = list(k.get("resources", [])) + [p["path"] for p in k.get("patches", []) if "path" in p]
        assert named, directory
        for entry in named:
            target = (directory / entry).resolve()
            assert target.is_file() or (target / "kustomization.yaml").is_file(), f"{directory}: {entry}"
    for overlay in OVERLAYS:
        assert "../../base" in kustomization(overlay)["resources"], overlay


def test_base_manifests_validate_one_by_one(tmp_path: Path) -> None:
    files = [BASE / name for name in kustomization(BASE)["resources"]]
    done = validate(*files)
    assert done.returncode == 0, done.stdout + done.stderr
    documents = sum(1 for f in files for d in yaml.safe_load_all(f.read_text()) if d)
    assert done.stdout.count(" passed for resource ") == documents, done.stdout
    broken = tmp_path / "broken.yaml"  # --strict rejects a field the schema does not have
    broken.write_text("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: x\n  nmespace: y\ndata: {}\n")
    assert validate(broken).returncode != 0


@cache
def rendered(target: str) -> list[dict[str, Any]]:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip(
            "kubectl absent on this machine: overlays not rendered "
            "(test_base_manifests_validate_one_by_one still validated every base file)"
        )
    done = subprocess.run([kubectl, "kustomize", str(TARGETS[target])], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return [d for d in yaml.safe_load_all(done.stdout) if d]


def of_kind(target: str, *kinds: str) -> list[dict[str, Any]]:
    return [d for d in rendered(target) if d["kind"] in kinds]


def named(target: str, kind: str, name: str) -> dict[str, Any]:
    (found,) = [d for d in of_kind(target, kind) if d["metadata"]["name"] == name]
    return found


@pytest.mark.parametrize("target", TARGETS)
def test_rendered_manifests_validate_strictly(target: str, tmp_path: Path) -> None:
    out = tmp_path / "rendered.yaml"
    out.write_text(yaml.safe_dump_all(rendered(target)))
    done = validate(out)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.count(" passed for resource ") == len(rendered(target))
    for doc in rendered(target):
        if doc["kind"] != "Namespace":
            assert doc["metadata"].get("namespace") == NAMESPACE, (doc["kind"], doc["metadata"]["name"])
    assert not of_kind(target, "Secret"), "a Secret is created outside the repository, never committed"


@pytest.mark.parametrize("target", TARGETS)
def test_every_workload_is_hardened_and_sized(target: str) -> None:
    workloads = of_kind(target, *WORKLOADS)
    assert {w["metadata"]["name"] for w in workloads} >= {
        "dask-scheduler",
        "dask-worker",
        "ingest",
        "prefect-worker",
        "prefect-deploy",
    }
    for workload in workloads:
        name = f"{workload['kind']}/{workload['metadata']['name']}"
        pod = workload["spec"]["template"]["spec"]
        assert pod["automountServiceAccountToken"] is False, name
        security = pod["securityContext"]
        assert security["runAsNonRoot"] is True and security["runAsUser"] >= 10000, name
        assert security["seccompProfile"] == {"type": "RuntimeDefault"}, name
        for container in pod["containers"]:
            assert ":" in container["image"].rsplit("/", 1)[-1] and not container["image"].endswith(":latest"), name
            resources = container["resources"]
            for kind in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(resources[kind]), (name, kind)
            c = container["securityContext"]
            assert c["allowPrivilegeEscalation"] is False, name
            assert c["readOnlyRootFilesystem"] is True, name
            assert c["capabilities"] == {"drop": ["ALL"]}, name
            if workload["kind"] != "Job":  # long-running: probed
                assert "livenessProbe" in container and "readinessProbe" in container, name
            writable = {m["mountPath"] for m in container.get("volumeMounts", [])}
            assert "/tmp" in writable, f"{name}: a read-only root needs a writable /tmp"


@pytest.mark.parametrize("target", TARGETS)
def test_ingest_shard_i_of_n_follows_the_replicas(target: str) -> None:
    ingest = named(target, "StatefulSet", "ingest")
    (container,) = ingest["spec"]["template"]["spec"]["containers"]
    assert container["command"] == ["lakehouse"]
    assert container["args"] == ["stream", "--shard", "$(SHARD_INDEX)/$(SHARD_COUNT)"]
    env = {e["name"]: e for e in container["env"]}
    order = list(env)
    assert order.index("SHARD_INDEX") < order.index("LAKEHOUSE_WRITER__ID")  # defined before it is referenced
    assert env["SHARD_INDEX"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.labels['apps.kubernetes.io/pod-index']"
    assert env["SHARD_COUNT"]["value"] == str(ingest["spec"]["replicas"])
    assert env["LAKEHOUSE_WRITER__ID"]["value"] == "shard-$(SHARD_INDEX)"
    (config,) = of_kind(target, "ConfigMap")
    pairs = [
        (exchange, symbol)
        for exchange in config["data"]["LAKEHOUSE_STREAM__EXCHANGES"].split(",")
        for symbol in config["data"]["LAKEHOUSE_STREAM__SYMBOLS"].split(",")
    ]
    # no shard without a pair: it would exit 0 and the StatefulSet restart it over and over
    assert all(assign(pairs, ingest["spec"]["replicas"]).values())
    (claim,) = ingest["spec"]["volumeClaimTemplates"]
    assert {"name": claim["metadata"]["name"], "mountPath": STATE_DIR} in container["volumeMounts"]
    port = int(env["LAKEHOUSE_WRITER__LIVE_PORT"]["value"])
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert f"('127.0.0.1', {port})" in " ".join(container[probe]["exec"]["command"]), probe


def test_an_overlay_that_changes_the_replicas_changes_n(tmp_path: Path) -> None:
    shutil.copytree(K8S, tmp_path / "k8s")
    overlay = tmp_path / "k8s" / "overlays" / "laptop" / "kustomization.yaml"
    k = yaml.safe_load(overlay.read_text())
    k["replicas"] = [r for r in k["replicas"] if r["name"] != "ingest"] + [{"name": "ingest", "count": 5}]
    overlay.write_text(yaml.safe_dump(k))
    if shutil.which("kubectl") is None:
        pytest.skip("kubectl absent on this machine: overlays not rendered")
    done = subprocess.run(["kubectl", "kustomize", str(overlay.parent)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    (ingest,) = [d for d in yaml.safe_load_all(done.stdout) if d and d["kind"] == "StatefulSet"]
    env = {e["name"]: e.get("value") for e in ingest["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert ingest["spec"]["replicas"] == 5 and env["SHARD_COUNT"] == "5"


def containers(target: str) -> list[tuple[str, dict[str, Any], dict[str, Any]]]:
    """(workload name, pod spec, container) of every workload."""
    return [
        (w["metadata"]["name"], w["spec"]["template"]["spec"], c)
        for w in of_kind(target, *WORKLOADS)
        for c in w["spec"]["template"]["spec"]["containers"]
    ]


@pytest.mark.parametrize("target", TARGETS)
def test_the_settings_are_accepted_by_the_lakehouse(
    target: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The ConfigMap plus what each lakehouse container adds, with the Secret's keys as files (as
    the secret volume holds them), load without a ConfigError."""
    (config,) = of_kind(target, "ConfigMap")
    data = config["data"]
    assert not {k for k in data if "SECRET" in k or "ACCESS_KEY" in k}, "S3 keys belong in the Secret"
    (tmp_path / "storage_options__aws_access_key_id").write_text("id\n")
    (tmp_path / "storage_options__aws_secret_access_key").write_text("key\n")
    for name, _, container in containers(target):
        if container["image"].startswith("motoserver/"):
            continue
        for key in list(os.environ):
            if key.startswith("LAKEHOUSE_") and key != "LAKEHOUSE_STATE_DIR":
                monkeypatch.delenv(key)
        env = {**data, **{e["name"]: e.get("value", "0") for e in container.get("env", [])}}
        for key, value in env.items():
            monkeypatch.setenv(key, value.replace("$(SHARD_INDEX)", "0"))
        if "LAKEHOUSE_SECRETS_DIR" in env:
            monkeypatch.setenv("LAKEHOUSE_SECRETS_DIR", str(tmp_path))
        settings = load_settings()  # ConfigError on any unknown or invalid LAKEHOUSE_* key
        assert settings.root.startswith("s3://"), name
        assert settings.storage_options["aws_conditional_put"] == "etag", name
        if "LAKEHOUSE_SECRETS_DIR" in env:
            assert settings.storage_options["aws_secret_access_key"].get_secret_value() == "key", name
    assert data["PREFECT_API_URL"].endswith(":4200/api")


@pytest.mark.parametrize("target", TARGETS)
def test_s3_keys_are_files_of_the_secret_and_only_where_needed(target: str) -> None:
    """The Secret is mounted read-only where LAKEHOUSE_SECRETS_DIR points, never put in the
    environment; the Dask workers (tasks bring their options) and the deploy job get none."""
    mounting = set()
    for name, pod, container in containers(target):
        volumes = {v["name"]: v for v in pod.get("volumes", [])}
        env = {e["name"]: e.get("value") for e in container.get("env", [])}
        assert all("configMapRef" in r for r in container.get("envFrom", [])), name
        assert not [e for e in container.get("env", []) if "secretKeyRef" in e.get("valueFrom", {})], name
        for mount in container.get("volumeMounts", []):
            secret = volumes.get(mount["name"], {}).get("secret")  # (not: a volumeClaimTemplate)
            if secret:
                assert secret["secretName"] == "lakehouse-s3" and secret["defaultMode"] == 0o440, name
                assert mount["readOnly"] is True and env["LAKEHOUSE_SECRETS_DIR"] == mount["mountPath"], name
                mounting.add(name)
    assert {"ingest", "prefect-worker"} <= mounting
    assert not mounting & {"dask-worker", "dask-scheduler", "prefect-deploy"}


@pytest.mark.parametrize("target", TARGETS)
def test_the_fanned_out_jobs_and_the_dask_workers_meet_at_the_scheduler(target: str) -> None:
    (config,) = of_kind(target, "ConfigMap")
    scheduler = named(target, "Service", "dask-scheduler")
    ports = {p["name"]: p["port"] for p in scheduler["spec"]["ports"]}
    address = f"tcp://dask-scheduler:{ports['scheduler']}"
    assert config["data"]["LAKEHOUSE_SCALE__RUNNER"] == address
    (worker,) = named(target, "Deployment", "dask-worker")["spec"]["template"]["spec"]["containers"]
    assert worker["command"][:3] == ["dask", "worker", address]
    assert {"configMapRef": {"name": "lakehouse-settings"}} in worker["envFrom"]  # PREFECT_API_URL for task runs


@pytest.mark.parametrize("target", TARGETS)
def test_services_select_pods_and_name_their_ports(target: str) -> None:
    pods = [
        (w["spec"]["template"]["metadata"]["labels"], w["spec"]["template"]["spec"])
        for w in of_kind(target, *WORKLOADS)
    ]
    for service in of_kind(target, "Service"):
        selector = service["spec"]["selector"]
        matching = [spec for labels, spec in pods if selector.items() <= labels.items()]
        assert matching, f"Service {service['metadata']['name']} selects no pod"
        container_ports = {p["name"] for spec in matching for c in spec["containers"] for p in c.get("ports", [])}
        for port in service["spec"].get("ports", []):
            assert port["targetPort"] in container_ports, (service["metadata"]["name"], port)


@pytest.mark.parametrize("target", TARGETS)
def test_the_worker_polls_the_pool_the_deploy_job_creates(target: str) -> None:
    (worker,) = named(target, "Deployment", "prefect-worker")["spec"]["template"]["spec"]["containers"]
    assert worker["command"][worker["command"].index("--pool") + 1] == "lakehouse"
    (job,) = named(target, "Job", "prefect-deploy")["spec"]["template"]["spec"]["containers"]
    assert "prefect work-pool create lakehouse --type process" in job["args"][0] and "deploy --all" in job["args"][0]
