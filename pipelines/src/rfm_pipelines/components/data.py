"""rfm-data components: ``ingest`` and ``label``. Each is a thin wrapper over one rfm_data library call.

Imports sit inside the functions because KFP ships only the function body to the container (the package
image provides ``rfm_data``); nothing here may depend on rfm_pipelines at run time.
"""

# No `from __future__ import annotations`: kfp reads the annotations as real types (Input[Dataset], ...).
from kfp import dsl
from kfp.dsl import Dataset, Input, Metrics, Output

from rfm_pipelines.images import image


@dsl.component(base_image=image("rfm-data"), install_kfp_package=False)  # type: ignore[untyped-decorator]
def ingest(
    source: str, dataset: Output[Dataset], summary: Output[Metrics], adapter: str = "", long_side: int = 256,
    shard_size: int = 1024, workers: int = 1,
) -> None:
    """Ingest ``source`` (dataset root URL, table URL or ``"sample"``) into shards + manifest; see rfm_data.ingest.

    The pseudonymisation key comes from ``RFM_DEID_KEY`` (a Kubernetes secret on a cluster). ``workers`` is
    explicit because ``os.cpu_count()`` in a pod reports the node's cores, not the pod's CPU request.
    """
    from rfm_data.config import IngestConfig, PreprocessConfig
    from rfm_data.ingest import ingest as ingest_dataset

    cfg = IngestConfig(shard_size=shard_size, workers=workers, preprocess=PreprocessConfig(long_side=long_side))
    result = ingest_dataset(source, dataset.path, cfg, dataset=adapter or None, progress=False)
    for name in ("total", "accepted", "quarantined"):
        summary.log_metric(name, getattr(result.summary, name))
    summary.log_metric("seconds", round(result.seconds, 3))
    dataset.metadata.update(adapter=result.dataset, shards=len(result.shards), accepted=result.summary.accepted)


@dsl.component(base_image=image("rfm-data"), install_kfp_package=False)  # type: ignore[untyped-decorator]
def label(dataset: Input[Dataset], labelled: Output[Dataset], prevalence: Output[Metrics],
          backend: str = "rule") -> None:
    """Add ``report_labels`` from the report text to a copy of ``dataset``; see rfm_data.labels.apply.

    Input artifacts are immutable (an upstream cache hit would otherwise see our changes), so the dataset is
    hard-linked into the output first: free on one filesystem and safe, because every rfm write replaces a
    file atomically instead of writing into the shared inode.
    """
    import os
    import shutil

    from rfm_data.labels.apply import label_manifest

    def link_or_copy(src: str, dst: str) -> None:
        try:
            os.link(src, dst)
        except OSError:  # another filesystem, or links unsupported: fall back to a real copy
            shutil.copy2(src, dst)

    shutil.copytree(dataset.path, labelled.path, copy_function=link_or_copy, dirs_exist_ok=True)
    result = label_manifest(labelled.path, backend=backend, plot=False)
    for status, count in result.by_status.items():
        prevalence.log_metric(f"status_{status}", count)
    for observation, counts in result.prevalence.items():
        prevalence.log_metric(f"positive_{observation}", counts["positive"])
    labelled.metadata.update(backend=result.backend, fingerprint=result.fingerprint)
