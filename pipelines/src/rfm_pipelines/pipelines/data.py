"""``data`` pipeline: ingest → label."""

# No `from __future__ import annotations`: kfp reads the pipeline's parameter annotations as real types.
from collections.abc import Sequence

from kfp import dsl
from kfp.dsl.graph_component import GraphComponent

from rfm_pipelines.cluster import DEFAULT_SETTINGS, ClusterSettings
from rfm_pipelines.pipelines.registry import pipelines
from rfm_pipelines.pipelines.steps import ExtraStep, add_extra_steps, ingest_step, label_step


def data_pipeline(
    settings: ClusterSettings = DEFAULT_SETTINGS, extra_steps: Sequence[ExtraStep] = ()
) -> GraphComponent:
    """Build the ``data`` pipeline; ``extra_steps`` run on the labelled dataset (your own components)."""
    extras = tuple(extra_steps)

    # kfp ships no type information, hence the ignore.
    @dsl.pipeline(name="rfm-data", description="Ingest a dataset into de-identified shards, then label its reports.")  # type: ignore[untyped-decorator]
    def data(source: str = "sample", adapter: str = "", long_side: int = 256, shard_size: int = 1024,
             label_backend: str = "rule") -> dsl.Dataset:
        ingested = ingest_step(settings, source, adapter, long_side, shard_size)
        labelled = label_step(settings, ingested.outputs["dataset"], label_backend)
        add_extra_steps(extras, labelled.outputs["labelled"])
        return labelled.outputs["labelled"]

    return data


pipelines.register("data")(data_pipeline)
