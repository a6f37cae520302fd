"""``curation`` pipeline: ingest → label → curate, with embeddings imported from a URL.

No embedding step exists yet (rfm-models has no ``embed``): the embeddings are an rfm_curation embedding
store whose ids are this ingest's sample ids (same source, same de-identification key). When rfm-models
gains ``embed``, an embed step replaces the importer and ``embeddings_url`` goes away.
"""

# No `from __future__ import annotations`: kfp reads the pipeline's parameter annotations as real types.
from collections.abc import Sequence

from kfp import dsl
from kfp.dsl.graph_component import GraphComponent

from rfm_pipelines.cluster import DEFAULT_SETTINGS, ClusterSettings
from rfm_pipelines.pipelines.registry import pipelines
from rfm_pipelines.pipelines.steps import ExtraStep, add_extra_steps, curate_step, ingest_step, label_step


def curation_pipeline(
    settings: ClusterSettings = DEFAULT_SETTINGS, extra_steps: Sequence[ExtraStep] = ()
) -> GraphComponent:
    """Build the ``curation`` pipeline; ``extra_steps`` run on the curation output folder."""
    extras = tuple(extra_steps)

    # kfp ships no type information, hence the ignore.
    @dsl.pipeline(name="rfm-curation", description="Ingest, label, then select a budgeted, balanced subset.")  # type: ignore[untyped-decorator]
    def curation(embeddings_url: str, source: str = "sample", adapter: str = "", long_side: int = 256,
                 shard_size: int = 1024, label_backend: str = "rule", strategy: str = "hkmeans",
                 budget: float = 0.227, seed: int = 0, dedup: str = "exact,semantic") -> dsl.Dataset:
        ingested = ingest_step(settings, source, adapter, long_side, shard_size)
        labelled = label_step(settings, ingested.outputs["dataset"], label_backend)
        embeddings = dsl.importer(artifact_uri=embeddings_url, artifact_class=dsl.Dataset, reimport=False)
        embeddings.set_display_name("embeddings")
        curated = curate_step(settings, labelled.outputs["labelled"], embeddings.output, strategy, budget, seed,
                              dedup)
        add_extra_steps(extras, curated.outputs["curated"])
        return curated.outputs["curated"]

    return curation


pipelines.register("curation")(curation_pipeline)
