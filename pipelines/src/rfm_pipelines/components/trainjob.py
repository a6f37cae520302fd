"""``trainjob``: multi-node rfm training as a Kubeflow Trainer v2 TrainJob, submitted and followed from a step.

The step itself is light (it waits on the job); the nodes run the rfm-models image. Its logic is
:mod:`rfm_pipelines.trainjob`, so this component runs on the rfm-pipelines image (with the ``trainjob`` extra).
"""

# No `from __future__ import annotations`: kfp reads the annotations as real types (Output[Model], ...).
from typing import List, Optional  # noqa: UP035 -- kfp reads these annotations and needs typing's generics

from kfp import dsl
from kfp.dsl import Model, Output

from rfm_pipelines.images import image


@dsl.component(base_image=image("rfm-pipelines"), install_kfp_package=False)  # type: ignore[untyped-decorator]
def trainjob(
    data_url: str, output_dir: str, model: Output[Model], preset: str = "clip_cxr", num_nodes: int = 2,
    gpus_per_node: int = 8, overrides: Optional[List[str]] = None,  # noqa: UP006, UP045
    trainer_image: str = "", runtime: str = "rfm-torch-distributed", namespace: str = "rfm",
    timeout_s: int = 7 * 24 * 3600,
) -> None:
    """Train ``preset`` on ``num_nodes`` x ``gpus_per_node`` GPUs as a TrainJob; ``model`` points at the export.

    ``data_url`` and ``output_dir`` are paths as the training nodes see them (the runtime's PVC, e.g.
    ``/data/...``, or ``gs://``). ``model.uri`` is set to ``<output_dir>/model``: the weights stay where the
    nodes wrote them (multi-GB exports are not copied through the step). ``trainer_image`` "" = the rfm-models
    image of this release.
    """
    from kubeflow.common.types import KubernetesBackendConfig
    from kubeflow.trainer import TrainerClient

    from rfm_pipelines.images import image as rfm_image
    from rfm_pipelines.trainjob import TrainJobSpec, create_trainjob, follow_trainjob

    spec = TrainJobSpec(image=trainer_image or rfm_image("rfm-models"), preset=preset, data_url=data_url,
                        output_dir=output_dir, num_nodes=num_nodes, gpus_per_node=gpus_per_node,
                        overrides=tuple(overrides or ()), runtime=runtime, namespace=namespace)
    client = TrainerClient(KubernetesBackendConfig(namespace=namespace))
    job = follow_trainjob(client, create_trainjob(client, spec), timeout_s=timeout_s)
    model.uri = f"{output_dir.rstrip('/')}/model"
    model.metadata.update(trainjob=job.name, num_nodes=num_nodes, gpus_per_node=gpus_per_node, preset=preset)
