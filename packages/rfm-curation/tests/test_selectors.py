"""Online selectors: protocol, CheXficient schedule, learnability scores, bit-for-bit checkpoints, bad input."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from rfm_curation.bands import Band, curation_budget
from rfm_curation.selectors import (
    LearnabilitySelector,
    Phase,
    PrototypeSelector,
    Selector,
    create_selector,
    ema_update,
    joint_embedding,
    list_selectors,
    load_state,
    restore_selector,
    save_state,
    sinkhorn,
    state_from_bytes,
    state_to_bytes,
)
from rfm_data.errors import ConfigError

BATCH = 64


def mixture(seed: int, sizes: tuple[int, ...] = (900, 450, 220, 110, 60, 30), dim: int = 24) -> tuple[Any, Any]:
    """Shuffled samples from a long-tailed mixture of well-separated directions, and their true component."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(len(sizes), dim))
    labels = rng.permutation(np.repeat(np.arange(len(sizes)), sizes))
    x = centres[labels] + 0.35 * rng.normal(size=(len(labels), dim))
    return x.astype(np.float32), labels


def batches(x: Any, start: int = 0, stop: int | None = None) -> Iterator[tuple[Any, Any]]:
    """``(ids, embeddings)`` batches of ``x``; ids are the row numbers (as strings, like manifest ids)."""
    stop = len(x) if stop is None else min(stop, len(x))
    for lo in range(start, stop, BATCH):
        hi = min(lo + BATCH, stop)
        yield np.array([f"s{i:05d}" for i in range(lo, hi)]), x[lo:hi]


def proto(**kw: Any) -> PrototypeSelector:
    return PrototypeSelector(**{"n_prototypes": 6, "warmup_samples": 3 * BATCH, "seed": 0, **kw})


# --- protocol and registry ---------------------------------------------------------------------------------


def test_registry_builds_selectors_that_satisfy_the_protocol() -> None:
    assert list_selectors() == ["learnability", "prototype"]
    for sel in (create_selector("prototype", warmup_samples=64), create_selector("learnability")):
        assert isinstance(sel, Selector)
    with pytest.raises(KeyError, match="known: learnability, prototype"):
        create_selector("jest")


# --- CheXficient schedule ----------------------------------------------------------------------------------


def test_warmup_keeps_everything_then_prototypes_come_from_kmeans() -> None:
    x, _ = mixture(0)
    sel = proto()
    for i, (ids, emb) in enumerate(batches(x, 0, 3 * BATCH)):
        assert sel.phase is Phase.WARMUP and sel.prototypes is None
        assert sel.select(ids, emb).all()
        assert sel.samples_seen == (i + 1) * BATCH
    assert sel.phase is Phase.SELECTING  # the batch that reached warmup_samples ends the warm-up
    p = sel.prototypes
    assert p is not None and p.shape == (6, x.shape[1])
    np.testing.assert_allclose(np.linalg.norm(p, axis=1), 1.0, rtol=1e-5)


def test_selection_applies_the_band_rule_to_each_batch() -> None:
    x, _ = mixture(1)
    sel = proto()
    for ids, emb in batches(x, 0, 3 * BATCH):
        sel.select(ids, emb)
    for ids, emb in batches(x, 3 * BATCH, 12 * BATCH):
        keep = sel.select(ids, emb)
        bands = sel.last_selection
        assert bands is not None and np.array_equal(keep, bands.keep)
        assert keep[bands.bands == Band.TAIL.code].all()
        assert not keep[bands.bands == Band.OUTLIER.code].any()
        candidates = bands.bands <= Band.PERIPHERAL.code
        assert keep[candidates].sum() == curation_budget(int(candidates.sum()), 0.2)
        assert keep.sum() < len(keep)


def test_subset_is_fixed_after_the_first_epoch() -> None:
    x, _ = mixture(2)
    sel = proto(epoch_size=len(x))
    union: set[str] = set()
    for ids, emb in batches(x):
        union.update(ids[sel.select(ids, emb)].tolist())
    assert sel.phase is Phase.FIXED
    assert sel.subset().tolist() == sorted(union) and len(union) < 0.6 * len(x)
    # Second epoch, shuffled and re-batched: exactly the subset's ids are kept, whatever the embeddings.
    order = np.random.default_rng(0).permutation(len(x))
    ids_all = np.array([f"s{i:05d}" for i in range(len(x))])[order]
    noise = np.random.default_rng(1).normal(size=x.shape)
    masks = [sel.select(ids_all[i : i + 100], noise[i : i + 100]) for i in range(0, len(x), 100)]
    assert sorted(ids_all[np.concatenate(masks)].tolist()) == sorted(union)


def test_end_epoch_fixes_the_subset_without_an_epoch_size() -> None:
    x, _ = mixture(3)
    sel = proto()
    for ids, emb in batches(x, 0, 5 * BATCH):
        sel.select(ids, emb)
    kept = set(sel.kept_ids)
    sel.end_epoch()
    assert sel.phase is Phase.FIXED
    ids, emb = next(batches(x, 0, BATCH))
    assert sel.select(ids, emb).tolist() == [i in kept for i in ids.tolist()]


def test_rare_components_are_over_represented_relative_to_random() -> None:
    x, labels = mixture(4)
    sel = proto(epoch_size=len(x))
    for ids, emb in batches(x):
        sel.select(ids, emb)
    rows = np.array([int(i[1:]) for i in sel.subset().tolist()])
    subset_share = np.bincount(labels[rows], minlength=6) / len(rows)
    pool_share = np.bincount(labels, minlength=6) / len(labels)  # a random subset's expected share
    assert subset_share[-2:].sum() > 1.5 * pool_share[-2:].sum()  # the two rarest components
    assert subset_share[0] < pool_share[0]  # the most common one


def test_initial_prototypes_skip_the_warmup() -> None:
    x, _ = mixture(5)
    sel = PrototypeSelector(n_prototypes=4, prototypes=x[:4], seed=0)
    assert sel.phase is Phase.SELECTING
    ids, emb = next(batches(x, 4, 4 + BATCH))
    assert not sel.select(ids, emb).all()


# --- Sinkhorn and EMA ----------------------------------------------------------------------------------------


def test_sinkhorn_balances_prototypes_and_rows_sum_to_one() -> None:
    rng = np.random.default_rng(0)
    scores = rng.uniform(-1, 1, size=(40, 4))
    scores[:, 0] += 1.0  # every sample prefers prototype 0; Sinkhorn must still spread the mass
    q = sinkhorn(scores, epsilon=0.05, n_iters=50)
    np.testing.assert_allclose(q.sum(axis=1), 1.0, rtol=1e-9)
    np.testing.assert_allclose(q.sum(axis=0), 10.0, rtol=1e-3)
    assert np.isfinite(sinkhorn(scores, epsilon=1e-4, n_iters=3)).all()  # log domain: no underflow


def test_ema_update_moves_prototypes_toward_their_soft_means() -> None:
    p = np.eye(2, 3, dtype=np.float32)
    x = np.array([[0, 1, 0], [0, 0, 1]], dtype=np.float32)
    q = np.eye(2)  # sample 0 → prototype 0, sample 1 → prototype 1
    out = ema_update(p, x, q, momentum=0.9)
    expected = np.array([[0.9, 0.1, 0], [0, 0.9, 0.1]]) / np.hypot(0.9, 0.1)
    np.testing.assert_allclose(out, expected, rtol=1e-6)


def test_joint_embedding_weighs_both_modalities_equally() -> None:
    j = joint_embedding(np.array([[3.0, 4.0]]), np.array([[0.0, 0.0, 10.0]]))
    np.testing.assert_allclose(j, [[0.6, 0.8, 0, 0, 1.0]] / np.sqrt(2), rtol=1e-6)
    with pytest.raises(ValueError, match="image has 1 rows but text has 2"):
        joint_embedding(np.ones((1, 2)), np.ones((2, 2)))


# --- checkpoints -------------------------------------------------------------------------------------------


def run(sel: Selector, x: Any, start: int, stop: int, losses: Any = None) -> list[Any]:
    out = []
    for ids, emb in batches(x, start, stop):
        rows = np.array([int(i[1:]) for i in ids])
        out.append(sel.select(ids, emb, None if losses is None else losses[rows]))
    return out


def continue_both(make: Any, x: Any, n: int, m: int, restore: Any, losses: Any = None) -> tuple[Any, Any]:
    original = make()
    run(original, x, 0, n * BATCH, losses)
    copy = make()
    restore(original, copy)
    a = run(original, x, n * BATCH, (n + m) * BATCH, losses)
    b = run(copy, x, n * BATCH, (n + m) * BATCH, losses)
    assert len(a) == m and all(np.array_equal(u, v) for u, v in zip(a, b, strict=True))
    assert original.kept_ids == copy.kept_ids and original.phase is copy.phase
    return original, copy


def in_memory(original: Selector, copy: Selector) -> None:
    copy.load_state_dict(original.state_dict())


def through_bytes(original: Selector, copy: Selector) -> None:
    copy.load_state_dict(state_from_bytes(state_to_bytes(original.state_dict())))


@pytest.mark.parametrize("restore", [in_memory, through_bytes])
@pytest.mark.parametrize("n", [1, 5, 9], ids=["in-warmup", "selecting", "into-fixed"])
def test_prototype_checkpoint_continues_bit_for_bit(n: int, restore: Any) -> None:
    x, _ = mixture(6)
    original, copy = continue_both(lambda: proto(epoch_size=14 * BATCH), x, n, 8, restore)
    assert original.prototypes is not None and copy.prototypes is not None
    assert np.array_equal(original.prototypes, copy.prototypes)


@pytest.mark.parametrize("url_kind", ["file", "memory"])
def test_checkpoint_file_round_trip(tmp_path: Path, url_kind: str) -> None:
    x, _ = mixture(7)
    url = str(tmp_path / "sel.safetensors") if url_kind == "file" else f"memory://ckpt/{tmp_path.name}.safetensors"

    def via_file(original: Selector, copy: Selector) -> None:
        save_state(original, url)
        load_state(copy, url)

    continue_both(proto, x, 4, 4, via_file)
    rebuilt = restore_selector(url)  # kind and configuration come from the file itself
    assert isinstance(rebuilt, PrototypeSelector) and rebuilt.samples_seen == 4 * BATCH
    if url_kind == "file":
        assert [p.name for p in tmp_path.iterdir()] == ["sel.safetensors"]  # no temporary left behind


def test_state_holds_only_plain_types_and_numeric_arrays_and_is_a_snapshot() -> None:
    x, _ = mixture(8)
    sel = proto()
    run(sel, x, 0, 5 * BATCH)
    state = sel.state_dict()
    saved = state_to_bytes(state)

    def plain(v: Any) -> bool:
        if isinstance(v, dict):
            return all(isinstance(k, str) and plain(w) for k, w in v.items())
        if isinstance(v, list):
            return all(plain(w) for w in v)
        if isinstance(v, np.ndarray):
            return v.dtype.kind in "biuf"
        return v is None or isinstance(v, bool | int | float | str)

    assert plain(state)
    run(sel, x, 5 * BATCH, 8 * BATCH)  # the original moves on; the state taken earlier must not
    later, before = state_from_bytes(state_to_bytes(state)), state_from_bytes(saved)
    assert later.keys() == before.keys()
    for key, value in before.items():
        same = np.array_equal(value, later[key]) if isinstance(value, np.ndarray) else value == later[key]
        assert same, key
    assert before["seen"] == 5 * BATCH and len(before["kept_ids"]) < len(sel.kept_ids)


def test_loading_a_state_checks_kind_and_configuration() -> None:
    state = proto().state_dict()
    with pytest.raises(ConfigError, match="ratio"):
        proto(ratio=0.3).load_state_dict(state)
    with pytest.raises(ValueError, match=r"state\.kind"):
        LearnabilitySelector().load_state_dict(state)
    with pytest.raises(ValueError, match="not a selector state file"):
        state_from_bytes(b"\x02\x00\x00\x00\x00\x00\x00\x00{}")


# --- learnability ------------------------------------------------------------------------------------------


def test_learnability_keeps_learnable_not_noisy_or_learnt_samples() -> None:
    # learnable: learner high, reference low; noisy: both high; learnt: both low.
    learner = np.array([2.0, 2.1, 5.0, 5.0, 0.1, 0.1, 1.9, 0.2, 4.9, 0.1])
    reference = np.array([0.1, 0.2, 5.0, 4.9, 0.1, 0.0, 0.3, 0.1, 5.0, 0.1])
    sel = LearnabilitySelector(ratio=0.3)
    keep = sel.select(np.arange(10), losses=learner, reference_losses=reference)
    assert np.flatnonzero(keep).tolist() == [0, 1, 6]


def test_reference_losses_by_id_equal_passing_them_per_call() -> None:
    rng = np.random.default_rng(0)
    ids = np.array([f"id{i}" for i in range(50)])
    learner, reference = rng.normal(size=50), rng.normal(size=50)
    by_call = LearnabilitySelector(ratio=0.2, temperature=0.5, seed=3)
    by_id = LearnabilitySelector(ratio=0.2, temperature=0.5, seed=3)
    by_id.set_reference_losses(ids[::-1], reference[::-1])  # order must not matter
    a = by_call.select(ids, losses=learner, reference_losses=reference)
    assert np.array_equal(a, by_id.select(ids, losses=learner))
    with pytest.raises(ValueError, match="reference_losses not given and 1 ids"):
        by_id.select(np.array(["id1", "unknown"]), losses=[0.0, 0.0])


def test_temperature_sampling_is_seeded_and_favours_high_scores() -> None:
    scores = np.linspace(0, 3, 100)
    zeros = np.zeros(100)

    def picks(seed: int) -> Any:
        sel = LearnabilitySelector(ratio=0.1, temperature=0.5, seed=seed)
        return np.stack([sel.select(np.arange(100), losses=scores, reference_losses=zeros) for _ in range(30)])

    a = picks(0)
    assert np.array_equal(a, picks(0)) and not np.array_equal(a, picks(1))
    assert (a.sum(axis=1) == 10).all()
    assert a[:, 50:].sum() > 4 * a[:, :50].sum()  # higher scores kept far more often
    assert a[:, 50:90].any()  # but not only the top 10: it is sampling, not top-k


def test_learnability_warmup_and_fixed_subset() -> None:
    sel = LearnabilitySelector(ratio=0.25, warmup_samples=8, epoch_size=24, fix_subset_after_epoch=True)
    losses = np.arange(8, dtype=float)
    assert sel.select(np.arange(8), losses=losses, reference_losses=np.zeros(8)).all()
    assert sel.phase is Phase.SELECTING
    sel.select(np.arange(8, 16), losses=losses, reference_losses=np.zeros(8))
    sel.select(np.arange(16, 24), losses=losses, reference_losses=np.zeros(8))
    assert sel.phase is Phase.FIXED
    assert sel.subset().tolist() == [*range(8), 14, 15, 22, 23]
    assert np.flatnonzero(sel.select(np.arange(24))).tolist() == sel.subset().tolist()


def test_learnability_checkpoint_continues_bit_for_bit() -> None:
    x, _ = mixture(9)
    losses = np.random.default_rng(0).gamma(2.0, size=len(x))
    sel = LearnabilitySelector(temperature=0.3, seed=5)
    sel.set_reference_losses([f"s{i:05d}" for i in range(len(x))], losses[::-1].copy())
    state = sel.state_dict()

    def make() -> LearnabilitySelector:
        fresh = LearnabilitySelector(temperature=0.3, seed=5)
        fresh.load_state_dict(state)  # reference losses travel inside the state
        return fresh

    continue_both(make, x, 3, 5, through_bytes, losses=losses)


# --- bad input -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ids", "embeddings", "match"),
    [
        (np.arange(4), np.full((4, 24), np.nan), "embeddings contains NaN"),
        (np.arange(4), np.full((4, 24), np.inf), "embeddings contains NaN or infinite"),
        (np.arange(4), np.ones((4, 7)), "embeddings has dimension 7, expected 24"),
        (np.arange(3), np.ones((4, 24)), r"len\(ids\)=3 does not match len\(embeddings\)=4"),
        (np.ones(4), np.ones((4, 24)), "ids must be"),
        (np.arange(4), None, "embeddings is required"),
    ],
)
def test_prototype_selector_rejects_bad_batches(ids: Any, embeddings: Any, match: str) -> None:
    x, _ = mixture(10)
    sel = proto()
    run(sel, x, 0, 4 * BATCH)
    with pytest.raises(ValueError, match=match):
        sel.select(ids, embeddings)


@pytest.mark.parametrize("ratio", [0.0, -0.1, 1.5, float("nan"), True, "0.2"])
def test_ratio_outside_unit_interval_is_rejected(ratio: Any) -> None:
    with pytest.raises(ValueError, match="ratio must be a number in"):
        proto(ratio=ratio)
    with pytest.raises(ValueError, match="ratio must be a number in"):
        LearnabilitySelector(ratio=ratio)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"warmup_samples": None}, "give warmup_samples, or epoch_size"),
        ({"momentum": 1.0}, "momentum"),
        ({"n_prototypes": 0}, "n_prototypes"),
        ({"epoch_size": 0}, "epoch_size"),
        ({"epsilon": 0.0}, "epsilon"),
        ({"prototypes": np.ones((3, 4))}, "prototypes has 3 rows"),
    ],
)
def test_prototype_config_errors_name_the_field(kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        proto(**kwargs)


def test_learnability_rejects_bad_losses() -> None:
    sel = LearnabilitySelector()
    with pytest.raises(ValueError, match="losses is required"):
        sel.select(np.arange(3))
    with pytest.raises(ValueError, match="losses contains NaN"):
        sel.select(np.arange(3), losses=[1.0, np.nan, 0.0], reference_losses=[0.0] * 3)
    with pytest.raises(ValueError, match=r"reference_losses must have shape \(3,\)"):
        sel.select(np.arange(3), losses=[1.0, 2.0, 0.0], reference_losses=[0.0] * 2)
    with pytest.raises(ValueError, match="temperature"):
        LearnabilitySelector(temperature=-1.0)


# --- real chest X-rays -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cxr_embeddings(shared_data: Path) -> Any:
    """Embeddings of 240 real CXRs (200 paediatric, 40 adult COVID-19): a fixed seeded random projection of
    their 32×32 pixels. Not semantic, but real image statistics (heterogeneous sources, exposure, framing)."""
    pil = pytest.importorskip("PIL.Image")
    paths = sorted((shared_data / "pediatric_pneumonia_kermany" / "images").glob("*.png"))[:200]
    paths += sorted((shared_data / "covid_chestxray_ieee8023" / "images").glob("*.png"))[:40]

    def pixels(path: Path) -> Any:
        with pil.open(path) as im:
            return np.asarray(im.convert("L").resize((32, 32), pil.BILINEAR), dtype=np.float32).ravel() / 255

    x = np.stack([pixels(p) for p in paths])
    x -= x.mean(axis=1, keepdims=True)
    projection = np.random.default_rng(0).normal(size=(x.shape[1], 48)) / np.sqrt(x.shape[1])
    return (x @ projection).astype(np.float32)[np.random.default_rng(1).permutation(len(x))]


def test_real_cxr_epoch_follows_the_rule_and_resumes_bit_for_bit(cxr_embeddings: Any) -> None:
    x = cxr_embeddings

    def make() -> PrototypeSelector:
        return PrototypeSelector(n_prototypes=4, warmup_samples=BATCH, epoch_size=len(x), seed=0)

    original, copy = continue_both(make, x, 2, 2, through_bytes)  # checkpoint after 2 of 4 batches
    assert original.phase is Phase.FIXED and len(original.subset()) < len(x)
    bands = original.last_selection
    assert bands is not None and not bands.keep[bands.bands == Band.OUTLIER.code].any()
    assert bands.keep[bands.bands == Band.TAIL.code].all()
    assert np.array_equal(original.prototypes, copy.prototypes)
