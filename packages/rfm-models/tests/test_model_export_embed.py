"""The vision-language model on real sample data: keep mask, export/load round trip, embed into the store."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from rfm_data.errors import ConfigError
from rfm_data.loader import ShardDataset
from rfm_data.transforms import cxr_eval_transform
from rfm_models.embed import main as embed_main
from rfm_models.export import load_pretrained, save_pretrained
from rfm_models.model import ModelConfig, VisionLanguageModel, build_model

SIZE = 32


def _model(objective: str = "clip", **options: object) -> VisionLanguageModel:
    config = ModelConfig(image_encoder="test_vit", text_encoder="test_bert", embed_dim=16, objective=objective,
                         image_size=SIZE, objective_options=dict(options))
    return build_model(config, seed=0)


def _batch(model: VisionLanguageModel, dataset: str, n: int = 6) -> dict[str, object]:
    ds = ShardDataset(dataset, transform=cxr_eval_transform(SIZE))
    return model.collator()([ds[i] for i in range(n)])


def test_forward_on_real_batch_and_keep_mask(sample_dataset: str) -> None:
    model = _model("must", stage=2).eval()  # no dropout: the two forward passes must agree
    batch = _batch(model, sample_dataset)
    out = model(batch)
    assert out["per_sample_loss"].shape == (6,) and out["image_emb"].shape == (6, 16)
    torch.testing.assert_close(out["image_emb"].norm(dim=1), torch.ones(6))
    keep = torch.tensor([True, False, True, True, False, True])
    kept = model(batch, keep=keep)
    assert (kept["per_sample_loss"][~keep] == 0).all()
    sub = {k: (v[keep] if isinstance(v, torch.Tensor) else [x for x, m in zip(v, keep, strict=True) if m])
           for k, v in batch.items()}
    torch.testing.assert_close(kept["loss"], model(sub)["loss"])  # negatives are only the kept samples
    kept["loss"].backward()
    assert model.logit_scale.grad is not None and model.image_encoder.model.patch_embed.proj.weight.grad is not None


def test_export_round_trip_is_bit_exact(sample_dataset: str, tmp_path: Path) -> None:
    model = _model("siglip").eval()
    batch = _batch(model, sample_dataset, 4)
    save_pretrained(model, str(tmp_path / "m"))
    assert {p.name for p in (tmp_path / "m").iterdir()} == {"config.json", "model.safetensors", "tokenizer.json",
                                                          "tokenizer_config.json"}
    loaded = load_pretrained(str(tmp_path / "m"))
    with torch.no_grad():
        a, b = model(batch), loaded(batch)
    for key in ("loss", "image_emb", "text_emb"):
        assert torch.equal(a[key], b[key]), key
    assert loaded.config == model.config


def test_tampered_weights_name_the_tensor(tmp_path: Path) -> None:
    save_pretrained(_model(), str(tmp_path))
    state = load_file(str(tmp_path / "model.safetensors"))
    state["text_projection.weight"] = torch.zeros(16, 7)
    save_file(state, str(tmp_path / "model.safetensors"))
    with pytest.raises(ConfigError, match=r"'text_projection.weight' has shape \(16, 7\).*\(16, 32\)"):
        load_pretrained(str(tmp_path))


def test_unknown_config_keys_and_names_are_refused(tmp_path: Path) -> None:
    save_pretrained(_model(), str(tmp_path))
    config = json.loads((tmp_path / "config.json").read_text())
    config["model"]["objective"] = "contrastive_magic"
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(KeyError, match="known: clip, must, siglip, unicl"):
        load_pretrained(str(tmp_path))
    with pytest.raises(ConfigError, match="unknown keys"):
        ModelConfig.from_dict({"objectiv": "clip"})


def test_embed_writes_the_curation_store(sample_dataset: str, tmp_path: Path) -> None:
    from rfm_curation.embeddings import EmbeddingStore

    model = _model().eval()
    save_pretrained(model, str(tmp_path / "m"))
    assert embed_main([str(tmp_path / "m"), sample_dataset, str(tmp_path / "emb"), "--batch-size", "16"]) == 0
    store = EmbeddingStore(str(tmp_path / "emb"))
    ds = ShardDataset(sample_dataset, transform=cxr_eval_transform(SIZE))
    assert store.count == len(ds) and store.dims == {"image": 16, "text": 16, "joint": 32}
    assert store.ids()[3] == ds[3]["sample_id"]
    image = store.mmap("image")
    torch.testing.assert_close(torch.from_numpy(image[3:4].copy()),
                               model.encode_image(ds[3]["image"][None]).detach(), atol=1e-5, rtol=1e-5)
