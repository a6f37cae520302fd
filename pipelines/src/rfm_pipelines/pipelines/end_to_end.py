"""``end-to-end`` pipeline: ingest → label → warm-up pretrain → embed → per branch (curate → pretrain →
evaluate) → compare.

Each *branch* is a training set drawn from the train split: by default the curated subset (hierarchical
k-means over the warm-up model's joint embeddings), a random subset of the same size, and the full set. Every
branch trains the same preset for the same number of optimizer steps (the same batch, hence the same
FLOPs: the equal-compute comparison of CheXficient), is evaluated by the same rfm-eval suite, and the
comparison report puts them side by side with paired bootstrap tests against the reference branch.

Branches are a pipeline parameter (a JSON list of ``label``, ``strategy``, ``budget``, ``dedup``; the key is
``label`` because a KFP loop item's ``.name`` is the loop's own name), so a user adds a strategy without
touching code::

    rfm run end-to-end --set 'branches=[{"label": "balanced", "strategy": "label_balance", "budget": 0.25,
                                         "dedup": "exact"}, ...]'
"""

# No `from __future__ import annotations`: kfp reads the pipeline's parameter annotations as real types.
from collections.abc import Sequence
from typing import Any

from kfp import dsl
from kfp.dsl.graph_component import GraphComponent

from rfm_pipelines.cluster import DEFAULT_SETTINGS, ClusterSettings
from rfm_pipelines.pipelines.registry import pipelines
from rfm_pipelines.pipelines.steps import (
    ExtraStep,
    add_extra_steps,
    compare_step,
    evaluate_step,
    ingest_step,
    label_step,
    pretrain_step,
    select_train_step,
    warmup_embeddings,
)

# Curated, random at the same size, and everything ("random" at budget 1.0 without dedup keeps every sample).
# Semantic dedup is off by default: a short warm-up model maps many distinct images close together, and the
# curated subset would shrink below the random one's size; turn it on with embeddings from a trained model.
DEFAULT_BRANCHES: list[dict[str, Any]] = [
    {"label": "curated", "strategy": "hkmeans", "budget": 0.25, "dedup": "exact"},
    {"label": "random", "strategy": "random", "budget": 0.25, "dedup": ""},
    {"label": "full", "strategy": "random", "budget": 1.0, "dedup": ""},
]


def end_to_end_pipeline(
    settings: ClusterSettings = DEFAULT_SETTINGS, extra_steps: Sequence[ExtraStep] = ()
) -> GraphComponent:
    """Build the ``end-to-end`` pipeline; ``extra_steps`` run on the comparison folder."""
    extras = tuple(extra_steps)

    # kfp ships no type information, hence the ignore.
    @dsl.pipeline(name="rfm-end-to-end",  # type: ignore[untyped-decorator]
                  description="Curated vs random vs full training at equal compute, evaluated and compared.")
    def end_to_end(source: str = "sample", adapter: str = "", long_side: int = 256, shard_size: int = 1024,
                   label_backend: str = "rule", preset: str = "demo_clip_cxr",
                   train_overrides: list[str] = [],  # noqa: B006 (kfp takes the literal as the default value)
                   warmup_steps: int = 20, train_steps: int = 60,
                   branches: list = DEFAULT_BRANCHES,  # type: ignore[type-arg]  # kfp: a loop item must not be Any
                   reference: str = "full", eval_suite: str = "quick", eval_split: str = "test",
                   eval_benchmark: str = "sample", n_boot: int = 1000, seed: int = 0) -> dsl.Markdown:
        ingested = ingest_step(settings, source, adapter, long_side, shard_size)
        labelled = label_step(settings, ingested.outputs["dataset"], label_backend).outputs["labelled"]
        embeddings = warmup_embeddings(settings, labelled, preset, train_overrides, warmup_steps, seed)
        with dsl.ParallelFor(branches, parallelism=0) as branch:
            subset = select_train_step(settings, labelled, embeddings, branch, seed)
            trained = pretrain_step(settings, "pretrain", labelled, preset, train_overrides, train_steps, seed,
                                    subset=subset.outputs["curated"])
            evaluated = evaluate_step(settings, "evaluate", trained.outputs["model"], labelled, eval_suite,
                                      eval_split, eval_benchmark, n_boot, seed, name=branch.label)
        compared = compare_step(settings, dsl.Collected(evaluated.outputs["results"]), reference, n_boot, seed)
        add_extra_steps(extras, compared.outputs["comparison"])
        return compared.outputs["report"]

    return end_to_end


pipelines.register("end-to-end")(end_to_end_pipeline)
