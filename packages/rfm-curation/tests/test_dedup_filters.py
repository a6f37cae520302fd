from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from rfm_curation.dedup import exact_pairs, group_duplicates, perceptual_pairs, semantic_pairs
from rfm_curation.errors import ConfigError
from rfm_curation.filters import create_filter, list_filters
from rfm_curation.phash import dhash
from rfm_data.manifest import to_table


def test_exact_groups_keep_the_smallest_id_whatever_the_row_order() -> None:
    hashes = np.array(["h1", "h2", "h1", "", "", "h2", "h3", "h1"])
    ids = np.array(["z", "y", "x", "w", "v", "u", "t", "a"])
    groups = group_duplicates(len(ids), exact_pairs(hashes), ids)
    assert groups.removed.tolist() == [True, True, True, False, False, False, False, False]
    assert ids[groups.representative].tolist() == ["a", "u", "a", "w", "v", "u", "t", "a"]
    perm = np.random.default_rng(0).permutation(len(ids))
    again = group_duplicates(len(ids), exact_pairs(hashes[perm]), ids[perm])
    assert sorted(ids[perm][again.removed]) == sorted(ids[groups.removed])


def test_semantic_dedup_finds_planted_near_duplicates_only(long_tail: tuple[np.ndarray, np.ndarray]) -> None:
    x, _ = long_tail
    rng = np.random.default_rng(1)
    originals = rng.choice(len(x), 100, replace=False)
    copies = x[originals] + 0.003 * rng.standard_normal((100, x.shape[1])).astype(np.float32)
    both = np.concatenate([x, copies / np.linalg.norm(copies, axis=1, keepdims=True)])
    pairs = semantic_pairs(both, np.arange(len(both)), threshold=0.99, cluster_size=64)
    ids = np.array([f"s{i:05d}" for i in range(len(both))])
    removed = group_duplicates(len(both), pairs, ids).removed
    assert removed[len(x):].all(), "every planted copy (the larger id) is removed"
    assert not removed[: len(x)].any(), "no original is removed"


def test_dhash_survives_re_windowing_but_separates_different_images() -> None:
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:128, 0:96]
    image = (128 + 60 * np.sin(xx / 9.0) * np.cos(yy / 13.0)).astype(np.uint8)
    other = (128 + 60 * np.sin(yy / 7.0 + 1) * np.cos(xx / 5.0)).astype(np.uint8)
    brighter = np.clip(image.astype(np.float32) * 0.9 + 12 + rng.normal(0, 2, image.shape), 0, 255).astype(np.uint8)
    codes = np.stack([dhash(image), dhash(brighter), dhash(other)])
    pairs = perceptual_pairs(codes, max_distance=8)
    assert {(int(a), int(b)) for a, b in zip(pairs.left, pairs.right, strict=True)} == {(0, 1), (1, 0)}


def _manifest(**columns: list[object]) -> pa.Table:
    n = len(next(iter(columns.values())))
    return to_table([{"sample_id": f"s{i}", **{k: v[i] for k, v in columns.items()}} for i in range(n)])


def test_image_filters_read_the_ingest_flags() -> None:
    table = _manifest(quality_flags=[["blank"], [], ["tiny", "saturated"], ["low_contrast"]])
    assert create_filter("blank").drops(table).tolist() == [True, False, False, False]
    assert create_filter("saturated").drops(table).tolist() == [False, False, True, False]
    assert {"blank", "saturated", "low_contrast", "extreme_aspect", "tiny"} <= set(list_filters())


def test_report_filters() -> None:
    template = "No acute cardiopulmonary process."
    texts = ["", "  ", "Small left effusion, otherwise normal lungs and heart.", template, template.upper(),
             template + " 2", "Cardiomegaly."]
    table = _manifest(report_text=texts)
    assert create_filter("empty_report").drops(table).tolist() == [True, True, False, False, False, False, False]
    short = create_filter("short_report", min_words=3).drops(table)
    assert short.tolist() == [True, True, False, False, False, False, True]
    templated = create_filter("templated_report", max_copies=1).drops(table)
    assert templated.tolist() == [False, False, False, False, True, True, False]


def test_view_filter_and_bad_options() -> None:
    table = _manifest(view=["PA", "ap", "LATERAL", ""])
    assert create_filter("view").drops(table).tolist() == [False, False, True, False]
    assert create_filter("view", allowed=["PA"], keep_unknown=False).drops(table).tolist() == [False, True, True, True]
    with pytest.raises(ConfigError, match="unknown quality filter 'sharpness'"):
        create_filter("sharpness")
    with pytest.raises(ConfigError, match=r"filters\.view: bad option"):
        create_filter("view", colour="red")
