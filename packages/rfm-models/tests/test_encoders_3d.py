"""3D encoders: registry, 2D/3D input checks, local weights, FLOPs, export round trip, CLIP and MUST training
on CT phantoms read back from NIfTI files (rfm_data.volume_dataset), with resume."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import save_file

pytest.importorskip("monai")
pytest.importorskip("nibabel")

from rfm_data.errors import ConfigError
from rfm_data.volume_dataset import VolumeDataset, VolumeLoader, VolumeRecord
from rfm_data.volume_phantoms import PhantomSpec, ct_phantom, write_nifti
from rfm_data.volume_transforms import VolumeTransformConfig, build_volume_transform
from rfm_models.encoders import VolumeEncoder, create_image_encoder, image_encoders
from rfm_models.export import load_image_encoder, load_pretrained, save_pretrained
from rfm_models.model import ModelConfig, VisionLanguageModel, build_model
from rfm_models.train import TrainConfig, iter_metrics, train
from rfm_models.train.compute import measure_flops
from rfm_models.train.config import BudgetConfig, CheckpointConfig, OptimizerConfig
from rfm_models.weights import load_state_strict, read_safetensors

SIDE = 16
OBSERVATIONS = ["Lung Lesion"]


def _volumes(batch: int = 2, side: int = SIDE) -> torch.Tensor:
    return torch.randn(batch, 1, side, side, side, generator=torch.Generator().manual_seed(0))


def test_registry_and_spatial_dims() -> None:
    names = image_encoders.names("*3d")
    assert {"resnet10_3d", "resnet18_3d", "resnet50_3d", "vit_small_3d", "test_resnet3d", "test_vit3d"} <= set(names)
    for name, dim in (("test_resnet3d", 64), ("test_vit3d", 32)):
        enc = create_image_encoder(name, image_size=SIDE)
        assert isinstance(enc, VolumeEncoder) and enc.spatial_dims == 3 and enc.out_dim == dim
        assert enc(_volumes()).shape == (2, dim)
    assert create_image_encoder("test_resnet").spatial_dims == 2
    assert create_image_encoder("test_resnet3d")(_volumes(side=24)).shape == (2, 64)  # ResNets: any size


def test_2d_and_3d_inputs_are_checked() -> None:
    with pytest.raises(ValueError, match=r"2D image encoder expects \(B, 1, H, W\).*5-D input is a batch of 3D"):
        create_image_encoder("test_resnet")(_volumes())
    with pytest.raises(ValueError, match=r"3D image encoder expects \(B, 1, D, H, W\).*4-D input is a batch of 2D"):
        create_image_encoder("test_resnet3d")(torch.zeros(2, 1, SIDE, SIDE))
    with pytest.raises(ValueError, match=r"16³ volumes .* got spatial size \(24, 24, 24\)"):
        create_image_encoder("test_vit3d", image_size=SIDE)(_volumes(side=24))
    with pytest.raises(ConfigError, match="multiple of the 3D ViT patch_size 8"):
        create_image_encoder("test_vit3d", image_size=20)
    model = build_model(ModelConfig(image_encoder="test_resnet3d", text_encoder="test_bert", embed_dim=8,
                                    image_size=SIDE, observations=OBSERVATIONS))
    with pytest.raises(ValueError, match="3D image encoder expects"):
        model({"image": torch.zeros(2, 1, SIDE, SIDE), "report": ["a", "b"], "labels": [{}, {}]})


@pytest.mark.parametrize("name", ["test_resnet3d", "test_vit3d"])
def test_local_weights_strict_and_named(tmp_path: Path, name: str) -> None:
    source = create_image_encoder(name, image_size=SIDE).eval()
    state = {k: v.contiguous() for k, v in source.model.state_dict().items()}
    head = "fc.weight" if "resnet" in name else "classification_head.weight"
    save_file({**state, head: torch.zeros(3, source.out_dim)}, str(tmp_path / "w.safetensors"))
    loaded = create_image_encoder(name, image_size=SIDE, weights=str(tmp_path / "w.safetensors")).eval()
    x = _volumes()
    torch.testing.assert_close(loaded(x), source(x))  # the source classifier head was dropped, the rest loaded
    first = next(iter(state))
    bad = {**state, first: torch.zeros(*state[first].shape[:-1], state[first].shape[-1] + 1)}
    save_file(bad, str(tmp_path / "bad.safetensors"))
    with pytest.raises(ConfigError, match=rf"tensor '{first}' has shape"):
        create_image_encoder(name, image_size=SIDE, weights=str(tmp_path / "bad.safetensors"))
    with pytest.raises(ConfigError, match="pickled checkpoints are never loaded"):
        create_image_encoder(name, image_size=SIDE, weights=str(tmp_path / "w.pt"))


def test_flops_count_3d_convolutions_and_attention() -> None:
    resnet = create_image_encoder("test_resnet3d")
    small = measure_flops(lambda: resnet(_volumes(side=16)))[1]
    large = measure_flops(lambda: resnet(_volumes(side=32)))[1]
    # conv1 alone: 8 filters of 7³ x 1 channel at stride 2: 2 x 8 x 7³ multiply-adds per output voxel.
    assert small >= 2 * 2 * 8 * 7 ** 3 * 8 ** 3
    assert 7.0 < large / small < 9.0  # volume x8: 3D conv FLOPs scale with the voxel count
    vit = create_image_encoder("test_vit3d", image_size=SIDE)
    fwd = measure_flops(lambda: vit(_volumes()))[1]
    fwd_bwd = measure_flops(lambda: vit(_volumes()).sum().backward())[1]
    assert fwd > 2 * 2 * 8 * 32 * 8 ** 3 and 2.5 < fwd_bwd / fwd < 3.5  # patch embedding counted; bwd ≈ 2x fwd


def test_export_round_trip_3d(tmp_path: Path) -> None:
    for name in ("test_resnet3d", "test_vit3d"):
        model = build_model(ModelConfig(image_encoder=name, text_encoder="test_bert", embed_dim=8, image_size=SIDE,
                                        objective="must", observations=OBSERVATIONS)).eval()
        save_pretrained(model, str(tmp_path / name))
        loaded = load_pretrained(str(tmp_path / name))
        assert loaded.config.image_size == SIDE and loaded.image_encoder.spatial_dims == 3
        x = _volumes()
        torch.testing.assert_close(loaded.encode_image(x), model.encode_image(x))
        encoder = load_image_encoder(str(tmp_path / name))
        torch.testing.assert_close(encoder(x), model.image_encoder(x))


# ------------------------------------------------------------------------------------------------ training
CLEAR, NODULE = "Clear lungs. No nodule.", "Right lung nodule. Lung lesion is seen."


@pytest.fixture(scope="module")
def phantom_records(tmp_path_factory: pytest.TempPathFactory) -> list[VolumeRecord]:
    """8 CT phantoms (NIfTI): 4 clear, 4 with a right-lung lesion, bodies of different sizes, paired with text."""
    root = tmp_path_factory.mktemp("phantoms")
    records = []
    for n in range(8):
        lesion = n % 2 == 1
        body = (0.40 + 0.02 * (n // 2), 0.36 + 0.02 * (n // 2), 0.42)
        url = str(root / f"p{n}.nii.gz")
        write_nifti(ct_phantom(PhantomSpec(shape=(SIDE, SIDE, SIDE), spacing=(2.0, 2.0, 2.0), lesion=lesion,
                                           body=body)), url)
        records.append(VolumeRecord(f"p{n}", url, NODULE if lesion else CLEAR, {"Lung Lesion": int(lesion)}))
    return records


def _loader(records: list[VolumeRecord], model: VisionLanguageModel) -> VolumeLoader:
    cfg = VolumeTransformConfig(spacing=None, size=SIDE, window_level_width=(-200.0, 1400.0))
    ds = VolumeDataset(records, transform=build_volume_transform(cfg), validate=False)
    return VolumeLoader(ds, batch_size=4, seed=0, drop_last=True, collate_fn=model.collator())


def _cfg(out: Path, steps: int, lr: float = 3e-3) -> TrainConfig:
    return TrainConfig(output_dir=str(out), optimizer=OptimizerConfig(lr=lr), budget=BudgetConfig(max_steps=steps),
                       checkpoint=CheckpointConfig(every_steps=4, keep_last=2), deterministic=True, log_every=1,
                       progress=False, tensorboard=False, device="cpu")


def _model(objective: str = "clip", **options: Any) -> VisionLanguageModel:
    return build_model(ModelConfig(image_encoder="test_resnet3d", text_encoder="test_bert", embed_dim=16,
                                   image_size=SIDE, objective=objective, objective_options=options,
                                   observations=OBSERVATIONS))


def _losses(out: Path) -> list[float]:
    return [float(r["loss"]) for r in iter_metrics(str(out)) if "loss" in r]


@pytest.mark.slow
def test_clip_training_on_phantoms_learns_and_resumes(tmp_path: Path, phantom_records: list[VolumeRecord]) -> None:
    model = _model()
    result = train(_cfg(tmp_path / "clip", 8), model, _loader(phantom_records, model))
    assert result.step == 8 and result.counters.flops > 0 and result.counters.samples == 32
    resumed_model = _model()
    resumed = train(_cfg(tmp_path / "clip", 24), resumed_model, _loader(phantom_records, resumed_model))
    assert resumed.resumed_from_step == 8 and resumed.step == 24
    losses = _losses(tmp_path / "clip")
    assert len(losses) == 24 and all(math.isfinite(v) for v in losses)
    assert sum(losses[-4:]) / 4 < 0.8 * sum(losses[:4]) / 4  # the 3D image tower learns to match the text
    # Per-sample FLOPs are those of a 16³ 3D step: 32 samples counted over the first 8 steps, 96 in total.
    assert resumed.counters.samples == 96
    assert resumed.counters.flops == pytest.approx(3 * result.counters.flops, rel=1e-6)


@pytest.mark.slow
def test_must_stage1_then_stage2_on_phantoms(tmp_path: Path, phantom_records: list[VolumeRecord]) -> None:
    stage1 = _model("must", stage=1)
    first = train(_cfg(tmp_path / "s1", 8), stage1, _loader(phantom_records, stage1))
    losses1 = _losses(tmp_path / "s1")
    assert first.step == 8 and all(math.isfinite(v) for v in losses1)
    assert losses1[-1] < losses1[0]  # per-encoder BCE against the report labels falls
    save_pretrained(stage1, str(tmp_path / "export1"))
    stage2 = _model("must", stage=2)
    load_state_strict(stage2, read_safetensors(str(tmp_path / "export1")), "stage-1 export")
    image_head = stage2.objective.image_classifier.weight.detach().clone()  # type: ignore[union-attr]
    second = train(_cfg(tmp_path / "s2", 6), stage2, _loader(phantom_records, stage2))
    losses2 = _losses(tmp_path / "s2")
    assert second.step == 6 and all(math.isfinite(v) for v in losses2)
    # Stage 2 trains InfoNCE + ½ BCE through the shared classifier; the stage-1 heads stay frozen.
    torch.testing.assert_close(stage2.objective.image_classifier.weight, image_head)  # type: ignore[union-attr]
    assert losses2[0] > losses1[-1]  # the contrastive term is now part of the loss
