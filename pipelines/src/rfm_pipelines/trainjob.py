"""Multi-node training as a Kubeflow Trainer v2 ``TrainJob`` (``trainer.kubeflow.org/v1alpha1``) via the kubeflow SDK.

One code path builds the job: :func:`create_trainjob` hands our trainer and options to the SDK's
``TrainerClient.train``; :func:`render_trainjob` runs that same path with the Kubernetes create call recorded instead
of sent, so the exact body a cluster would receive can be inspected, validated against the SDK's models and applied
by hand (``kubectl apply``) without an API server. :func:`follow_trainjob` waits, streams the logs of node 0, and
fails with the job's own message.

The training command is rfm-train under torchrun: the Trainer's torch plugin sets ``PET_NNODES``,
``PET_NPROC_PER_NODE``, ``PET_NODE_RANK`` and ``PET_MASTER_ADDR/PORT``, which torchrun reads as its arguments, so
the same ``python -m rfm_models.train`` runs under local ``torchrun --standalone`` (gloo) and on the cluster (NCCL).

Needs the ``trainjob`` extra: ``pip install "rfm-pipelines[trainjob]"``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from rfm_data.errors import ConfigError

API_VERSION = "trainer.kubeflow.org/v1alpha1"
DEFAULT_RUNTIME = "rfm-torch-distributed"  # manifests/base/trainingruntime.yaml
NODE_CONTAINER = "node"  # the trainer container of that runtime (also the SDK's log step "node-0")
_NAME = re.compile(r"^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$")


@dataclass(frozen=True)
class TrainJobSpec:
    """What a multi-node rfm training needs; everything else comes from the TrainingRuntime in ``manifests/``.

    ``output_dir`` must be shared by all nodes (a PVC path such as ``/data/runs/x`` or a ``gs://`` URL): rank 0
    exports the model to ``<output_dir>/model`` and every rank resumes from its checkpoints after a restart.
    """

    image: str
    preset: str
    data_url: str
    output_dir: str
    num_nodes: int = 1
    gpus_per_node: int = 1
    overrides: tuple[str, ...] = ()
    runtime: str = DEFAULT_RUNTIME
    namespace: str = "rfm"
    name: str | None = None  # None: the SDK generates one
    cpu_per_node: str = ""  # "" = the runtime's default
    memory_per_node: str = ""
    env: dict[str, str] = field(default_factory=dict)
    pvcs: dict[str, str] = field(default_factory=dict)  # extra claim name → mount path (the runtime mounts rfm-data)

    def validate(self) -> None:
        """``ConfigError`` naming the first invalid field and how to fix it."""
        checks = [
            (self.num_nodes >= 1, f"num_nodes must be >= 1, got {self.num_nodes}"),
            (self.gpus_per_node >= 0, f"gpus_per_node must be >= 0 (0 = CPU nodes), got {self.gpus_per_node}"),
            (bool(self.image), "image must name the rfm-models image, e.g. rfm_pipelines.images.image('rfm-models')"),
            (bool(self.preset), "preset must be an rfm-train experiment, e.g. 'clip_cxr'"),
            (bool(self.data_url), "data_url must be the dataset URL as the nodes see it (PVC path or gs://)"),
            (self.output_dir.startswith(("/", "gs://", "s3://")),
             f"output_dir must be shared by all nodes (an absolute PVC path or gs:// URL), got {self.output_dir!r}"),
            (self.name is None or bool(_NAME.match(self.name)),
             f"name must be a DNS-1035 label (lower-case letters, digits, '-'), got {self.name!r}"),
        ]
        for path in self.pvcs.values():
            checks.append((path.startswith("/"), f"pvcs mount paths must be absolute, got {path!r}"))
        for ok, message in checks:
            if not ok:
                raise ConfigError(message)


def train_command(spec: TrainJobSpec) -> tuple[list[str], list[str]]:
    """``(command, args)`` of every node: torchrun over ``rfm_models.train`` and its Hydra overrides."""
    args = [f"+experiment={spec.preset}", f"data.url={spec.data_url}", f"train.output_dir={spec.output_dir}",
            "train.progress=false", *spec.overrides]
    return ["torchrun", "-m", "rfm_models.train"], args


def _resources(spec: TrainJobSpec) -> dict[str, Any]:
    # Quantities as strings: the SDK would otherwise serialise 8 GPUs as the float 8.0.
    resources: dict[str, Any] = {"gpu": str(spec.gpus_per_node)} if spec.gpus_per_node else {}
    resources.update({k: v for k, v in {"cpu": spec.cpu_per_node, "memory": spec.memory_per_node}.items() if v})
    return resources


def _runtime(spec: TrainJobSpec) -> Any:
    """The SDK's view of our TrainingRuntime, given by name so no cluster look-up is needed to build the job."""
    from kubeflow.trainer import Runtime, RuntimeKind, RuntimeTrainer, TrainerType

    trainer = RuntimeTrainer(trainer_type=TrainerType.CUSTOM_TRAINER, framework="torch", image=spec.image,
                             num_nodes=spec.num_nodes)
    return Runtime(name=spec.runtime, trainer=trainer, kind=RuntimeKind.TRAINING_RUNTIME)


def _options(spec: TrainJobSpec) -> list[Any]:
    from kubeflow.trainer.options import (
        ContainerPatch,
        JobSetSpecPatch,
        JobSetTemplatePatch,
        JobSpecPatch,
        JobTemplatePatch,
        Labels,
        Name,
        PodSpecPatch,
        PodTemplatePatch,
        ReplicatedJobPatch,
        RuntimePatch,
        TrainerArgs,
        TrainerCommand,
        TrainingRuntimeSpecPatch,
    )

    command, args = train_command(spec)
    options: list[Any] = [TrainerCommand(command=command), TrainerArgs(args=args),
                          Labels(labels={"app.kubernetes.io/part-of": "rfm", "rfm/preset": spec.preset[:63]})]
    if spec.name:
        options.append(Name(name=spec.name))
    if spec.pvcs:  # volumes beyond the runtime's own go in as a runtime patch of the node pods
        volumes = [{"name": f"pvc-{i}", "persistentVolumeClaim": {"claimName": claim}}
                   for i, claim in enumerate(spec.pvcs)]
        mounts = [{"name": f"pvc-{i}", "mountPath": path} for i, path in enumerate(spec.pvcs.values())]
        container = ContainerPatch(name=NODE_CONTAINER, volume_mounts=mounts)
        pod = PodTemplatePatch(spec=PodSpecPatch(volumes=volumes, containers=[container]))
        job = JobTemplatePatch(spec=JobSpecPatch(template=pod))
        jobset = JobSetTemplatePatch(spec=JobSetSpecPatch(replicated_jobs=[ReplicatedJobPatch(name="node",
                                                                                               template=job)]))
        options.append(RuntimePatch(training_runtime_spec=TrainingRuntimeSpecPatch(template=jobset)))
    return options


def create_trainjob(client: Any, spec: TrainJobSpec) -> str:
    """Submit ``spec`` through ``client`` (a ``kubeflow.trainer.TrainerClient``); returns the TrainJob's name."""
    from kubeflow.trainer import CustomTrainerContainer

    spec.validate()
    trainer = CustomTrainerContainer(image=spec.image, num_nodes=spec.num_nodes,
                                     resources_per_node=_resources(spec) or None, env=dict(spec.env) or None)
    name: str = client.train(runtime=_runtime(spec), trainer=trainer, options=_options(spec))
    return name


class _RecordingCustomObjectsApi:
    """Stands in for the Kubernetes transport only: keeps the body the SDK would POST."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []

    def create_namespaced_custom_object(self, group: str, version: str, namespace: str, plural: str,
                                        body: dict[str, Any]) -> dict[str, Any]:
        self.bodies.append({"namespace": namespace, "plural": plural, **body})
        return body


def render_trainjob(spec: TrainJobSpec) -> dict[str, Any]:
    """The TrainJob object that :func:`create_trainjob` would create, built offline by the SDK itself.

    Returns the body as the SDK serialises it (``TrainerV1alpha1TrainJob.to_dict()``) plus ``metadata.namespace``,
    ready for ``yaml.safe_dump`` and ``kubectl apply -f``.
    """
    from kubeflow.trainer import TrainerClient
    from kubeflow.trainer.backends.kubernetes.backend import KubernetesBackend

    # No cluster is contacted: the backend is built without __init__ (which loads a kube-config) and only the
    # transport of the create call is replaced; the job itself goes through the SDK's public train().
    backend = KubernetesBackend.__new__(KubernetesBackend)
    backend.namespace = spec.namespace
    recorder = _RecordingCustomObjectsApi()
    backend.custom_api = recorder
    client = TrainerClient.__new__(TrainerClient)
    client.backend = backend
    create_trainjob(client, spec)
    body = recorder.bodies[-1]
    namespace = body.pop("namespace")
    body.pop("plural")
    body["metadata"]["namespace"] = namespace
    return body


def validate_trainjob(body: dict[str, Any], runtime_manifest: str | Path | None = None) -> Any:
    """Parse ``body`` with the SDK's TrainJob model and check it against our TrainingRuntime manifest.

    Returns the parsed ``TrainerV1alpha1TrainJob``. Raises ``ConfigError`` naming the mismatch: wrong API
    version / kind, a runtime reference other than the manifest's, or a patched container the runtime lacks.
    """
    from kubeflow_trainer_api import models

    job = models.TrainerV1alpha1TrainJob.from_dict(body)
    if job.api_version != API_VERSION or job.kind != "TrainJob":
        raise ConfigError(f"apiVersion/kind must be {API_VERSION}/TrainJob, got {job.api_version}/{job.kind}")
    if runtime_manifest is not None:
        runtime = models.TrainerV1alpha1TrainingRuntime.from_dict(yaml.safe_load(Path(runtime_manifest).read_text()))
        _check_against_runtime(job, runtime)
    return job


def _check_against_runtime(job: Any, runtime: Any) -> None:
    ref = job.spec.runtime_ref
    if (ref.name, ref.kind) != (runtime.metadata.name, runtime.kind):
        raise ConfigError(f"runtimeRef {ref.kind}/{ref.name} does not name the shipped runtime "
                          f"{runtime.kind}/{runtime.metadata.name}; set TrainJobSpec.runtime")
    if job.metadata.namespace and job.metadata.namespace != runtime.metadata.namespace:
        raise ConfigError(f"TrainJob namespace {job.metadata.namespace!r} differs from the runtime's "
                          f"{runtime.metadata.namespace!r}; a TrainingRuntime is only visible in its namespace")
    jobs = {rj.name: rj for rj in runtime.spec.template.spec.replicated_jobs}
    for patch in job.spec.runtime_patches or []:
        for rj in patch.training_runtime_spec.template.spec.replicated_jobs:
            if rj.name not in jobs:
                raise ConfigError(f"runtime patch targets replicated job {rj.name!r}; runtime has {sorted(jobs)}")
            names = {c.name for c in jobs[rj.name].template.spec.template.spec.containers}
            for container in rj.template.spec.template.spec.containers or []:
                if container.name not in names:
                    raise ConfigError(f"runtime patch targets container {container.name!r}; "
                                      f"runtime has {sorted(names)}")


def follow_trainjob(client: Any, name: str, timeout_s: int, log: Callable[[str], None] = print,
                    polling_s: int = 10) -> Any:
    """Wait for TrainJob ``name`` to finish, streaming node 0's log lines to ``log``; returns the SDK's TrainJob.

    Raises:
        RuntimeError: the job failed; the message carries the job's own events (e.g. OOMKilled, image pull).
        TimeoutError: not finished within ``timeout_s``.
    """
    client.wait_for_job_status(name, status={"Running", "Complete", "Failed"}, timeout=timeout_s,
                               polling_interval=polling_s)
    for line in _logs(client, name):
        log(line)
    job = client.wait_for_job_status(name, status={"Complete", "Failed"}, timeout=timeout_s,
                                     polling_interval=polling_s)
    if job.status == "Failed":
        events = "; ".join(f"{e.reason}: {e.message}" for e in client.get_job_events(name)[-5:])
        raise RuntimeError(f"TrainJob {name} failed: {events or 'no events; see kubectl describe trainjob ' + name}")
    return job


def _logs(client: Any, name: str) -> Iterator[str]:
    try:
        yield from client.get_job_logs(name, step=f"{NODE_CONTAINER}-0", follow=True)
    except RuntimeError as err:  # logs are a convenience: the status decides success
        yield f"(log stream of {name} ended: {err})"
