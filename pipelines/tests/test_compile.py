"""Every registered pipeline compiles; the YAML carries the DAG, images, resources and Kubernetes settings."""

# No `from __future__ import annotations`: kfp reads the pipeline annotations below as real types.

from pathlib import Path
from typing import Any

import pytest
import yaml
from google.protobuf import json_format
from kfp import compiler
from kfp.pipeline_spec import pipeline_spec_pb2

from rfm_pipelines.cluster import ClusterSettings, with_gpus
from rfm_pipelines.components import ingest
from rfm_pipelines.pipelines import create_pipeline, pipelines

# Root DAG tasks of each pipeline (the end-to-end branches live inside its for-loop).
EXPECTED_TASKS = {
    "data": {"ingest", "label"},
    "curation": {"ingest", "label", "importer", "embed", "curate"},
    "end-to-end": {"ingest", "label", "pretrain", "embed", "for-loop-1", "compare"},
    "pretraining": {"ingest", "label", "pretrain"},
    "evaluation": {"ingest", "label", "importer", "evaluate"},
    "report-generation": {"ingest", "label", "pretrain", "reportgen-train", "reportgen-evaluate"},
    "efficiency": {"for-loop-1", "join-datasets", "label", "pretrain", "embed", "for-loop-2", "study-report"},
}
IMAGES = {"exec-ingest": "rfm-data", "exec-label": "rfm-data", "exec-curate": "rfm-curation",
          "exec-pretrain": "rfm-models", "exec-pretrain-2": "rfm-models", "exec-embed": "rfm-models",
          "exec-evaluate": "rfm-eval", "exec-compare": "rfm-eval", "exec-reportgen-train": "rfm-reportgen",
          "exec-reportgen-evaluate": "rfm-reportgen", "exec-join-datasets": "rfm-pipelines",
          "exec-study-report": "rfm-pipelines"}
GPU_EXECUTORS = {"exec-pretrain", "exec-pretrain-2", "exec-embed", "exec-reportgen-train", "exec-reportgen-evaluate"}


def _compile(name: str, tmp_path: Path, **overrides: Any) -> list[dict[str, Any]]:
    path = tmp_path / f"{name}.yaml"
    compiler.Compiler().compile(create_pipeline(name, **overrides), str(path))
    return list(yaml.safe_load_all(path.read_text()))  # document 1: PipelineSpec, 2: platform (kubernetes) spec


def test_every_registered_pipeline_is_covered() -> None:
    assert set(pipelines.names()) == set(EXPECTED_TASKS)


def _all_tasks(spec: dict[str, Any]) -> dict[str, dict[str, Any]]:
    tasks = dict(spec["root"]["dag"]["tasks"])
    for component in spec["components"].values():
        tasks.update(component.get("dag", {}).get("tasks", {}))
    return tasks


@pytest.mark.parametrize("name", sorted(EXPECTED_TASKS))
def test_dag_images_and_resources(name: str, tmp_path: Path) -> None:
    spec, _ = _compile(name, tmp_path)
    tasks = spec["root"]["dag"]["tasks"]
    assert set(tasks) == EXPECTED_TASKS[name]
    assert tasks["label"]["dependentTasks"] == (["join-datasets"] if name == "efficiency" else ["ingest"])
    assert all(t.get("cachingOptions", {}).get("enableCache") for n, t in _all_tasks(spec).items()
               if n not in ("importer", "for-loop-1", "for-loop-2"))
    executors = spec["deploymentSpec"]["executors"]
    assert set(executors) - {"exec-importer"} <= set(IMAGES)
    for executor, package in IMAGES.items():
        if executor in executors:
            container = executors[executor]["container"]
            assert container["image"] == f"ghcr.io/rfm-project/{package}:0.1.0"
            assert container["resources"]["resourceCpuRequest"] and container["resources"]["resourceMemoryRequest"]
            # Training and embedding steps go to GPU nodes; data, curation and evaluation steps do not.
            assert ("accelerator" in container["resources"]) == (executor in GPU_EXECUTORS)


def test_end_to_end_branches_train_at_equal_steps_and_are_compared(tmp_path: Path) -> None:
    spec, platform = _compile("end-to-end", tmp_path)
    loop = spec["root"]["dag"]["tasks"]["for-loop-1"]
    assert loop["parameterIterator"]["items"]["inputParameter"] == "pipelinechannel--branches"
    branch = spec["components"]["comp-for-loop-1"]["dag"]["tasks"]
    assert set(branch) == {"curate", "pretrain-2", "evaluate"}
    assert branch["curate"]["inputs"]["parameters"]["split"]["runtimeValue"]["constant"] == "train"
    # Every branch takes the pipeline's one step budget: equal steps x equal batch = equal compute.
    steps = branch["pretrain-2"]["inputs"]["parameters"]["max_steps"]["componentInputParameter"]
    assert steps == "pipelinechannel--train_steps"
    assert branch["pretrain-2"]["inputs"]["artifacts"]["subset"]["taskOutputArtifact"]["producerTask"] == "curate"
    compare = spec["root"]["dag"]["tasks"]["compare"]
    assert compare["inputs"]["artifacts"]["runs"]["taskOutputArtifact"]["producerTask"] == "for-loop-1"
    defaults = spec["root"]["inputDefinitions"]["parameters"]["branches"]["defaultValue"]
    assert [b["label"] for b in defaults] == ["curated", "random", "full"]
    k8s = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    assert k8s["exec-pretrain-2"]["tolerations"][0]["key"] == "nvidia.com/gpu"


@pytest.mark.parametrize("name", sorted(EXPECTED_TASKS))
def test_kubernetes_settings(name: str, tmp_path: Path) -> None:
    _, platform = _compile(name, tmp_path)
    executors = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    for executor in ({"exec-ingest", "exec-label", "exec-curate"} & set(executors)) | {"exec-ingest"}:
        k8s = executors[executor]
        assert [(m["constant"], m["mountPath"]) for m in k8s["pvcMount"]] == [("rfm-data", "/data"),
                                                                             ("rfm-cache", "/cache")]
        assert k8s["emptyDirMounts"] == [{"medium": "Memory", "mountPath": "/dev/shm", "sizeLimit": "2Gi",
                                          "volumeName": "dshm"}]
        assert k8s["secretAsVolume"][0]["secretName"] == "rfm-gcs-credentials"
    deid = executors["exec-ingest"]["secretAsEnv"][0]
    assert deid["secretName"] == "rfm-deid-key" and deid["keyToEnv"] == [{"envVar": "RFM_DEID_KEY", "secretKey": "key"}]


def test_settings_rename_cluster_objects(tmp_path: Path) -> None:
    settings = ClusterSettings(data_pvc="imaging", deid_secret="site-key", caching=False)
    spec, platform = _compile("data", tmp_path, settings=settings)
    ingest_k8s = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]["exec-ingest"]
    assert ingest_k8s["pvcMount"][0]["constant"] == "imaging"
    assert ingest_k8s["secretAsEnv"][0]["secretName"] == "site-key"
    assert not any(t.get("cachingOptions", {}).get("enableCache") for t in spec["root"]["dag"]["tasks"].values())


@pytest.mark.parametrize("name", sorted(EXPECTED_TASKS))
def test_pipeline_spec_protobuf_round_trip(name: str, tmp_path: Path) -> None:
    spec, platform = _compile(name, tmp_path)
    message = json_format.ParseDict(spec, pipeline_spec_pb2.PipelineSpec())
    assert json_format.MessageToDict(message) == spec
    assert message.pipeline_info.name == f"rfm-{name}"
    platform_message = json_format.ParseDict(platform, pipeline_spec_pb2.PlatformSpec())
    assert "kubernetes" in platform_message.platforms


def test_gpu_helper_sets_accelerator_node_selector_and_toleration(tmp_path: Path) -> None:
    from kfp import dsl

    @dsl.pipeline(name="gpu-step")
    def gpu_step() -> None:
        with_gpus(ingest(source="sample"), ClusterSettings(), count=2)

    path = tmp_path / "gpu.yaml"
    compiler.Compiler().compile(gpu_step, str(path))
    spec, platform = yaml.safe_load_all(path.read_text())
    resources = spec["deploymentSpec"]["executors"]["exec-ingest"]["container"]["resources"]
    assert resources["accelerator"]["resourceType"] == "nvidia.com/gpu"
    assert resources["accelerator"]["resourceCount"] == "2"
    k8s = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]["exec-ingest"]
    assert k8s["nodeSelector"]["labels"] == {"nvidia.com/gpu.present": "true"}
    assert k8s["tolerations"] == [{"effect": "NoSchedule", "key": "nvidia.com/gpu", "operator": "Exists"}]
