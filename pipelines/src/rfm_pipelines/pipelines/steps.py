"""Pipeline steps: one rfm component with its cluster settings, shared by every pipeline that uses it.

Resource figures are per step and sized for ~1M CXRs at 256 px (ingest decodes with one worker per CPU).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from kfp.dsl import PipelineTask

from rfm_pipelines.cluster import ClusterSettings, Resources, standard_step, with_deid_key, with_gpus
from rfm_pipelines.components import curate, embed, ingest, label, pretrain
from rfm_pipelines.components.evaluation import compare, evaluate
from rfm_pipelines.components.reportgen import reportgen_evaluate, reportgen_train

INGEST_RESOURCES = Resources(cpu="4", memory="16Gi")
INGEST_WORKERS = 4  # = INGEST_RESOURCES.cpu: os.cpu_count() in a pod would report the whole node
LABEL_RESOURCES = Resources(cpu="1", memory="4Gi")
CURATE_RESOURCES = Resources(cpu="4", memory="32Gi")
TRAIN_RESOURCES = Resources(cpu="8", memory="64Gi")  # data loading workers beside each GPU
EMBED_RESOURCES = Resources(cpu="4", memory="16Gi")
EVAL_RESOURCES = Resources(cpu="4", memory="16Gi")
COMPARE_RESOURCES = Resources(cpu="1", memory="2Gi")
REPORTGEN_RESOURCES = Resources(cpu="8", memory="32Gi")

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
                dedup: Any, split: Any = "", name: str = "curate", stratify: Any = "") -> PipelineTask:
    task = curate(dataset=dataset, embeddings=embeddings, strategy=strategy, budget=budget, seed=seed,
                  dedup=dedup, split=split, stratify=stratify).set_display_name(name)
    return standard_step(task, settings, CURATE_RESOURCES)


def pretrain_step(settings: ClusterSettings, name: str, dataset: Any, preset: Any, overrides: Any, max_steps: Any,
                  seed: Any, subset: Any = None) -> PipelineTask:
    """One training run on a GPU node; ``subset`` (a curation output) restricts it to the kept samples."""
    inputs = {"subset": subset} if subset is not None else {}
    task = pretrain(dataset=dataset, preset=preset, overrides=overrides, max_steps=max_steps, seed=seed,
                    **inputs).set_display_name(name)
    return with_gpus(standard_step(task, settings, TRAIN_RESOURCES), settings, settings.train_gpus)


def embed_step(settings: ClusterSettings, model: Any, dataset: Any) -> PipelineTask:
    task = embed(model=model, dataset=dataset).set_display_name("embed")
    return with_gpus(standard_step(task, settings, EMBED_RESOURCES), settings)


def warmup_embeddings(settings: ClusterSettings, dataset: Any, preset: Any, overrides: Any, warmup_steps: Any,
                      seed: Any) -> Any:
    """A short warm-up pretraining and the embeddings of ``dataset`` it gives (what curation clusters in)."""
    warmup = pretrain_step(settings, "warm-up", dataset, preset, overrides, warmup_steps, seed)
    return embed_step(settings, warmup.outputs["model"], dataset).outputs["embeddings"]


def select_train_step(settings: ClusterSettings, dataset: Any, embeddings: Any, item: Any, seed: Any,
                      stratify: Any = "") -> PipelineTask:
    """Curate the *train* split by a loop item's ``strategy`` / ``budget`` / ``dedup`` (evaluation samples never
    enter a training subset), within each value of the manifest column ``stratify`` when given."""
    return curate_step(settings, dataset, embeddings, item.strategy, item.budget, seed, item.dedup, split="train",
                       name="select", stratify=stratify)


def evaluate_step(settings: ClusterSettings, display: str, model: Any, dataset: Any, suite: Any, split: Any,
                  benchmark: Any, n_boot: Any, seed: Any, name: Any = "", task_options: Any = None,
                  extra_splits: Any = None) -> PipelineTask:
    """``benchmark`` names the protocol (observations, label mode) of rfm-eval's registry; "" = the model's.
    ``task_options`` (task → option overrides) and ``extra_splits`` (also scored, under ``splits/<name>``) are
    left to the component's defaults when None."""
    extra = {k: v for k, v in {"task_options": task_options, "extra_splits": extra_splits}.items() if v is not None}
    task = evaluate(model=model, dataset=dataset, name=name, suite=suite, split=split, benchmark=benchmark,
                    n_boot=n_boot, seed=seed, **extra).set_display_name(display)
    return standard_step(task, settings, EVAL_RESOURCES)


def compare_step(settings: ClusterSettings, runs: Any, reference: Any, n_boot: Any, seed: Any) -> PipelineTask:
    """Compare evaluation outputs (``dsl.Collected``) with paired tests against the ``reference`` run name."""
    task = compare(runs=runs, reference=reference, n_boot=n_boot, seed=seed).set_display_name("compare")
    return standard_step(task, settings, COMPARE_RESOURCES)


def add_extra_steps(steps: tuple[ExtraStep, ...], dataset: Any) -> None:
    """Attach each user step after ``dataset``'s producer (the data flow orders them)."""
    for step in steps:
        step(dataset)


def reportgen_train_step(settings: ClusterSettings, dataset: Any, encoder: Any, corpus_url: Any, target: Any,
                         decoder_steps: Any, max_steps: Any, batch_size: Any, seed: Any) -> PipelineTask:
    """Report-generator training on a GPU node; ``encoder`` (a model directory) gives the frozen image encoder."""
    task = reportgen_train(dataset=dataset, encoder=encoder, corpus_url=corpus_url, target=target,
                           pretrain_steps=decoder_steps, max_steps=max_steps, batch_size=batch_size,
                           seed=seed).set_display_name("reportgen-train")
    return with_gpus(standard_step(task, settings, REPORTGEN_RESOURCES), settings)


def reportgen_evaluate_step(settings: ClusterSettings, generator: Any, dataset: Any, baseline: Any, split: Any,
                            n_boot: Any, seed: Any) -> PipelineTask:
    task = reportgen_evaluate(generator=generator, dataset=dataset, baseline=baseline, split=split, n_boot=n_boot,
                              seed=seed).set_display_name("reportgen-evaluate")
    return with_gpus(standard_step(task, settings, REPORTGEN_RESOURCES), settings)
