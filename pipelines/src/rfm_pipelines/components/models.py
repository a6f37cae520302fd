"""rfm-models components: ``pretrain`` (the ``rfm-train`` entrypoint) and ``embed`` (rfm_models.embed.embed).

Imports sit inside the functions because KFP ships only the function body to the container (the rfm-models image
provides ``rfm_models``); nothing here may depend on rfm_pipelines at run time.
"""

# No `from __future__ import annotations`: kfp reads the annotations as real types (Input[Dataset], ...).
from typing import List, Optional  # noqa: UP035 -- kfp reads these annotations and needs typing's generics

from kfp import dsl
from kfp.dsl import Artifact, Dataset, Input, Metrics, Model, Output

from rfm_pipelines.images import image


@dsl.component(base_image=image("rfm-models"), install_kfp_package=False)  # type: ignore[untyped-decorator]
def pretrain(
    dataset: Input[Dataset], model: Output[Model], metrics: Output[Metrics], training_log: Output[Artifact],
    subset: Input[Dataset] = None,  # kfp's spelling of an optional input artifact
    preset: str = "test_clip_cxr", overrides: Optional[List[str]] = None,  # noqa: UP006, UP045
    max_steps: int = 0, max_flops: float = 0.0, seed: int = 0, split: str = "train", run_dir: str = "",
) -> None:
    """Train ``preset`` (an rfm-train experiment) on ``dataset``, or only on the samples ``subset`` kept.

    Args:
        dataset: shard dataset (the ingest / label output).
        subset: a curation output folder (selection.parquet); None trains on every sample of ``split``.
        preset: ``+experiment=`` name, e.g. ``test_clip_cxr`` or ``clip_cxr_chexficient``.
        overrides: extra Hydra overrides (``["train.optimizer.lr=1e-4", ...]``); applied last.
        max_steps: optimizer-step budget (0 = the preset's). Equal-compute comparisons give every branch the
            same steps (x the same batch = the same FLOPs); a step or FLOP budget therefore replaces the preset's
            epoch budget, which would otherwise stop a small subset after fewer steps.
        max_flops: training-FLOP budget (0 = none); give ``train.schedule.total_steps`` with it.
        seed: model initialisation and data order.
        split: dataset split to train on ("" = every sample).
        run_dir: where checkpoints go (a PVC path or gs:// URL lets a restarted step resume); "" = a temporary
            directory of this step.
    Outputs: ``model`` (the exported save_pretrained directory), ``metrics`` (final loss, steps, samples,
    FLOPs, seconds), ``training_log`` (metrics.jsonl and the resolved config.yaml).
    """
    import os
    import tempfile

    from rfm_data.io import filesystem, join
    from rfm_models.train.cli import run

    budget = [f"train.budget.max_steps={max_steps}"] if max_steps else []
    budget += [f"train.budget.max_flops={max_flops}"] if max_flops else []
    # Without run_dir the checkpoints live in a scratch folder removed when the step ends (hundreds of MB per
    # run: a study of 30 runs on one machine otherwise fills its disk).
    scratch = tempfile.TemporaryDirectory(prefix="rfm-pretrain-")
    out = run_dir or scratch.name
    try:
        args = [f"+experiment={preset}", f"data.url={dataset.path}", f"data.split={split or 'null'}",
                f"train.output_dir={out}", f"train.seed={seed}", "train.progress=false"]
        args += [f"data.subset={subset.path}"] if subset is not None else []
        args += budget + (["train.budget.max_epochs=null"] if budget else []) + list(overrides or [])
        result = run(args)
        fs, root = filesystem(out)
        fs.get(join(root, "model"), model.path, recursive=True)
        os.makedirs(training_log.path, exist_ok=True)
        for name in ("metrics.jsonl", "config.yaml"):
            fs.get(join(root, name), os.path.join(training_log.path, name))
    finally:
        scratch.cleanup()
    counters = result.counters
    for name, value in {"final_loss": result.last_loss, "steps": result.step, "epochs": result.epoch,
                        "samples": counters.samples, "kept_samples": counters.kept_samples,
                        "flops": counters.flops, "seconds": counters.wall_s}.items():
        metrics.log_metric(name, value)
    model.metadata.update(preset=preset, stop_reason=result.stop_reason, steps=result.step,
                          flops=counters.flops)


@dsl.component(base_image=image("rfm-models"), install_kfp_package=False)  # type: ignore[untyped-decorator]
def embed(model: Input[Model], dataset: Input[Dataset], embeddings: Output[Dataset], summary: Output[Metrics],
          split: str = "", batch_size: int = 32, device: str = "auto") -> None:
    """Image, text and joint embeddings of ``dataset`` with ``model`` into an rfm-curation embedding store.

    ``split`` "" embeds every sample (curation needs them all); ``device`` "auto" takes the GPU when there is one.
    """
    import torch

    from rfm_models.embed import embed as embed_dataset

    device = ("cuda" if torch.cuda.is_available() else "cpu") if device == "auto" else device
    result = embed_dataset(model.path, dataset.path, embeddings.path, split=split or None, batch_size=batch_size,
                           device=device)
    summary.log_metric("count", result.count)
    embeddings.metadata.update(count=result.count, **{f"dim_{kind}": dim for kind, dim in result.dims.items()})
