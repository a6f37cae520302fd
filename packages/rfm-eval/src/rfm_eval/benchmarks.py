"""Benchmark registry: dataset adapter + where its data lives + split + protocol.

A benchmark is ingested once from a data root into a cache folder with :func:`rfm_data.ingest.ingest` (the
adapter named by ``adapter``), then evaluated like any shard dataset. Add one with::

    register_benchmark(Benchmark(name="chexpert", adapter="chexpert", subdir="CheXpert-v1.0-small",
                                 protocol=Protocol(("Atelectasis", "Cardiomegaly", ...))))
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from rfm_data import io
from rfm_data.config import DeidConfig, IngestConfig
from rfm_data.errors import ConfigError
from rfm_data.ingest import ingest
from rfm_data.registry import Registry
from rfm_eval.protocol import LabelMode, Protocol

__all__ = ["Benchmark", "benchmarks", "prepare_benchmark", "register_benchmark"]

# Ingestion pseudonymises ids with an HMAC key; evaluation only needs them consistent within one cache.
_EVAL_DEID_KEY = "rfm-eval-benchmark-cache"


@dataclass(frozen=True)
class Benchmark:
    """One evaluation benchmark.

    Attributes:
        name: registry name.
        adapter: rfm-data adapter that reads the source (``rfm_data.adapters``).
        subdir: folder of the source under the data root; None for sources that need no root (``sample``).
        protocol: observations and label mode.
        split: evaluation split.
        train_split: split the adapted tasks train on.
        skip: tasks that do not apply (e.g. retrieval without reports), with the reason.
        adapter_options: keyword options for the adapter.
        description: one line for ``rfm-eval list``.
    """

    name: str
    adapter: str
    protocol: Protocol
    subdir: str | None = None
    split: str = "test"
    train_split: str = "train"
    skip: Mapping[str, str] = field(default_factory=dict)
    adapter_options: Mapping[str, Any] = field(default_factory=dict)
    description: str = ""

    def source(self, data_root: str | None) -> str:
        """The source URL to ingest from."""
        if self.subdir is None:
            return self.adapter
        if not data_root:
            raise ConfigError(f"benchmark {self.name!r} reads {self.subdir}/ under a data root: pass --data-root DIR")
        src = io.join(data_root, self.subdir)
        if not io.exists(src):
            raise ConfigError(f"benchmark {self.name!r}: {src} does not exist; --data-root must hold {self.subdir}/")
        return src


benchmarks: Registry[Benchmark] = Registry("benchmark")


def register_benchmark(benchmark: Benchmark) -> Benchmark:
    """Register ``benchmark`` under its name (duplicate names raise)."""
    benchmarks.register(benchmark.name)(lambda: benchmark)
    return benchmark


def prepare_benchmark(name: str, data_root: str | None, cache_dir: str, progress: bool = True) -> str:
    """Ingest benchmark ``name`` into ``cache_dir/datasets/<name>`` once; return the dataset URL."""
    bench = benchmarks.create(name)
    dest = io.join(cache_dir, "datasets", name)
    if io.exists(io.join(dest, "dataset.json")):
        return dest
    ingest(bench.source(data_root), dest, IngestConfig(deid=DeidConfig(key=_EVAL_DEID_KEY)), dataset=bench.adapter,
           adapter_options=dict(bench.adapter_options), progress=progress)
    return dest


def _pneumonia_implies(names: Sequence[str]) -> dict[str, list[str]]:
    # Training prompts name the parent finding first ("chest x-ray with pneumonia, viral"): zero-shot matches it.
    return {n: ["Pneumonia"] for n in names} | {"COVID-19": ["Pneumonia", "Viral"]}


register_benchmark(Benchmark(
    name="covid_chestxray_ieee8023", adapter="covid_chestxray_ieee8023", subdir="covid_chestxray_ieee8023",
    protocol=Protocol(("COVID-19", "Viral", "Bacterial", "ARDS"), LabelMode.MULTI_LABEL,
                      extra={"implies": _pneumonia_implies(["Viral", "Bacterial"])}),
    description="COVID-19 image collection (Cohen et al.): 550 CXRs with clinical notes, multi-label findings"))
register_benchmark(Benchmark(
    name="pediatric_pneumonia_kermany", adapter="pediatric_pneumonia_kermany", subdir="pediatric_pneumonia_kermany",
    protocol=Protocol(("No Finding", "Bacterial", "Viral"), LabelMode.MULTI_CLASS,
                      extra={"implies": _pneumonia_implies(["Viral", "Bacterial"])}),
    skip={"retrieval": "label-only dataset (no reports)", "segmentation": "no masks"},
    description="Pediatric CXRs (Kermany et al.): normal / bacterial / viral pneumonia, multi-class"))
register_benchmark(Benchmark(
    name="sample", adapter="sample",
    protocol=Protocol(("No Finding", "Pneumonia", "Viral", "Bacterial"), LabelMode.MULTI_LABEL,
                      extra={"implies": _pneumonia_implies(["Viral", "Bacterial"])}),
    description="The bundled sample (63 real CXRs from both sources): smoke tests and demos"))

# Public layouts for users who have the data (adapters in rfm_data.adapters.nih / rsna / siim).
_NO_REPORTS = {"retrieval": "label-only dataset (no reports)", "segmentation": "no lung masks"}
register_benchmark(Benchmark(
    name="nih_chestxray14", adapter="nih_chestxray14", subdir="nih_chestxray14",
    protocol=Protocol(("Atelectasis", "Cardiomegaly", "Pleural Effusion", "Lung Opacity", "Lung Lesion", "Pneumonia",
                       "Pneumothorax", "Consolidation", "Edema", "Emphysema", "Fibrosis", "Pleural Other", "Hernia"),
                      LabelMode.MULTI_LABEL),
    skip=_NO_REPORTS, description="NIH ChestX-ray14: 112,120 CXRs, 14 findings, official patient-wise test list"))
register_benchmark(Benchmark(
    name="rsna_pneumonia", adapter="rsna_pneumonia", subdir="rsna_pneumonia", adapter_options={"holdout": 0.2},
    protocol=Protocol(("Pneumonia", "Lung Opacity"), LabelMode.MULTI_LABEL), skip=_NO_REPORTS,
    description="RSNA Pneumonia Detection: 26,684 DICOMs; test = a stable 20 % patient hold-out of the train set"))
register_benchmark(Benchmark(
    name="siim_acr_pneumothorax", adapter="siim_acr_pneumothorax", subdir="siim_acr_pneumothorax",
    adapter_options={"holdout": 0.2}, protocol=Protocol(("Pneumothorax",), LabelMode.MULTI_LABEL),
    skip=_NO_REPORTS,
    description="SIIM-ACR Pneumothorax: 12,047 DICOMs; test = a stable 20 % study hold-out (masks: decode_siim_rle)"))
