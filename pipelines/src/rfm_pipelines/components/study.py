"""Study components: ``join_datasets`` (pool ingested sources) and ``study_report`` (the efficiency report).

Both run on the rfm-pipelines image: their logic is :mod:`rfm_pipelines.study`, which uses rfm-data and rfm-eval
(the rfm-pipelines image installs every rfm package).
"""

# No `from __future__ import annotations`: kfp reads the annotations as real types (Input[Dataset], ...).
from typing import Any, List  # noqa: UP035 -- kfp reads these annotations and needs typing's generics

from kfp import dsl
from kfp.dsl import Artifact, Dataset, Input, Markdown, Metrics, Output

from rfm_pipelines.images import image


@dsl.component(base_image=image("rfm-pipelines"), install_kfp_package=False)  # type: ignore[untyped-decorator]
def join_datasets(datasets: Input[List[Dataset]], joined: Output[Dataset],  # noqa: UP006
                  summary: Output[Metrics]) -> None:
    """Pool ingested datasets (``dsl.Collected`` ingest outputs) into one; each sample keeps its ``dataset``."""
    from rfm_pipelines.study.join import join_datasets as join

    result = join([d.path for d in datasets], joined.path)
    summary.log_metric("samples", result.samples)
    for source, count in result.by_source.items():
        summary.log_metric(f"samples_{source}", count)
    joined.metadata.update(sources=list(result.by_source), accepted=result.samples)


@dsl.component(base_image=image("rfm-pipelines"), install_kfp_package=False)  # type: ignore[untyped-decorator]
def study_report(
    evaluations: Input[List[Artifact]], training_logs: Input[List[Artifact]],  # noqa: UP006
    dataset: Input[Dataset], study: Output[Artifact], report: Output[Markdown], runs: list[Any], budget: float,
    rare: list[Any], n_boot: int = 200, seed: int = 0, title: str = "", primary: str = "zeroshot.auroc_macro",
    split: str = "test", extra_splits: list = [],  # type: ignore[type-arg]  # noqa: B006 -- a kfp literal
) -> None:
    """Aggregate the study's runs (evaluations and training logs in the order of ``runs``) into the report:
    study.md / study.json, plots, scaling fit (see rfm_pipelines.study.report.write_study_report). ``split`` is
    the evaluations' own split, ``extra_splits`` those under ``splits/<name>`` (evaluate's ``extra_splits``);
    the pooled ``dataset``'s source column splits every table per source dataset."""
    import shutil

    import pyarrow.compute as pc

    from rfm_data.manifest import read_manifest
    from rfm_pipelines.study.plan import RunSpec
    from rfm_pipelines.study.report import load_run, read_domains, write_study_report

    if not len(evaluations) == len(training_logs) == len(runs):
        raise ValueError(f"{len(evaluations)} evaluations, {len(training_logs)} training logs and {len(runs)} "
                         "runs: each run of the plan needs one of each")
    table = read_manifest(f"{dataset.path}/manifest.parquet").select(["status", "split"])
    n_train = int(pc.sum(pc.and_(pc.equal(table["status"], "accepted"), pc.equal(table["split"], "train"))).as_py())
    records = [load_run(RunSpec.from_dict(r), e.path, t.path)
               for r, e, t in zip(runs, evaluations, training_logs, strict=True)]
    result = write_study_report(records, study.path, n_train, budget, rare, primary, n_boot, seed, title,
                                splits=[split, *extra_splits], domains=read_domains(dataset.path))
    shutil.copyfile(result.files["markdown"], report.path)
    with open(report.path, "a") as f:
        f.write(f"\nStudy folder: {study.path} (study.json, plots, scaling/)\n")
