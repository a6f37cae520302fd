"""Segmentation evaluation on the real covid_chestxray_ieee8023 lung masks, with tiny encoders."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("monai", reason="segmentation needs the rfm-eval[segmentation] extra (MONAI)")
import torch
from PIL import Image

from rfm_data import io
from rfm_data.errors import ConfigError
from rfm_eval.segmentation import (
    SegmentationConfig,
    SegmentationModel,
    SegmentationSource,
    SegSample,
    load_pair,
    mask_sources,
    run_segmentation,
)
from rfm_eval.segmentation.data import pair_transform
from rfm_eval.segmentation.train import evaluate_model
from rfm_models.encoders.image import create_image_encoder

SOURCE = "covid_chestxray_ieee8023_lungs"


@pytest.fixture(scope="module")
def covid_root(shared_data: Path) -> str:
    root = shared_data / "covid_chestxray_ieee8023"
    if not (root / "metadata.csv").exists():
        pytest.skip(f"covid_chestxray_ieee8023 not found under {shared_data}")
    return str(root)


def test_lung_source_reads_hand_drawn_masks_with_patient_splits(covid_root: str) -> None:
    source = mask_sources.create(SOURCE, root=covid_root)
    assert source.classes == ("lungs",)
    assert "hand-drawn" in source.mask_origin
    assert all("/masks/" in s.mask_uris[0] for s in source.samples)
    train, test = source.split("train"), source.split("test")
    assert len(train) > 150 and len(test) > 50
    assert not {s.patient_id for s in train} & {s.patient_id for s in test}  # patient-level split
    lungvae = mask_sources.create(SOURCE, root=covid_root, masks="lungvae")
    assert all("/masks_lungvae/" in s.mask_uris[0] for s in lungvae.samples)
    assert len(lungvae.samples) < len(source.samples)


def test_lung_source_bad_input(covid_root: str, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"masks=.hand.*manual"):
        mask_sources.create(SOURCE, root=covid_root, masks="hand")
    with pytest.raises(ConfigError, match=r"metadata\.csv does not exist"):
        mask_sources.create(SOURCE, root=str(tmp_path))


def test_load_pair_resizes_consistently_and_rejects_size_mismatch(covid_root: str, tmp_path: Path) -> None:
    sample = mask_sources.create(SOURCE, root=covid_root).samples[0]
    image, mask = load_pair(sample, pair_transform(64))
    assert image.shape == (1, 64, 64) and mask.shape == (1, 64, 64)
    assert set(mask.unique().tolist()) == {0.0, 1.0}
    # A real mask saved at the wrong size must be refused with both files named.
    with Image.open(sample.mask_uris[0]) as im:
        im.resize((im.width // 2, im.height // 2)).save(tmp_path / "small.png")
    bad = SegSample("bad", sample.image_uri, (str(tmp_path / "small.png"),), "p", "train")
    with pytest.raises(ConfigError, match=r"small\.png.*image.*size"):
        load_pair(bad, pair_transform(64))


def test_monai_metrics_on_known_masks(covid_root: str) -> None:
    sample = mask_sources.create(SOURCE, root=covid_root).samples[0]
    _, mask = load_pair(sample, pair_transform(64))
    masks = torch.stack([mask, mask])
    pred = torch.stack([mask, torch.zeros_like(mask)])
    dice, hd = evaluate_model(pred, masks)
    assert dice[0, 0] == pytest.approx(1.0) and hd[0, 0] == pytest.approx(0.0)
    assert dice[1, 0] == pytest.approx(0.0) and np.isnan(hd[1, 0])  # empty prediction: HD95 undefined


@pytest.mark.parametrize("name", ["test_resnet", "test_vit"])
def test_decoder_over_cnn_and_vit_features(name: str) -> None:
    model = SegmentationModel(create_image_encoder(name, image_size=64), num_classes=2, width=8)
    logits = model(torch.randn(2, 1, 64, 64))
    assert logits.shape == (2, 2, 64, 64)
    logits.sum().backward()
    assert all(p.grad is None for p in model.encoder.parameters())  # frozen by default
    assert model.head.conv.conv.weight.grad is not None
    with pytest.raises(ValueError, match="divisible"):
        model(torch.randn(1, 1, 72, 72))


def test_run_segmentation_learns_lungs(covid_root: str, tmp_path: Path) -> None:
    cfg = SegmentationConfig(image_size=64, epochs=3, max_train=32, max_eval=12, n_boot=200, width=16)
    result = run_segmentation(create_image_encoder("test_resnet", image_size=64), SOURCE, str(tmp_path), cfg,
                              data_root=covid_root)
    assert result.loss_history[-1] < result.loss_history[0]
    # Baseline: predicting "lung everywhere" gives Dice ~0.4 on these images; a trained decoder beats it.
    source = mask_sources.create(SOURCE, root=covid_root)
    masks = torch.stack([load_pair(s, pair_transform(64))[1] for s in source.split("test")[:12]])
    everywhere = float(np.nanmean(evaluate_model(torch.ones_like(masks), masks)[0]))
    dice = result.dice["lungs"]
    assert dice.value > everywhere + 0.1
    assert dice.low <= dice.value <= dice.high
    summary = json.loads(io.read_text(str(tmp_path / "summary.json")))
    assert summary["dice"]["lungs"]["value"] == pytest.approx(dice.value)
    assert len(io.read_parquet(str(tmp_path / "per_image.parquet"))) == 12
    for name in ("overlays.png", "dice_hist.png", "summary.md"):
        assert (tmp_path / name).stat().st_size > 0


def test_multi_class_source_plugs_in_with_vit_finetune(covid_root: str, tmp_path: Path) -> None:
    """A lines-and-tubes-like source: several overlapping binary masks per image (here: lungs and its left
    half, cut from real masks), trained with a fine-tuned ViT."""
    lungs = mask_sources.create(SOURCE, root=covid_root)
    samples = []
    for s in lungs.split("train")[:8] + lungs.split("test")[:4]:
        mask = np.asarray(Image.open(s.mask_uris[0]))
        half = mask.copy()
        half[:, half.shape[1] // 2:] = 0
        Image.fromarray(half).save(tmp_path / f"{s.sample_id}_half.png")
        samples.append(SegSample(s.sample_id, s.image_uri, (s.mask_uris[0], str(tmp_path / f"{s.sample_id}_half.png")),
                                 s.patient_id, s.split))
    source = SegmentationSource("two_class", ("lungs", "right_lung"), tuple(samples), "test masks")
    cfg = SegmentationConfig(image_size=64, epochs=1, batch_size=4, n_boot=50, encoder_mode="finetune", width=8)
    encoder = create_image_encoder("test_vit", image_size=64)
    before = encoder.model.blocks[0].attn.qkv.weight.detach().clone()
    result = run_segmentation(encoder, source, str(tmp_path / "out"), cfg)
    assert set(result.dice) == {"lungs", "right_lung"}
    assert {s.class_name for s in result.per_image} == {"lungs", "right_lung"}
    assert not torch.equal(before, encoder.model.blocks[0].attn.qkv.weight)  # fine-tuned


def test_config_rejects_bad_options() -> None:
    with pytest.raises(ConfigError, match="encoder_mode"):
        SegmentationConfig(encoder_mode="partly")
    with pytest.raises(ConfigError, match="threshold"):
        SegmentationConfig(threshold=1.5)


def test_unknown_split_is_named(covid_root: str, tmp_path: Path) -> None:
    cfg = SegmentationConfig(image_size=64, epochs=1, eval_split="holdout")
    with pytest.raises(ConfigError, match="split 'holdout'"):
        run_segmentation(create_image_encoder("test_resnet", image_size=64), SOURCE, str(tmp_path), cfg,
                         data_root=covid_root)
