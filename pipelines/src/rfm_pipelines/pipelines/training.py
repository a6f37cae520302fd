"""``pretraining``, ``evaluation`` and ``report-generation`` pipelines: one stage each, on an ingested dataset.

- ``pretraining``: ingest → label → pretrain (a preset, optionally on a curation subset given by URL).
- ``evaluation``: ingest → label → evaluate the model at ``model_url`` (an exported rfm model directory).
- ``report-generation``: ingest → label → CLIP pretrain (the frozen image encoder and the retrieval baseline) →
  report-generator training (decoder pretrained on ``corpus_url`` when given) → scoring against retrieval.
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
    evaluate_step,
    ingest_step,
    label_step,
    pretrain_step,
    reportgen_evaluate_step,
    reportgen_train_step,
)


def pretraining_pipeline(
    settings: ClusterSettings = DEFAULT_SETTINGS, extra_steps: Sequence[ExtraStep] = ()
) -> GraphComponent:
    """Build the ``pretraining`` pipeline; ``extra_steps`` run on the trained model."""
    extras = tuple(extra_steps)

    @dsl.pipeline(name="rfm-pretraining", description="Ingest, label, then pretrain a preset.")  # type: ignore[untyped-decorator]
    def pretraining(source: str = "sample", adapter: str = "", long_side: int = 256, shard_size: int = 1024,
                    label_backend: str = "rule", preset: str = "demo_clip_cxr",
                    train_overrides: list[str] = [],  # noqa: B006 (kfp takes the literal as the default value)
                    train_steps: int = 60, seed: int = 0) -> dsl.Model:
        ingested = ingest_step(settings, source, adapter, long_side, shard_size)
        labelled = label_step(settings, ingested.outputs["dataset"], label_backend).outputs["labelled"]
        trained = pretrain_step(settings, "pretrain", labelled, preset, train_overrides, train_steps, seed)
        add_extra_steps(extras, trained.outputs["model"])
        return trained.outputs["model"]

    return pretraining


def evaluation_pipeline(
    settings: ClusterSettings = DEFAULT_SETTINGS, extra_steps: Sequence[ExtraStep] = ()
) -> GraphComponent:
    """Build the ``evaluation`` pipeline; ``extra_steps`` run on the results folder."""
    extras = tuple(extra_steps)

    @dsl.pipeline(name="rfm-evaluation", description="Evaluate an rfm model directory on an ingested dataset.")  # type: ignore[untyped-decorator]
    def evaluation(model_url: str, source: str = "sample", adapter: str = "", long_side: int = 256,
                   shard_size: int = 1024, label_backend: str = "rule", eval_suite: str = "quick",
                   eval_split: str = "test", eval_benchmark: str = "sample", n_boot: int = 1000,
                   seed: int = 0) -> dsl.Artifact:
        ingested = ingest_step(settings, source, adapter, long_side, shard_size)
        labelled = label_step(settings, ingested.outputs["dataset"], label_backend).outputs["labelled"]
        model = dsl.importer(artifact_uri=model_url, artifact_class=dsl.Model, reimport=False)
        model.set_display_name("model")
        evaluated = evaluate_step(settings, "evaluate", model.output, labelled, eval_suite, eval_split,
                                  eval_benchmark, n_boot, seed)
        add_extra_steps(extras, evaluated.outputs["results"])
        return evaluated.outputs["results"]

    return evaluation


def report_generation_pipeline(
    settings: ClusterSettings = DEFAULT_SETTINGS, extra_steps: Sequence[ExtraStep] = ()
) -> GraphComponent:
    """Build the ``report-generation`` pipeline; ``extra_steps`` run on the generator."""
    extras = tuple(extra_steps)

    @dsl.pipeline(name="rfm-report-generation",  # type: ignore[untyped-decorator]
                  description="Train a report generator on a CLIP image encoder and score it against retrieval.")
    def report_generation(source: str = "sample", adapter: str = "", long_side: int = 256, shard_size: int = 1024,
                          label_backend: str = "rule", preset: str = "demo_clip_cxr",
                          train_overrides: list[str] = [],  # noqa: B006 (kfp takes the literal as the default value)
                          clip_steps: int = 60, corpus_url: str = "", target: str = "findings",
                          decoder_steps: int = 200, generator_steps: int = 300, generator_batch_size: int = 16,
                          eval_split: str = "test", n_boot: int = 1000, seed: int = 0) -> dsl.Markdown:
        ingested = ingest_step(settings, source, adapter, long_side, shard_size)
        labelled = label_step(settings, ingested.outputs["dataset"], label_backend).outputs["labelled"]
        clip = pretrain_step(settings, "pretrain", labelled, preset, train_overrides, clip_steps, seed)
        trained = reportgen_train_step(settings, labelled, clip.outputs["model"], corpus_url, target,
                                       decoder_steps, generator_steps, generator_batch_size, seed)
        scored = reportgen_evaluate_step(settings, trained.outputs["generator"], labelled, clip.outputs["model"],
                                         eval_split, n_boot, seed)
        add_extra_steps(extras, trained.outputs["generator"])
        return scored.outputs["report"]

    return report_generation


pipelines.register("pretraining")(pretraining_pipeline)
pipelines.register("evaluation")(evaluation_pipeline)
pipelines.register("report-generation")(report_generation_pipeline)
