"""manifests/: every YAML parses; kinds, API versions, names and namespaces are the expected ones; overlay patches
target resources of the base; no Secret values are committed. ``kubectl kustomize`` builds run when kubectl exists."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

MANIFESTS = Path(__file__).resolve().parents[2] / "manifests"
EXPECTED = {
    ("v1", "Namespace", "rfm"), ("v1", "ServiceAccount", "rfm-pipeline"),
    ("rbac.authorization.k8s.io/v1", "Role", "rfm-pipeline"),
    ("rbac.authorization.k8s.io/v1", "RoleBinding", "rfm-pipeline"),
    ("v1", "PersistentVolumeClaim", "rfm-data"), ("v1", "PersistentVolumeClaim", "rfm-cache"),
    ("v1", "ResourceQuota", "rfm"), ("trainer.kubeflow.org/v1alpha1", "TrainingRuntime", "rfm-torch-distributed"),
}
OVERLAYS = ["dev", "gpu-cluster"]


def _docs(path: Path) -> list[Any]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d is not None]


def _base_resources() -> list[dict[str, Any]]:
    kustomization = _docs(MANIFESTS / "base" / "kustomization.yaml")[0]
    return [d for name in kustomization["resources"] for d in _docs(MANIFESTS / "base" / name)]


def test_every_yaml_file_parses() -> None:
    files = sorted(MANIFESTS.rglob("*.yaml"))
    assert len(files) >= 10
    for path in files:
        assert _docs(path), path


def test_base_holds_the_expected_resources_in_one_namespace() -> None:
    resources = _base_resources()
    assert {(r["apiVersion"], r["kind"], r["metadata"]["name"]) for r in resources} == EXPECTED
    assert all(r["metadata"].get("namespace", "rfm") == "rfm" for r in resources)
    assert _docs(MANIFESTS / "base" / "kustomization.yaml")[0]["namespace"] == "rfm"


def test_no_secret_values_are_committed() -> None:
    for path in MANIFESTS.rglob("*.yaml"):
        for doc in _docs(path):
            assert not (isinstance(doc, dict) and doc.get("kind") == "Secret"), path
    assert "secretGenerator" not in (MANIFESTS / "base" / "kustomization.yaml").read_text()


def test_role_is_least_privilege() -> None:
    role = next(r for r in _base_resources() if r["kind"] == "Role")
    secrets = next(rule for rule in role["rules"] if "secrets" in rule["resources"])
    assert secrets["verbs"] == ["get"] and set(secrets["resourceNames"]) == {"rfm-deid-key", "rfm-gcs-credentials"}
    assert all("*" not in rule["verbs"] and "*" not in rule["resources"] for rule in role["rules"])


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_overlay_patches_target_base_resources(overlay: str) -> None:
    kustomization = _docs(MANIFESTS / "overlays" / overlay / "kustomization.yaml")[0]
    assert kustomization["resources"] == ["../../base"]
    base = {(r["kind"], r["metadata"]["name"]) for r in _base_resources()}
    for patch in kustomization["patches"]:
        target = patch.get("target")
        if target is None:  # strategic merge: the patch file names its target
            doc = _docs(MANIFESTS / "overlays" / overlay / patch["path"])[0]
            target = {"kind": doc["kind"], "name": doc["metadata"]["name"]}
        assert (target["kind"], target["name"]) in base, (overlay, patch)


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed (the checks above still ran)")
@pytest.mark.parametrize("overlay", ["base", *(f"overlays/{o}" for o in OVERLAYS)])
def test_kustomize_builds(overlay: str) -> None:
    out = subprocess.run(["kubectl", "kustomize", str(MANIFESTS / overlay)], capture_output=True, text=True,
                         check=True).stdout
    built = {(d["kind"], d["metadata"]["name"]): d for d in yaml.safe_load_all(out)}
    assert len(built) == len(EXPECTED)
    runtime = built[("TrainingRuntime", "rfm-torch-distributed")]["spec"]
    pod = runtime["template"]["spec"]["replicatedJobs"][0]["template"]["spec"]["template"]["spec"]
    assert pod["containers"][0]["image"].startswith("ghcr.io/rfm-project/rfm-models:")  # patches did not drop it
    if overlay.endswith("gpu-cluster"):
        assert runtime["mlPolicy"]["numNodes"] == 2 and pod["containers"][0]["resources"]["limits"]["nvidia.com/gpu"]
    if overlay.endswith("dev"):
        assert {d["metadata"]["namespace"] for k, d in built.items() if k[0] != "Namespace"} == {"rfm-dev"}
