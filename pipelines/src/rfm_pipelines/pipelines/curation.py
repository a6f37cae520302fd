"""``curation`` pipeline: ingest → label → embed (with a model the user gives) → curate.

The embedding model is any exported rfm model directory (``rfm-train`` writes one to
``<output_dir>/model``; on a cluster a PVC path or a gs:// URL), imported as a KFP Model artifact. The
end-to-end pipeline trains its own warm-up model instead.
"""

# No `from __future__ import annotations`: kfp reads the pipeline's parameter annotations as real types.
from collections.abc import Sequence

from kfp import dsl
from kfp.dsl.graph_component import GraphComponent

from rfm_pipelines.cluster import DEFAULT_SETTINGS, ClusterSettings
from rfm_pipelines.pipelines.registry import pipelines
from rfm_pipelines.pipelines.steps import (
    ExtraStep,
    add_extra_steps,
    curate_step,
    embed_step,
    ingest_step,
    label_step,
)


def curation_pipeline(
    settings: ClusterSettings = DEFAULT_SETTINGS, extra_steps: Sequence[ExtraStep] = ()
) -> GraphComponent:
    """Build the ``curation`` pipeline; ``extra_steps`` run on the curation output folder."""
    extras = tuple(extra_steps)

    # kfp ships no type information, hence the ignore.
    @dsl.pipeline(name="rfm-curation", description="Ingest, label, embed, then select a budgeted, balanced subset.")  # type: ignore[untyped-decorator]
    def curation(model_url: str, source: str = "sample", adapter: str = "", long_side: int = 256,
                 shard_size: int = 1024, label_backend: str = "rule", strategy: str = "hkmeans",
                 budget: float = 0.227, seed: int = 0, dedup: str = "exact,semantic",
                 split: str = "") -> dsl.Dataset:
        ingested = ingest_step(settings, source, adapter, long_side, shard_size)
        labelled = label_step(settings, ingested.outputs["dataset"], label_backend)
        model = dsl.importer(artifact_uri=model_url, artifact_class=dsl.Model, reimport=False)
        model.set_display_name("model")
        embedded = embed_step(settings, model.output, labelled.outputs["labelled"])
        curated = curate_step(settings, labelled.outputs["labelled"], embedded.outputs["embeddings"], strategy,
                              budget, seed, dedup, split)
        add_extra_steps(extras, curated.outputs["curated"])
        return curated.outputs["curated"]

    return curation


pipelines.register("curation")(curation_pipeline)
