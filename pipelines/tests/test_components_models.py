"""pretrain / embed: python_func on tmp_path artifacts (real training steps on the bundled sample), and kfp.local."""

# No `from __future__ import annotations`: kfp reads the component annotations below as real types.
import json
from pathlib import Path

import numpy as np
import pytest
from kfp import dsl, local
from kfp.dsl import Artifact, Dataset, Markdown, Metrics, Model

from rfm_curation.embeddings import EmbeddingStore
from rfm_models.export import load_pretrained
from rfm_pipelines.components import curate, embed, get_component, ingest, pretrain

STEPS = 8  # > the test preset's 5 epochs of a 20-sample subset: shows a step budget replaces the epoch budget


def _pretrain(dataset: Path, out: Path, subset: Path | None = None, **params: object) -> tuple[Model, Metrics]:
    model, metrics = Model(uri=str(out / "model")), Metrics(uri=str(out / "metrics"))
    pretrain.python_func(dataset=Dataset(uri=str(dataset)), model=model, metrics=metrics,
                         training_log=Artifact(uri=str(out / "log")),
                         subset=Dataset(uri=str(subset)) if subset else None, **params)
    return model, metrics


@pytest.fixture(scope="module")
def trained(sample_dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Model, Metrics]:
    out = tmp_path_factory.mktemp("pretrain")
    model, metrics = _pretrain(sample_dataset, out, max_steps=STEPS, split="", seed=3)
    return out, model, metrics


def test_pretrain_exports_a_loadable_model_and_logs_its_compute(trained: tuple[Path, Model, Metrics]) -> None:
    out, model, metrics = trained
    assert load_pretrained(model.path).config.embed_dim == 16  # the test_clip_cxr export, loadable as-is
    assert metrics.metadata["steps"] == STEPS and metrics.metadata["samples"] == STEPS * 16  # batch 16
    assert metrics.metadata["flops"] > 0 and np.isfinite(metrics.metadata["final_loss"])
    assert model.metadata["stop_reason"] == "max_steps"
    records = [json.loads(line) for line in (out / "log" / "metrics.jsonl").read_text().splitlines()]
    assert records and records[-1]["step"] <= STEPS
    config = (out / "log" / "config.yaml").read_text()
    assert "seed: 3" in config and "max_epochs: null" in config


def test_pretrain_on_a_curated_subset_spends_the_same_compute(
    trained: tuple[Path, Model, Metrics], sample_dataset: Path, sample_embeddings: Path, tmp_path: Path
) -> None:
    curated = Dataset(uri=str(tmp_path / "curated"))
    curate.python_func(dataset=Dataset(uri=str(sample_dataset)), embeddings=Dataset(uri=str(sample_embeddings)),
                       curated=curated, report=Markdown(uri=str(tmp_path / "r.md")),
                       summary=Metrics(uri=str(tmp_path / "s")), budget=20.0, dedup="")
    _, full = trained[1], trained[2]
    _, metrics = _pretrain(sample_dataset, tmp_path / "run", subset=tmp_path / "curated", max_steps=STEPS,
                           split="", seed=3)
    # Equal compute: the same steps x batch as the full-data run (the FLOP counter is not compared: it is
    # measured on the first batch, whose report lengths differ between the two branches) ...
    for name in ("steps", "samples"):
        assert metrics.metadata[name] == full.metadata[name]
    # ... but over 20 kept samples (one batch of 16 per epoch) instead of 63: many more passes over the data.
    assert metrics.metadata["epochs"] >= STEPS - 1 > full.metadata["epochs"]


def test_pretrain_names_a_bad_preset(sample_dataset: Path, tmp_path: Path) -> None:
    from hydra.errors import HydraException

    with pytest.raises(HydraException, match="no_such_preset"):
        _pretrain(sample_dataset, tmp_path, preset="no_such_preset", max_steps=1)


def test_embed_writes_an_aligned_store(trained: tuple[Path, Model, Metrics], sample_dataset: Path,
                                       tmp_path: Path) -> None:
    embeddings, summary = Dataset(uri=str(tmp_path / "emb")), Metrics(uri=str(tmp_path / "summary"))
    embed.python_func(model=trained[1], dataset=Dataset(uri=str(sample_dataset)), embeddings=embeddings,
                      summary=summary, batch_size=16)
    assert summary.metadata["count"] == 63  # every accepted sample, all splits
    store = EmbeddingStore(embeddings.path)
    ids, vectors = list(store.ids()), store.mmap("joint")
    assert len(ids) == len(set(ids)) == 63 and vectors.shape == (63, 32)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-4)


def test_model_components_are_registered_on_the_models_image() -> None:
    for name in ("pretrain", "embed"):
        container = get_component(name).component_spec.implementation.container
        assert container.image == "ghcr.io/rfm-project/rfm-models:0.1.0"
        assert "pip install" not in " ".join(container.command)
    inputs = get_component("pretrain").component_spec.inputs
    assert inputs["subset"].optional and inputs["overrides"].optional


@pytest.mark.slow  # three subprocesses that each import torch: ~25 s on 2 idle cores
@pytest.mark.filterwarnings("ignore:.*no effect in the current local runner:UserWarning")
@pytest.mark.filterwarnings("ignore:You may be attemping:RuntimeWarning")
def test_ingest_pretrain_embed_runs_under_kfp_local(tmp_path: Path) -> None:
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(tmp_path), raise_on_error=True)

    @dsl.pipeline(name="pretrain-embed")
    def pretrain_embed(steps: int = 3) -> Dataset:
        ingested = ingest(source="sample", shard_size=32)
        trained = pretrain(dataset=ingested.outputs["dataset"], max_steps=steps, split="",
                           overrides=["train.optimizer.lr=1e-3"])
        return embed(model=trained.outputs["model"], dataset=ingested.outputs["dataset"]).outputs["embeddings"]  # type: ignore[no-any-return]

    store = pretrain_embed().output
    assert EmbeddingStore(store.path).mmap("image").shape == (63, 16)
    config = next(tmp_path.glob("pretrain-embed-*/pretrain/training_log/config.yaml")).read_text()
    assert "lr: 0.001" in config and "max_steps: 3" in config


def test_pretrain_leaves_no_scratch_checkpoints(sample_dataset: Path, tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """Without run_dir the checkpoints go to a scratch folder that is removed: a study's 30 runs on one machine
    once filled its disk with them."""
    import tempfile

    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    model, _ = _pretrain(sample_dataset, tmp_path / "run", max_steps=2)
    assert load_pretrained(model.path) is not None
    assert not list(scratch.glob("rfm-pretrain-*"))
