"""``efficiency`` pipeline: the data-efficiency study behind ``rfm study efficiency``.

ingest each source → join them into one pool → label → warm-up pretrain → embed → per planned run (curate the
train split → pretrain for the run's steps / FLOPs → evaluate) → study report (seed aggregation, paired tests
against random and full on every evaluated split and per source dataset, metric vs budget / compute plots,
rare-finding gains, scaling-law fit).

The runs are a parameter (a JSON list made by :func:`rfm_pipelines.study.plan_runs` from a study preset: arms x
seeds), so a cluster user submits the same study the CLI runs locally::

    rfm study efficiency --quick --data-root /data/raw
    rfm submit efficiency --host ... --set "runs=$(python -c '...plan_runs...')"
"""

# No `from __future__ import annotations`: kfp reads the pipeline's parameter annotations as real types.
from collections.abc import Sequence
from typing import Any

from kfp import dsl
from kfp.dsl import PipelineTask
from kfp.dsl.graph_component import GraphComponent

from rfm_pipelines.cluster import DEFAULT_SETTINGS, ClusterSettings, Resources, standard_step, with_gpus
from rfm_pipelines.components import pretrain
from rfm_pipelines.components.study import join_datasets, study_report
from rfm_pipelines.pipelines.registry import pipelines
from rfm_pipelines.pipelines.steps import (
    TRAIN_RESOURCES,
    ExtraStep,
    add_extra_steps,
    evaluate_step,
    ingest_step,
    label_step,
    select_train_step,
    warmup_embeddings,
)
from rfm_pipelines.study.plan import pipeline_arguments, study_presets

JOIN_RESOURCES = Resources(cpu="1", memory="4Gi")
REPORT_RESOURCES = Resources(cpu="2", memory="8Gi")
# The defaults are the `sample` study on the bundled sample: the pipeline runs as-is; the CLI passes a preset's.
_DEFAULTS: dict[str, Any] = pipeline_arguments(study_presets.create("sample"), "")


def _train_run(settings: ClusterSettings, dataset: Any, subset: Any, run: Any) -> PipelineTask:
    """One planned run's training: its preset, overrides, step and FLOP budgets, seed."""
    task = pretrain(dataset=dataset, subset=subset, preset=run.preset, overrides=run.overrides,
                    max_steps=run.steps, max_flops=run.max_flops, seed=run.seed).set_display_name("pretrain")
    return with_gpus(standard_step(task, settings, TRAIN_RESOURCES), settings, settings.train_gpus)


def efficiency_pipeline(
    settings: ClusterSettings = DEFAULT_SETTINGS, extra_steps: Sequence[ExtraStep] = ()
) -> GraphComponent:
    """Build the ``efficiency`` pipeline; ``extra_steps`` run on the study folder."""
    extras = tuple(extra_steps)

    # kfp ships no type information, hence the ignore.
    @dsl.pipeline(name="rfm-efficiency",  # type: ignore[untyped-decorator]
                  description="Data-efficiency study: full vs random vs curated subsets, seeds, scaling, report.")
    # Loop inputs stay a bare `list`: kfp types a loop item's fields from the list's element type, and a
    # dict[str, Any] element would make every field `Any`, which kfp refuses as a parameter type.
    def efficiency(sources: list = _DEFAULTS["sources"],  # type: ignore[type-arg]
                   long_side: int = _DEFAULTS["long_side"],
                   shard_size: int = _DEFAULTS["shard_size"], label_backend: str = "rule",
                   preset: str = _DEFAULTS["preset"],
                   train_overrides: list[str] = _DEFAULTS["train_overrides"],
                   warmup_steps: int = _DEFAULTS["warmup_steps"],
                   runs: list = _DEFAULTS["runs"],  # type: ignore[type-arg]
                   eval_suite: str = _DEFAULTS["eval_suite"], eval_split: str = _DEFAULTS["eval_split"],
                   eval_benchmark: str = _DEFAULTS["eval_benchmark"],
                   eval_extra_splits: list[str] = _DEFAULTS["eval_extra_splits"],
                   eval_options: dict = _DEFAULTS["eval_options"],  # type: ignore[type-arg]
                   n_boot: int = _DEFAULTS["n_boot"],
                   primary: str = _DEFAULTS["primary"], budget: float = _DEFAULTS["budget"],
                   rare: list[str] = _DEFAULTS["rare"],
                   study_name: str = _DEFAULTS["study_name"], seed: int = 0) -> dsl.Markdown:
        with dsl.ParallelFor(sources) as source:
            ingested = ingest_step(settings, source.source, source.adapter, long_side, shard_size)
        joined = standard_step(join_datasets(datasets=dsl.Collected(ingested.outputs["dataset"]))
                               .set_display_name("join"), settings, JOIN_RESOURCES)
        labelled = label_step(settings, joined.outputs["joined"], label_backend).outputs["labelled"]
        embeddings = warmup_embeddings(settings, labelled, preset, train_overrides, warmup_steps, seed)
        with dsl.ParallelFor(runs, parallelism=0) as run:
            subset = select_train_step(settings, labelled, embeddings, run, run.seed, run.stratify)
            trained = _train_run(settings, labelled, subset.outputs["curated"], run)
            evaluated = evaluate_step(settings, "evaluate", trained.outputs["model"], labelled, eval_suite,
                                      eval_split, eval_benchmark, n_boot, seed, name=run.label,
                                      task_options=eval_options, extra_splits=eval_extra_splits)
        reported = study_report(evaluations=dsl.Collected(evaluated.outputs["results"]),
                                training_logs=dsl.Collected(trained.outputs["training_log"]), dataset=labelled,
                                runs=runs, budget=budget, rare=rare, n_boot=n_boot, seed=seed, title=study_name,
                                primary=primary, split=eval_split, extra_splits=eval_extra_splits)
        standard_step(reported.set_display_name("study-report"), settings, REPORT_RESOURCES)
        add_extra_steps(extras, reported.outputs["study"])
        return reported.outputs["report"]

    return efficiency


pipelines.register("efficiency")(efficiency_pipeline)
