"""rfm-eval components: ``evaluate`` (one model, one suite) and ``compare`` (several evaluations, paired tests).

Imports sit inside the functions because KFP ships only the function body to the container (the rfm-eval
image provides ``rfm_eval``); nothing here may depend on rfm_pipelines at run time.
"""

# No `from __future__ import annotations`: kfp reads the annotations as real types (Input[Model], ...).
from typing import List  # noqa: UP035 -- kfp reads these annotations and needs typing's generics

from kfp import dsl
from kfp.dsl import Artifact, Dataset, Input, Markdown, Metrics, Model, Output

from rfm_pipelines.images import image


@dsl.component(base_image=image("rfm-eval"), install_kfp_package=False)  # type: ignore[untyped-decorator]
def evaluate(
    model: Input[Model], dataset: Input[Dataset], results: Output[Artifact], summary: Output[Metrics],
    name: str = "", suite: str = "quick", split: str = "test", benchmark: str = "", n_boot: int = 1000,
    seed: int = 0, device: str = "auto", task_options: dict = {},  # type: ignore[type-arg]  # noqa: B006
    extra_splits: list = [],  # type: ignore[type-arg]  # noqa: B006 -- kfp defaults are literals, never mutated
) -> None:
    """Run the rfm-eval ``suite`` on ``model`` over ``dataset`` (see rfm_eval.evaluate).

    ``name`` labels this run in comparisons (default: the model's name); ``benchmark`` applies a registered
    benchmark's protocol ("" = the model's observations); ``task_options`` overrides task options
    (``{"segmentation": {"data_root": ...}}``). Outputs: the results folder (results.json / .md, one folder per
    task with its JSON and PNG) and every headline metric as a KFP metric. Each of ``extra_splits`` is
    evaluated the same way into ``<results>/splits/<split>/`` (metrics logged as ``<split>/<task>.<metric>``);
    every split shares one feature cache, so the train split's features are extracted once.
    """
    import math
    import os

    import torch

    from rfm_data.io import write_text
    from rfm_eval.evaluate import EvalConfig
    from rfm_eval.evaluate import evaluate as evaluate_model

    device = ("cuda" if torch.cuda.is_available() else "cpu") if device == "auto" else device
    cache = os.environ.get("RFM_CACHE") or f"{results.path}/features"
    label = name
    for where in [split, *(s for s in dict.fromkeys(extra_splits) if s != split)]:
        cfg = EvalConfig(suite=suite, split=where, benchmark=benchmark or None, n_boot=n_boot, seed=seed,
                         device=device, progress=False, task_options=dict(task_options), cache_dir=cache)
        out = results.path if where == split else f"{results.path}/splits/{where}"
        result = evaluate_model(model.path, dataset.path, out, cfg)
        label = label or str(result.model["name"])
        write_text(f"{out}/run_name.txt", label)  # compare reads it: Collected artifacts lose metadata
        prefix = "" if where == split else f"{where}/"
        for task, outcome in result.tasks.items():
            for metric, estimate in outcome.headline.items():
                if math.isfinite(estimate.value):  # undefined metrics (one class present) stay in results.json
                    summary.log_metric(f"{prefix}{task}.{metric}", estimate.value)
        if where == split:
            results.metadata.update(name=label, split=result.split)


@dsl.component(base_image=image("rfm-eval"), install_kfp_package=False)  # type: ignore[untyped-decorator]
def compare(
    runs: Input[List[Artifact]], comparison: Output[Artifact], report: Output[Markdown],  # noqa: UP006
    reference: str = "", n_boot: int = 1000, seed: int = 0,
) -> None:
    """Compare evaluation folders (``evaluate`` outputs): headline table with CIs, paired bootstrap against
    ``reference`` (a run name; "" = the first run), plots. ``report`` is the Markdown the KFP UI shows."""
    import os
    import shutil

    from rfm_eval.compare import compare as compare_runs

    paths = [run.path for run in runs]
    names = [open(os.path.join(p, "run_name.txt")).read().strip() for p in paths]  # noqa: SIM115
    if reference:
        if reference not in names:
            raise ValueError(f"reference {reference!r} is not one of the runs {names}")
        first = names.index(reference)
        paths.insert(0, paths.pop(first))
        names.insert(0, names.pop(first))
    compare_runs(paths, comparison.path, names=names, n_boot=n_boot, seed=seed)
    shutil.copyfile(os.path.join(comparison.path, "compare.md"), report.path)
    with open(report.path, "a") as f:
        f.write(f"\nComparison: {comparison.path} (compare.json, compare.png)\n")
        f.write("".join(f"Evaluation of {n}: {p} (results.md, one folder per task with its plot)\n"
                        for n, p in zip(names, paths, strict=True)))
