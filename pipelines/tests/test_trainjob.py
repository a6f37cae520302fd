"""Multi-node training: the TrainJob the Kubeflow SDK would create (built offline, checked with the SDK's own models
and against manifests/), and the same entrypoint for real under local torchrun (2 ranks, gloo, CPU).

No Kubernetes API server runs here, so submission and log following are not exercised: what the cluster would
receive is, byte for byte, since render_trainjob runs the SDK's own TrainerClient.train with only the transport
of the create call recorded.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from rfm_data.errors import ConfigError
from rfm_pipelines.components import get_component
from rfm_pipelines.trainjob import TrainJobSpec, render_trainjob, train_command, validate_trainjob

pytest.importorskip("kubeflow.trainer", reason='needs the trainjob extra: pip install "rfm-pipelines[trainjob]"')

REPO = Path(__file__).resolve().parents[2]
RUNTIME = REPO / "manifests" / "base" / "trainingruntime.yaml"


def _spec(**changes: Any) -> TrainJobSpec:
    values: dict[str, Any] = {"image": "ghcr.io/rfm-project/rfm-models:0.1.0", "preset": "clip_cxr",
                              "data_url": "/data/cxr-256", "output_dir": "/data/runs/clip", "num_nodes": 4,
                              "gpus_per_node": 8, "overrides": ("train.budget.max_steps=1000",)}
    return TrainJobSpec(**{**values, **changes})


def test_the_rendered_trainjob_has_the_nodes_gpus_command_and_runtime() -> None:
    body = render_trainjob(_spec(name="clip-4x8", memory_per_node="480Gi"))
    job = validate_trainjob(body, RUNTIME)  # parsed by the SDK's TrainerV1alpha1TrainJob model
    assert (body["apiVersion"], body["kind"]) == ("trainer.kubeflow.org/v1alpha1", "TrainJob")
    assert (job.metadata.name, job.metadata.namespace) == ("clip-4x8", "rfm")
    assert (job.spec.runtime_ref.kind, job.spec.runtime_ref.name) == ("TrainingRuntime", "rfm-torch-distributed")
    trainer = body["spec"]["trainer"]
    assert trainer["numNodes"] == 4 and trainer["image"] == "ghcr.io/rfm-project/rfm-models:0.1.0"
    assert trainer["resourcesPerNode"]["limits"] == {"nvidia.com/gpu": "8", "memory": "480Gi"}
    assert trainer["command"] == ["torchrun", "-m", "rfm_models.train"]
    assert trainer["args"][:3] == ["+experiment=clip_cxr", "data.url=/data/cxr-256", "train.output_dir=/data/runs/clip"]
    assert trainer["args"][-1] == "train.budget.max_steps=1000"  # user overrides come last, so they win
    yaml.safe_dump(body)  # plain data, ready for kubectl apply -f


def test_the_command_is_the_one_the_runtime_launches() -> None:
    runtime = yaml.safe_load(RUNTIME.read_text())
    container = runtime["spec"]["template"]["spec"]["replicatedJobs"][0]["template"]["spec"]["template"]["spec"][
        "containers"][0]
    command, _ = train_command(_spec())
    assert command[0] == container["command"][0] == "torchrun"
    assert runtime["spec"]["mlPolicy"]["torch"]  # the torch plugin sets the PET_* variables torchrun reads


def test_extra_pvcs_become_a_runtime_patch_of_the_node_container() -> None:
    body = render_trainjob(_spec(pvcs={"imaging-archive": "/archive"}, gpus_per_node=0))
    validate_trainjob(body, RUNTIME)
    patch = body["spec"]["runtimePatches"][0]["trainingRuntimeSpec"]["template"]["spec"]["replicatedJobs"][0]
    pod = patch["template"]["spec"]["template"]["spec"]
    assert pod["volumes"] == [{"name": "pvc-0", "persistentVolumeClaim": {"claimName": "imaging-archive"}}]
    assert pod["containers"] == [{"name": "node", "volumeMounts": [{"name": "pvc-0", "mountPath": "/archive"}]}]
    assert "resourcesPerNode" not in body["spec"]["trainer"]  # 0 GPUs: CPU nodes, the runtime's resources


def test_a_job_against_another_runtime_is_rejected_by_the_manifest_check() -> None:
    with pytest.raises(ConfigError, match="does not name the shipped runtime"):
        validate_trainjob(render_trainjob(_spec(runtime="torch-distributed")), RUNTIME)
    with pytest.raises(ConfigError, match="namespace"):
        validate_trainjob(render_trainjob(_spec(namespace="default")), RUNTIME)


@pytest.mark.parametrize(("field", "value", "message"), [
    ("num_nodes", 0, "num_nodes must be >= 1"),
    ("output_dir", "runs/local", "output_dir must be shared by all nodes"),
    ("name", "Clip_Run", "DNS-1035"),
])
def test_bad_specs_name_the_field(field: str, value: Any, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        render_trainjob(_spec(**{field: value}))


def test_the_component_runs_on_the_pipelines_image() -> None:
    container = get_component("trainjob").component_spec.implementation.container
    assert container.image == "ghcr.io/rfm-project/rfm-pipelines:0.1.0"


@pytest.mark.slow  # two ranks that each import torch and train 3 steps
def test_the_entrypoint_trains_under_torchrun_on_two_cpu_ranks(sample_dataset: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    # The overrides a TrainJob node gets, minus the launcher: torchrun --standalone stands in for the PET_* env.
    _, args = train_command(_spec(preset="test_clip_cxr", data_url=str(sample_dataset), output_dir=str(out),
                                  overrides=("data.split=null", "train.budget.max_steps=3", "train.log_every=1")))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2",
                           "-m", "rfm_models.train", *args], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert records[-1]["step"] == 3
    # Counters are whole-job: 3 steps x batch 16 on each of the 2 ranks.
    assert proc.stdout.count("stopped at step 3") == 2 and "96 samples" in proc.stdout
    assert sorted(p.name for p in (out / "model").iterdir()) == [
        "config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"]  # exported once, by rank 0
    assert not list(out.glob("model*/.tmp*")) and len(list(out.glob("model*"))) == 1
