"""rfm-curation component: ``curate`` (dedup → quality filters → budgeted selection), over rfm_curation.curate."""

# No `from __future__ import annotations`: kfp reads the annotations as real types (Input[Dataset], ...).
from kfp import dsl
from kfp.dsl import Dataset, Input, Markdown, Metrics, Output

from rfm_pipelines.images import image


@dsl.component(base_image=image("rfm-curation"), install_kfp_package=False)  # type: ignore[untyped-decorator]
def curate(
    dataset: Input[Dataset], embeddings: Input[Dataset], curated: Output[Dataset], report: Output[Markdown],
    summary: Output[Metrics], strategy: str = "hkmeans", budget: float = 0.227, seed: int = 0,
    dedup: str = "exact,semantic", split: str = "", stratify: str = "",
) -> None:
    """Select a budgeted subset of ``dataset`` using ``embeddings`` (an rfm_curation embedding store).

    ``budget`` <= 1 is a fraction of the accepted samples, above 1 a count (KFP has one number type here).
    ``dedup`` is a comma list of deduplication methods ("" for none). ``split`` curates only that split (e.g.
    "train", so that evaluation samples never enter a training subset; "" = every sample). ``stratify`` keeps the
    mix of a manifest column (e.g. "dataset" of a pooled dataset; "" = none). Outputs: the curation folder
    (selection.parquet, manifest.parquet with curation_kept / curation_reason, curation.json), its report.
    """
    import shutil

    from rfm_curation import CurationConfig
    from rfm_curation import curate as curate_dataset

    cfg = CurationConfig(strategy=strategy, budget=budget if budget <= 1 else int(budget), seed=seed,
                         dedup=tuple(name for name in dedup.split(",") if name), split=split or None,
                         stratify=stratify or None)
    result = curate_dataset(dataset.path, embeddings.path, curated.path, cfg)
    shutil.copyfile(f"{curated.path}/report.md", report.path)  # the KFP UI renders a Markdown artifact inline
    for name in ("total", "accepted", "kept", "budget"):
        summary.log_metric(name, getattr(result, name))
    for reason, count in result.by_reason.items():
        summary.log_metric(f"dropped_{reason or 'none'}", count)
    curated.metadata.update(strategy=strategy, kept=result.kept)
