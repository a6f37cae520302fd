"""Volume transforms on real volumes (nibabel's test NIfTIs, pydicom's MR) and on phantoms of known geometry."""

from __future__ import annotations

import os

import numpy as np
import pydicom.data
import pytest
import torch

pytest.importorskip("monai")
nib = pytest.importorskip("nibabel")
from nibabel.testing import data_path  # noqa: E402

from rfm_data import io  # noqa: E402
from rfm_data.errors import ConfigError  # noqa: E402
from rfm_data.readers import ReadOptions  # noqa: E402
from rfm_data.readers.volume import read_dicom_series, read_nifti  # noqa: E402
from rfm_data.volume_phantoms import PhantomSpec, ct_phantom, write_dicom_series, write_nifti  # noqa: E402
from rfm_data.volume_transforms import (  # noqa: E402
    WINDOWS,
    Intensity,
    VolumeTransformConfig,
    WindowPreset,
    build_patch_sampler,
    build_volume_transform,
    intensity_transforms,
    volume_to_tensor,
)

GEOMETRY_ONLY = VolumeTransformConfig(spacing=None, size=None, intensity=Intensity.NONE)


def _run(cfg: VolumeTransformConfig, image: torch.Tensor, train: bool = False, seed: int = 0) -> torch.Tensor:
    transform = build_volume_transform(cfg, train=train)
    transform.set_random_state(seed=seed)
    out: torch.Tensor = transform({"image": image})["image"]
    return out


@pytest.mark.parametrize("name", ["anatomical.nii", "example_nifti2.nii.gz", "standard.nii.gz", "example4d.nii.gz"])
def test_ras_orientation_equals_nibabel_canonical(read_options: ReadOptions, name: str) -> None:
    """Reader (LPS, slice-first) + volume_to_tensor + RAS orientation gives nibabel's canonical array exactly."""
    path = os.path.join(data_path, name)
    volume = read_nifti(io.read_bytes(path), path, read_options)
    out = _run(GEOMETRY_ONLY, volume_to_tensor(volume))
    canonical = np.asarray(nib.as_closest_canonical(nib.load(path)).dataobj, dtype=np.float32)
    canonical = canonical[..., 0] if canonical.ndim == 4 else canonical
    assert type(out) is torch.Tensor  # metadata stripped: the model and collate get plain tensors
    assert out.shape == (1, *canonical.shape)
    np.testing.assert_array_equal(out[0].numpy(), canonical)


def test_phantom_nifti_and_dicom_series_agree_and_resample_exactly(tmp_path: object,
                                                                   read_options: ReadOptions) -> None:
    # 33 columns / rows of 0.8 mm span 25.6 mm = 16 steps of 1.6 mm: the resampled grid size is exact.
    phantom = ct_phantom(PhantomSpec(shape=(24, 33, 33), origin=(-12.8, -12.8, 0.0), lesion=True))
    write_nifti(phantom, f"{tmp_path}/p.nii.gz")
    urls = write_dicom_series(phantom, f"{tmp_path}/series")
    from_nifti = read_nifti(io.read_bytes(f"{tmp_path}/p.nii.gz"), "p", read_options)
    from_series = read_dicom_series([io.read_bytes(u) for u in urls], urls, read_options)
    np.testing.assert_array_equal(from_nifti.voxels, phantom.voxels)
    np.testing.assert_array_equal(from_series.voxels, phantom.voxels)

    transform = build_volume_transform(VolumeTransformConfig(spacing=(1.6, 1.6, 2.5), size=None,
                                                             intensity=Intensity.NONE))
    meta = transform.transforms[1]({"image": transform.transforms[0]({"image": volume_to_tensor(from_series)})
                                    ["image"]})["image"]  # orientation + spacing, metadata kept
    affine = meta.affine.numpy()
    np.testing.assert_allclose(np.diag(affine)[:3], [1.6, 1.6, 2.5])
    np.testing.assert_allclose(affine[:3, :3] - np.diag(np.diag(affine)[:3]), 0)
    # RAS extent: x from -12.8 (column 32) to +12.8, y likewise, z from 0 to 57.5 mm (slices kept).
    np.testing.assert_allclose(affine[:3, 3], [-12.8, -12.8, 0.0], atol=1e-5)
    assert tuple(meta.shape[1:]) == (17, 17, 24)
    # The marker block sits at LPS x, y in [-12.8, -12.0], z in [0, 2.5] = RAS x, y in [12.0, 12.8]: the
    # high-x, high-y, low-z corner after RAS orientation; the opposite corner is air.
    assert float(meta[0, -1, -1, 0]) > 500.0 and float(meta[0, 0, 0, 0]) < -900.0
    both = [_run(VolumeTransformConfig(spacing=(1.6, 1.6, 2.5), size=24), volume_to_tensor(v))
            for v in (from_nifti, from_series)]
    torch.testing.assert_close(both[0], both[1])


def test_ct_window_presets_map_hu_exactly() -> None:
    phantom = ct_phantom()
    image = volume_to_tensor(phantom)
    for preset, (level, width) in WINDOWS.items():
        cfg = VolumeTransformConfig(spacing=None, size=None, window=preset)
        out = _run(cfg, image)[0]
        assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0
        expected_soft = min(max((40.0 - (level - width / 2)) / width, 0.0), 1.0)
        soft = out[out.shape[0] // 2, out.shape[1] // 2, int(out.shape[2] * 0.05 + 1)]  # inside the body rim
        assert float(soft) == pytest.approx(expected_soft, abs=1e-5), preset
    assert WINDOWS[WindowPreset.LUNG] == (-600.0, 1500.0)
    custom = _run(VolumeTransformConfig(spacing=None, size=None, window_level_width=(0.0, 2000.0)), image)
    assert float(custom.max()) == pytest.approx(1.0)  # marker 1000 HU = top of the (0, 2000) window
    assert float(custom.min()) == pytest.approx(0.0)  # air -1000 HU = bottom


def _real_mr(read_options: ReadOptions) -> torch.Tensor:
    path = pydicom.data.get_testdata_file("MR_small.dcm")
    volume = read_dicom_series([io.read_bytes(path)], [path], read_options)  # a one-slice MR volume
    return volume_to_tensor(volume)


def test_mr_normalisation_on_a_real_mr(read_options: ReadOptions) -> None:
    image = _real_mr(read_options)
    z = _run(VolumeTransformConfig(spacing=None, size=None, intensity=Intensity.MR_ZSCORE), image)
    raw = _run(GEOMETRY_ONLY, image)  # the same orientation, values as read
    foreground = raw > raw.mean()
    assert 0.1 < float(foreground.float().mean()) < 0.9  # a real body / air split, not all or nothing
    assert float(z[foreground].mean()) == pytest.approx(0.0, abs=1e-4)
    assert float(z[foreground].std()) == pytest.approx(1.0, abs=1e-3)
    p = _run(VolumeTransformConfig(spacing=None, size=None, intensity=Intensity.MR_PERCENTILE,
                                   percentiles=(1.0, 99.0)), image)
    assert float(p.min()) == 0.0 and float(p.max()) == 1.0
    assert 0.005 < float((p == 1.0).float().mean()) < 0.03  # ~1 % of voxels at or above the 99th percentile
    assert intensity_transforms.names() == sorted(i.value for i in Intensity)


def test_training_pipeline_is_seeded_and_sized() -> None:
    image = volume_to_tensor(ct_phantom(PhantomSpec(lesion=True)))
    cfg = VolumeTransformConfig(spacing=(1.5, 1.5, 1.5), size=16, augment_prob=1.0)
    a, b, c = (_run(cfg, image, train=True, seed=s) for s in (3, 3, 4))
    assert a.shape == (1, 16, 16, 16) and a.dtype == torch.float32
    torch.testing.assert_close(a, b)
    assert not torch.equal(a, c)
    eval_a, eval_b = _run(cfg, image, seed=1), _run(cfg, image, seed=2)
    torch.testing.assert_close(eval_a, eval_b)  # evaluation is deterministic: centre crop, no augmentation
    padded = _run(VolumeTransformConfig(spacing=(1.5, 1.5, 1.5), size=(40, 8, 48)), image)
    assert padded.shape == (1, 40, 8, 48)


def test_patch_sampler_cuts_patches_inside_the_volume() -> None:
    image = volume_to_tensor(ct_phantom()).as_tensor()
    sampler = build_patch_sampler(8, num_samples=5)
    sampler.set_random_state(seed=0)
    patches = sampler({"image": image, "report": "x"})
    assert len(patches) == 5 and all(p["image"].shape == (1, 8, 8, 8) and p["report"] == "x" for p in patches)
    values = set(np.unique(image.numpy()).tolist())
    assert all(set(np.unique(p["image"].numpy()).tolist()) <= values for p in patches)  # crops, no interpolation
    with pytest.raises(ConfigError, match="num_samples"):
        build_patch_sampler(8, num_samples=0)


@pytest.mark.parametrize(("field", "value", "match"), [
    ("spacing", (1.0, -1.0, 1.0), "spacing"),
    ("axcodes", "RRS", "axcodes"),
    ("percentiles", (99.0, 1.0), "percentiles"),
    ("window_level_width", (40.0, 0.0), "window_level_width"),
    ("size", 0, "size"),
    ("augment_prob", 1.5, "augment_prob"),
])
def test_bad_config_names_the_field(field: str, value: object, match: str) -> None:
    cfg = VolumeTransformConfig(**{field: value})  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=match):
        build_volume_transform(cfg)


def test_unknown_intensity_or_window_is_refused() -> None:
    with pytest.raises(ValueError, match="mr_zscor"):
        build_volume_transform(VolumeTransformConfig(intensity="mr_zscor"))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="lungs"):
        build_volume_transform(VolumeTransformConfig(window="lungs"))  # type: ignore[arg-type]
