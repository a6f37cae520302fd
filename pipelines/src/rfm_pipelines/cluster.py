"""Kubernetes settings attached to pipeline tasks (kfp-kubernetes). kfp.local ignores all of them.

Defaults match ``manifests/`` (PVC and secret names, the GPU node label and taint), so a pipeline compiled
with :data:`DEFAULT_SETTINGS` runs in a namespace made from those manifests without edits.
"""

from __future__ import annotations

from dataclasses import dataclass

from kfp import kubernetes
from kfp.dsl import PipelineTask


@dataclass(frozen=True)
class Resources:
    """CPU / memory requests and limits of one step (Kubernetes quantities)."""

    cpu: str = "1"
    memory: str = "4Gi"
    cpu_limit: str = ""  # "" = no limit: CPU limits only throttle, and the namespace quota bounds the total
    memory_limit: str = ""  # "" = the request: a step that grows past it is killed rather than starving others


@dataclass(frozen=True)
class ClusterSettings:
    """Where a pipeline's steps find data, cache, secrets and GPUs on the cluster."""

    data_pvc: str = "rfm-data"
    data_mount: str = "/data"
    cache_pvc: str = "rfm-cache"
    cache_mount: str = "/cache"
    shm_size: str = "2Gi"  # /dev/shm for DataLoader workers; the container default (64 MiB) breaks them
    deid_secret: str = "rfm-deid-key"  # key "key" → RFM_DEID_KEY (pseudonymisation HMAC key)
    gcs_secret: str = "rfm-gcs-credentials"  # key "key.json", a service-account key; optional
    gcs_secret_mount: str = "/var/secrets/gcs"
    # Kubeflow on Kubernetes takes the device-plugin resource name; the GPU model is chosen by node label
    # (GPU feature discovery sets nvidia.com/gpu.product, e.g. NVIDIA-H100-80GB-HBM3).
    gpu_resource: str = "nvidia.com/gpu"
    gpu_node_label: tuple[str, str] = ("nvidia.com/gpu.present", "true")
    gpu_taint_key: str = "nvidia.com/gpu"
    train_gpus: int = 1  # GPUs of one training step; multi-node runs go through the TrainJob component
    caching: bool = True


DEFAULT_SETTINGS = ClusterSettings()


def with_resources(task: PipelineTask, resources: Resources) -> PipelineTask:
    """Requests (and limits where set) for a CPU step."""
    task.set_cpu_request(resources.cpu).set_memory_request(resources.memory)
    task.set_memory_limit(resources.memory_limit or resources.memory)
    if resources.cpu_limit:
        task.set_cpu_limit(resources.cpu_limit)
    return task


def with_storage(task: PipelineTask, settings: ClusterSettings) -> PipelineTask:
    """Data and cache PVCs, a memory-backed /dev/shm, and cache locations on the cache PVC."""
    kubernetes.mount_pvc(task, pvc_name=settings.data_pvc, mount_path=settings.data_mount)
    kubernetes.mount_pvc(task, pvc_name=settings.cache_pvc, mount_path=settings.cache_mount)
    kubernetes.empty_dir_mount(task, volume_name="dshm", mount_path="/dev/shm", medium="Memory",
                               size_limit=settings.shm_size)
    # torch hub, Hugging Face and pip all honour XDG_CACHE_HOME: one variable keeps every cache on the PVC.
    task.set_env_variable("XDG_CACHE_HOME", settings.cache_mount)
    return task


def with_gcs(task: PipelineTask, settings: ClusterSettings) -> PipelineTask:
    """GCS credentials from a secret, as Google's clients expect them: a key file named by an env variable.

    The key file is mounted, not copied into an env variable (env values leak into logs and ``/proc``), and the
    secret is optional so clusters using Workload Identity need none.
    """
    kubernetes.use_secret_as_volume(task, secret_name=settings.gcs_secret, mount_path=settings.gcs_secret_mount,
                                    optional=True)
    task.set_env_variable("GOOGLE_APPLICATION_CREDENTIALS", f"{settings.gcs_secret_mount}/key.json")
    return task


def with_deid_key(task: PipelineTask, settings: ClusterSettings) -> PipelineTask:
    """The pseudonymisation key as ``RFM_DEID_KEY`` (required: ingest refuses to run without it)."""
    return kubernetes.use_secret_as_env(task, secret_name=settings.deid_secret,
                                        secret_key_to_env={"key": "RFM_DEID_KEY"})


def with_gpus(task: PipelineTask, settings: ClusterSettings, count: int = 1) -> PipelineTask:
    """GPU request, GPU node selector and the toleration for tainted GPU nodes (for training / embedding steps)."""
    task.set_accelerator_type(settings.gpu_resource).set_accelerator_limit(count)
    kubernetes.add_node_selector(task, label_key=settings.gpu_node_label[0], label_value=settings.gpu_node_label[1])
    kubernetes.add_toleration(task, key=settings.gpu_taint_key, operator="Exists", effect="NoSchedule")
    return task


def standard_step(task: PipelineTask, settings: ClusterSettings, resources: Resources) -> PipelineTask:
    """What every rfm step gets: resources, storage, GCS credentials, caching."""
    with_resources(task, resources)
    with_storage(task, settings)
    with_gcs(task, settings)
    return task.set_caching_options(settings.caching)
