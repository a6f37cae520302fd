"""Multi-crop views of a real chest X-ray: shapes, seeded determinism, laterality kept, bad config refused."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from rfm_data.errors import ConfigError
from rfm_models.ssl.multicrop import CropConfig, MultiCrop, MultiCropd


@pytest.fixture(scope="module")
def cxr(shared_data: Path) -> torch.Tensor:
    root = shared_data / "pediatric_pneumonia_kermany"
    path = sorted((root / "images").rglob("*.png"))[0]
    with Image.open(path) as im:
        pixels = np.asarray(im.convert("L").resize((160, 128)), dtype=np.float32) / 255.0
    return torch.from_numpy(pixels)[None]


def test_views_have_the_configured_shapes_and_are_seeded(cxr: torch.Tensor) -> None:
    crop = MultiCrop(64, CropConfig(n_local=3, local_size=32), seed=0)
    g, loc = crop(cxr)
    assert g.shape == (2, 1, 64, 64) and loc.shape == (3, 1, 32, 32)
    assert not torch.allclose(g[0], g[1])  # two different random views
    g2, loc2 = crop.set_random_state(0)(cxr)
    assert torch.equal(g, g2) and torch.equal(loc, loc2)
    g3, _ = crop.set_random_state(1)(cxr)
    assert not torch.allclose(g, g3)
    assert abs(float(g.mean())) < 2.0  # normalised, not raw [0, 1]


def test_no_horizontal_flip_by_default_and_flip_on_request(cxr: torch.Tensor) -> None:
    still = dict(n_local=0, global_scale=[1.0, 1.0], degrees=0.0, translate=0.0, brightness=0.0, contrast=0.0,
                 gamma=[1.0, 1.0])
    plain, _ = MultiCrop(64, CropConfig(**still), seed=3)(cxr)  # type: ignore[arg-type]
    flipped, _ = MultiCrop(64, CropConfig(**still, flip_prob=1.0), seed=3)(cxr)  # type: ignore[arg-type]
    assert torch.allclose(flipped, plain.flip(-1), atol=1e-4)
    assert not torch.allclose(plain, plain.flip(-1), atol=1e-2)  # a CXR is not left-right symmetric


def test_dict_wrapper_replaces_the_image(cxr: torch.Tensor) -> None:
    out = MultiCropd(32, CropConfig(n_local=2, local_size=16))({"image": cxr, "sample_id": "a"})
    assert set(out) == {"global_crops", "local_crops", "sample_id"}
    with pytest.raises(KeyError, match="image"):
        MultiCropd(32)({"pixels": cxr})


@pytest.mark.parametrize(("field", "value", "match"), [
    ("n_global", 1, "n_global"), ("local_scale", [0.5, 0.1], "local_scale"), ("flip_prob", 2.0, "flip_prob"),
])
def test_bad_config_names_the_field(field: str, value: object, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        MultiCrop(32, CropConfig(**{field: value}))  # type: ignore[arg-type]
