"""Pipeline steps: one rfm component with its cluster settings, shared by every pipeline that uses it.

Resource figures are per step and sized for ~1M CXRs at 256 px (ingest decodes with one worker per CPU).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from kfp.dsl import PipelineTask

from rfm_pipelines.cluster import ClusterSettings, Resources, standard_step, with_deid_key
from rfm_pipelines.components import curate, ingest, label

INGEST_RESOURCES = Resources(cpu="4", memory="16Gi")
INGEST_WORKERS = 4  # = INGEST_RESOURCES.cpu: os.cpu_count() in a pod would report the whole node
LABEL_RESOURCES = Resources(cpu="1", memory="4Gi")
CURATE_RESOURCES = Resources(cpu="4", memory="32Gi")

# A user's extra step: receives the dataset artifact of the step it follows, returns its own task.
ExtraStep = Callable[[Any], PipelineTask]


def ingest_step(settings: ClusterSettings, source: Any, adapter: Any, long_side: Any, shard_size: Any) -> PipelineTask:
    task = ingest(source=source, adapter=adapter, long_side=long_side, shard_size=shard_size,
                  workers=INGEST_WORKERS).set_display_name("ingest")
    with_deid_key(task, settings)
    return standard_step(task, settings, INGEST_RESOURCES)


def label_step(settings: ClusterSettings, dataset: Any, backend: Any) -> PipelineTask:
    task = label(dataset=dataset, backend=backend).set_display_name("label")
    return standard_step(task, settings, LABEL_RESOURCES)


def curate_step(settings: ClusterSettings, dataset: Any, embeddings: Any, strategy: Any, budget: Any, seed: Any,
                dedup: Any) -> PipelineTask:
    task = curate(dataset=dataset, embeddings=embeddings, strategy=strategy, budget=budget, seed=seed,
                  dedup=dedup).set_display_name("curate")
    return standard_step(task, settings, CURATE_RESOURCES)


def add_extra_steps(steps: tuple[ExtraStep, ...], dataset: Any) -> None:
    """Attach each user step after ``dataset``'s producer (the data flow orders them)."""
    for step in steps:
        step(dataset)
