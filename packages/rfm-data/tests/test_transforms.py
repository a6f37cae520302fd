"""Tests of rfm_data.transforms on real chest X-rays (and their lung masks) of the development data."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from rfm_data.transforms import (
    CXR_MEAN,
    CXR_STD,
    CenterCrop,
    Compose,
    Normalize,
    Normalized,
    RandomAffine,
    RandomAffined,
    RandomIntensity,
    RandomIntensityd,
    RandomResizedCrop,
    RandomResizedCropd,
    Resize,
    Resized,
    SquarePad,
    SquarePadd,
    affine_matrix,
    create_transform,
    cxr_eval_transform,
    cxr_train_transform,
    mix_seed,
    presets,
    warp,
)

COVID = "covid_chestxray_ieee8023"


def _load(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("L"), dtype=np.float32) / 255


@pytest.fixture(scope="module")
def records(shared_data: Path) -> list[dict[str, str]]:
    with open(shared_data / COVID / "metadata.csv", newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def cxr(shared_data: Path, records: list[dict[str, str]]) -> torch.Tensor:
    """A real, non-square CXR as (1, H, W) float32 in [0, 1]."""
    row = next(r for r in records if int(r["height"]) - int(r["width"]) >= 20)
    return torch.from_numpy(_load(shared_data / COVID / row["image_path"]))[None]


@pytest.fixture(scope="module")
def cxr_and_mask(shared_data: Path, records: list[dict[str, str]]) -> tuple[torch.Tensor, torch.Tensor]:
    """A real CXR and its hand-drawn lung mask (0 background, 1 lung; the 'ignore' label folded into lung)."""
    row = next(r for r in records if r["mask_source"] == "v7labs_manual")
    image = torch.from_numpy(_load(shared_data / COVID / row["image_path"]))[None]
    mask = torch.from_numpy((_load(shared_data / COVID / row["mask_path"]) > 0.25).astype(np.float32))[None]
    return image, mask


def _iou(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a & b).sum()) / float((a | b).sum())


# ------------------------------------------------------------------------------------------- geometry
def test_resize_long_side_keeps_aspect_and_matches_pil(cxr: torch.Tensor) -> None:
    h, w = cxr.shape[-2:]
    out = Resize(128)(cxr)
    assert out.shape[-2:] == (128, round(w * 128 / h)) and max(out.shape[-2:]) == 128
    assert Resize((100, 90))(cxr).shape == (1, 100, 90)
    # Independent reference: PIL's bilinear resize is antialiased too.
    pil = Image.fromarray(cxr[0].numpy(), "F").resize((out.shape[-1], out.shape[-2]),
                                                      Image.Resampling.BILINEAR)
    assert float((out[0] - torch.from_numpy(np.asarray(pil))).abs().mean()) < 0.01


def test_square_pad_and_center_crop_are_exact(cxr: torch.Tensor) -> None:
    h, w = cxr.shape[-2:]
    padded = SquarePad()(cxr)
    left = (h - w) // 2
    assert padded.shape == (1, h, h)
    torch.testing.assert_close(padded[..., left:left + w], cxr, rtol=0, atol=0)
    assert float(padded[..., :left].abs().max()) == 0 and float(padded[..., left + w:].abs().max()) == 0
    top, left = (h - 100) // 2, (w - 80) // 2
    cropped = CenterCrop((100, 80))(cxr)
    torch.testing.assert_close(cropped, cxr[..., top:top + 100, left:left + 80], rtol=0, atol=0)


def test_fused_pad_and_crop_equal_the_exact_path(cxr: torch.Tensor) -> None:
    fused = Compose([SquarePad(), CenterCrop((200, 180))])
    separate = Compose([SquarePad(), CenterCrop((200, 180))], fuse_geometry=False)
    assert len(fused.stages) == 1 and len(separate.stages) == 2
    torch.testing.assert_close(fused(cxr), separate(cxr), rtol=0, atol=1e-5)


@pytest.mark.parametrize(("degrees", "dx", "dy"), [(0.0, 10.0, 0.0), (0.0, 0.0, -7.0), (20.0, 0.0, 0.0),
                                                   (-15.0, 12.0, 5.0)])
def test_affine_matches_pil_rotate(cxr: torch.Tensor, degrees: float, dx: float, dy: float) -> None:
    """An independent reference: PIL rotates counter-clockwise about the centre, then translates."""
    h, w = cxr.shape[-2:]
    m = affine_matrix((h, w), degrees, dx, dy)[None]
    ours = warp(cxr, m, (h, w))[0].numpy()
    ref = np.asarray(Image.fromarray(cxr[0].numpy(), "F").rotate(degrees, Image.Resampling.BILINEAR,
                                                                 translate=(dx, dy)))
    ones = np.ones((h, w), np.float32)
    inside = np.asarray(Image.fromarray(ones, "F").rotate(degrees, translate=(dx, dy))) == 1
    inside &= warp(torch.from_numpy(ones)[None], m, (h, w))[0].numpy() > 1 - 1e-6  # away from the edges
    assert inside.mean() > 0.6
    assert float(np.abs(ours - ref)[inside].max()) < 1e-3


def test_rotation_by_90_is_rot90(cxr: torch.Tensor) -> None:
    square = CenterCrop(150)(cxr)
    out = RandomAffine(degrees=(90, 90))(square)
    torch.testing.assert_close(out, torch.rot90(square, 1, (-2, -1)), rtol=0, atol=1e-5)


def test_no_horizontal_flip_unless_asked(cxr: torch.Tensor) -> None:
    for seed in range(10):
        torch.testing.assert_close(RandomAffine(degrees=0, seed=seed)(cxr), cxr, rtol=0, atol=1e-6)
    torch.testing.assert_close(RandomAffine(degrees=0, flip_prob=1.0)(cxr), cxr.flip(-1), rtol=0, atol=1e-5)


def test_train_transform_preserves_laterality(cxr: torch.Tensor) -> None:
    """A side marker drawn on the image's left stays on the left under the training augmentation."""
    marked = cxr.clone()
    h, w = marked.shape[-2:]
    marked[..., h // 2 - 6:h // 2 + 6, int(0.12 * w):int(0.12 * w) + 12] = 1.0
    transform = cxr_train_transform(size=112, normalize=False, brightness=0.0, contrast=0.0, gamma=(1.0, 1.0))
    for seed in range(20):
        plain = transform.set_random_state(seed)({"image": cxr})["image"][0]
        out = transform.set_random_state(seed)({"image": marked})["image"][0]
        where = torch.nonzero((out - plain).abs() > 0.05)[:, 1]  # columns where the marker landed
        assert len(where) > 20 and float(where.float().mean()) < 112 * 0.4


def test_random_resized_crop_stays_inside_and_in_scale(cxr: torch.Tensor) -> None:
    rrc = RandomResizedCrop(64, scale=(0.5, 0.9), ratio=(0.8, 1.25), seed=3)
    size = tuple(cxr.shape[-2:])
    matrices, out = rrc.plan(200, size)  # type: ignore[arg-type]
    assert out == (64, 64)
    sx, sy, tx, ty = matrices[:, 0, 0], matrices[:, 1, 1], matrices[:, 0, 2], matrices[:, 1, 2]
    assert np.all(np.abs(tx) + sx <= 1 + 1e-9) and np.all(np.abs(ty) + sy <= 1 + 1e-9)  # window inside
    assert np.all(sx * sy <= 0.9 + 1e-9) and np.all(sx * sy >= 0.4)  # area (clipping only shrinks it)
    square = CenterCrop(120)(cxr)
    torch.testing.assert_close(RandomResizedCrop(120, scale=(1, 1), ratio=(1, 1))(square), square,
                               rtol=0, atol=1e-5)


def test_batches_draw_per_sample_and_match_single_warps(cxr: torch.Tensor) -> None:
    batch = SquarePad()(cxr).expand(4, -1, -1, -1).contiguous()
    affine = RandomAffine(degrees=20, translate=0.1, seed=11)
    out = affine(batch)
    assert out.shape == batch.shape
    assert all(not torch.equal(out[i], out[j]) for i in range(4) for j in range(i + 1, 4))
    matrices, size = affine.set_random_state(11).plan(4, tuple(batch.shape[-2:]))  # type: ignore[arg-type]
    for i in range(4):
        torch.testing.assert_close(out[i], warp(batch[i], matrices[i:i + 1], size), rtol=0, atol=1e-6)


# ------------------------------------------------------------------------------------------ intensity
def test_intensity_parts(cxr: torch.Tensor) -> None:
    torch.testing.assert_close(RandomIntensity(0.0, 0.0, gamma=(2.0, 2.0))(cxr), cxr**2, rtol=0, atol=1e-6)
    for seed in range(5):
        out = RandomIntensity(brightness=0.2, contrast=0.0, gamma=(1.0, 1.0), seed=seed)(cxr)
        shift = out - cxr
        free = (out > 0) & (out < 1)  # unclamped pixels all moved by the same amount
        assert float(shift[free].std()) < 1e-6 and float(shift[free].abs().max()) <= 0.2 + 1e-6
        contrasted = RandomIntensity(brightness=0.0, contrast=0.1, gamma=(1.0, 1.0), seed=seed)(cxr)
        assert abs(float(contrasted.mean()) - float(cxr.mean())) < 0.01  # about the mean
    wild = RandomIntensity(0.5, 0.5, (0.5, 2.0))(cxr)
    assert float(wild.min()) >= 0 and float(wild.max()) <= 1


def test_normalize_scalar_and_per_channel(cxr: torch.Tensor) -> None:
    torch.testing.assert_close(Normalize(0.5, 0.25)(cxr), (cxr - 0.5) / 0.25)
    three = cxr.expand(3, -1, -1)
    out = Normalize((0.4, 0.5, 0.6), (0.2, 0.25, 0.3))(three)
    torch.testing.assert_close(out[2], (cxr[0] - 0.6) / 0.3)


# -------------------------------------------------------------------------------------------- dicts
def test_dict_wrappers_apply_one_draw_to_image_and_mask(cxr_and_mask: tuple[torch.Tensor, torch.Tensor],
                                                        ) -> None:
    image, mask = cxr_and_mask
    keys, modes = ["image", "mask"], ["bilinear", "nearest"]
    item = {"image": mask.clone(), "mask": mask, "report": "kept as is"}
    steps = Compose([SquarePadd(keys), RandomResizedCropd(keys, 128, mode=modes, seed=1),
                     RandomAffined(keys, degrees=15, translate=0.1, mode=modes, seed=2)])
    assert len(steps.stages) == 1  # three geometric dict transforms, one resample
    out = steps(item)
    assert out["report"] == "kept as is" and out["mask"].shape == (1, 128, 128)
    assert set(out["mask"].unique().tolist()) <= {0.0, 1.0}  # nearest keeps labels
    assert _iou(out["image"] > 0.5, out["mask"] > 0.5) > 0.95  # same draw for both keys
    other = Compose([SquarePadd("image"), RandomResizedCropd("image", 128, seed=5),
                     RandomAffined("image", degrees=15, translate=0.1, seed=6)])({"image": mask})
    assert _iou(other["image"] > 0.5, out["mask"] > 0.5) < _iou(out["image"] > 0.5, out["mask"] > 0.5)
    assert item["image"].shape == image.shape[:1] + mask.shape[1:]  # the input item is not modified


def test_dict_wrappers_validate_keys_and_sizes(cxr: torch.Tensor) -> None:
    with pytest.raises(KeyError, match="mask"):
        Normalized(["image", "mask"])({"image": cxr})
    out = RandomIntensityd(["image", "mask"], allow_missing_keys=True)({"image": cxr})
    assert set(out) == {"image"}
    with pytest.raises(ValueError, match="different spatial sizes"):
        RandomAffined(["image", "mask"])({"image": cxr, "mask": cxr[..., :-1]})
    with pytest.raises(ValueError, match="modes"):
        Resized(["image", "mask"], 64, mode=["bilinear"])


# ------------------------------------------------------------------------------------------- presets
def test_train_transform_item_batch_and_determinism(cxr: torch.Tensor) -> None:
    transform = cxr_train_transform(size=224, seed=4)
    assert len(transform.stages) == 3  # pad + crop + affine fused into one resample, intensity, normalise
    out = transform({"image": cxr})["image"]
    assert out.shape == (1, 224, 224) and out.dtype == torch.float32 and bool(torch.isfinite(out).all())
    low, high = (0 - CXR_MEAN) / CXR_STD, (1 - CXR_MEAN) / CXR_STD
    assert float(out.min()) >= low - 1e-5 and float(out.max()) <= high + 1e-5
    again = cxr_train_transform(size=224, seed=4)({"image": cxr})["image"]
    torch.testing.assert_close(out, again, rtol=0, atol=0)
    different = cxr_train_transform(size=224, seed=5)({"image": cxr})["image"]
    assert not torch.equal(out, different)
    batch = SquarePad()(cxr).expand(3, -1, -1, -1)
    assert transform({"image": batch})["image"].shape == (3, 1, 224, 224)


def _two_random() -> Compose:
    return Compose([RandomAffine(10), RandomIntensity()])


def test_shared_generator(cxr: torch.Tensor) -> None:
    a = _two_random().set_random_state(generator=torch.Generator().manual_seed(9))
    b = _two_random().set_random_state(generator=torch.Generator().manual_seed(9))
    torch.testing.assert_close(a(cxr), b(cxr), rtol=0, atol=0)
    shared = torch.Generator().manual_seed(1)
    first = RandomAffine(10).set_random_state(generator=shared)
    assert first.generator is shared  # shared, not copied


def test_eval_transform_resizes_pads_and_normalises(cxr: torch.Tensor) -> None:
    out = cxr_eval_transform(size=128)({"image": cxr})["image"]
    assert out.shape == (1, 128, 128)
    resized = Resize(128)(cxr)
    left = (128 - resized.shape[-1]) // 2
    torch.testing.assert_close(out[..., left:left + resized.shape[-1]], (resized - CXR_MEAN) / CXR_STD)
    torch.testing.assert_close(out[..., :left], torch.full_like(out[..., :left], -CXR_MEAN / CXR_STD))


def test_presets_registry() -> None:
    assert {"cxr_train", "cxr_eval", "cxr_batch_item"} <= set(presets.names())
    assert isinstance(create_transform("cxr_eval", size=64), Compose)
    with pytest.raises(KeyError, match="known: cxr_batch_item, cxr_eval, cxr_train"):
        create_transform("cxr_flip")


def test_mix_seed_spreads_and_repeats() -> None:
    seeds = {mix_seed(0, epoch, i) for epoch in range(3) for i in range(1000)}
    assert len(seeds) == 3000 and all(0 <= s < 2**63 for s in seeds)
    assert mix_seed(1, 2, 3) == mix_seed(1, 2, 3) != mix_seed(1, 3, 2)


@pytest.mark.gpu
def test_batch_augmentation_on_gpu_matches_cpu(cxr: torch.Tensor) -> None:
    batch: dict[str, Any] = {"image": SquarePad()(cxr).expand(8, -1, -1, -1).contiguous()}
    cpu = cxr_train_transform(seed=1)(batch)["image"]
    gpu = cxr_train_transform(seed=1)({"image": batch["image"].cuda()})["image"]
    torch.testing.assert_close(gpu.cpu(), cpu, rtol=0, atol=1e-4)
