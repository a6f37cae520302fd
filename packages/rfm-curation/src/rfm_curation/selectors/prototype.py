"""CheXficient's online selector: prototypes over the joint embedding, refreshed by Sinkhorn + EMA per batch.

Schedule (BRIEF.md, paper 1): keep every sample during a warm-up (1 % of the first epoch in the paper) while
collecting its embedding; initialise ``n_prototypes`` (32) prototypes by spherical k-means on them; then per
batch: Sinkhorn soft assignments of the batch to the prototypes, an EMA update of the prototypes (momentum
0.9), and the band rule of :func:`rfm_curation.bands.select_bands` on the batch. After the first epoch the
union of kept ids is the training subset and :meth:`PrototypeSelector.select` keeps exactly those ids.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import numpy.typing as npt

from rfm_curation.bands import BandSelection, check_matrix, check_ratio, l2_normalize, select_bands
from rfm_curation.clustering import spherical_kmeans
from rfm_curation.selectors.base import BoolArray, Phase, TrackedSelector, check_count, check_ids, register_selector
from rfm_data.errors import ConfigError

F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]


def joint_embedding(image: Any, text: Any) -> F32:
    """The joint (image ⊕ text) embedding: each half L2-normalised, concatenated, scaled to unit norm.

    Normalising each half first gives both modalities equal weight whatever their encoders' scales.
    """
    img = check_matrix("image", image)
    txt = check_matrix("text", text)
    if len(img) != len(txt):
        raise ValueError(f"image has {len(img)} rows but text has {len(txt)}")
    joint = np.concatenate([l2_normalize(img), l2_normalize(txt)], axis=1)
    return (joint * np.float32(1.0 / math.sqrt(2.0))).astype(np.float32)


def _logsumexp(a: F64, axis: int) -> F64:
    m = a.max(axis=axis, keepdims=True)
    out: F64 = m + np.log(np.exp(a - m).sum(axis=axis, keepdims=True))
    return out


def sinkhorn(scores: Any, epsilon: float = 0.05, n_iters: int = 3) -> F64:
    """Balanced soft assignments of ``n`` samples to ``k`` prototypes (Sinkhorn-Knopp, log domain).

    Alternately rescales ``exp(scores / epsilon)`` so that every prototype receives ``1/k`` of the mass and
    every sample ``1/n``; the log domain keeps small ``epsilon`` from underflowing.

    Args:
        scores: ``(n, k)`` similarities (cosine).
        epsilon: entropic regularisation; smaller is closer to a hard assignment.
        n_iters: number of (column, row) normalisation rounds.

    Returns:
        ``(n, k)`` float64 assignments; each row sums to 1.
    """
    log_q = np.asarray(scores, dtype=np.float64) / epsilon
    n, k = log_q.shape
    for _ in range(n_iters):
        log_q = log_q - _logsumexp(log_q, axis=0) - math.log(k)
        log_q = log_q - _logsumexp(log_q, axis=1) - math.log(n)
    return np.exp(log_q + math.log(n))


def ema_update(prototypes: F32, x: F32, assignments: F64, momentum: float) -> F32:
    """``momentum · old + (1 - momentum) · assignment-weighted batch mean``, re-normalised to unit norm."""
    mass = assignments.sum(axis=0)[:, None]
    means = (assignments.T @ x.astype(np.float64)) / np.maximum(mass, 1e-12)
    updated = momentum * prototypes.astype(np.float64) + (1.0 - momentum) * means
    return l2_normalize(updated)


def _check_fraction(name: str, value: float, low_open: bool = True) -> float:
    ok = (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and (0 < value < 1 if low_open else 0 <= value < 1)
    )
    if not ok:
        raise ConfigError(f"{name} must be a number in {'(0' if low_open else '[0'}, 1), got {value!r}")
    return float(value)


@register_selector("prototype")
class PrototypeSelector(TrackedSelector):
    """CheXficient's online selector (see the module docstring for the schedule).

    Args:
        n_prototypes: number of prototypes K (32 in CheXficient).
        warmup_samples: samples kept unconditionally while their embeddings are collected for k-means;
            defaults to ``ceil(warmup_fraction · epoch_size)``; raised to ``n_prototypes`` if smaller (k-means
            needs a sample per prototype). The warm-up ends at the end of the batch that reaches it.
        epoch_size: samples in one epoch; when given, the subset is fixed automatically once that many
            samples have been seen (otherwise call :meth:`end_epoch`).
        warmup_fraction: the warm-up as a fraction of ``epoch_size`` (0.01 in CheXficient).
        ratio: fraction of each batch's central+peripheral samples kept, in ``(0, 1]`` (0.2 in CheXficient).
        power: budget split across clusters ∝ ``n**power`` (0.5).
        momentum: EMA momentum of the prototypes (0.9).
        epsilon: Sinkhorn entropic regularisation.
        sinkhorn_iters: Sinkhorn normalisation rounds.
        kmeans_iters: k-means iterations for the initial prototypes.
        seed: seeds k-means and the farthest-point start points.
        prototypes: optional ``(K, d)`` initial prototypes (e.g. from an offline k-means); skips the warm-up.
    """

    kind = "prototype"

    def __init__(
        self,
        n_prototypes: int = 32,
        warmup_samples: int | None = None,
        epoch_size: int | None = None,
        warmup_fraction: float = 0.01,
        ratio: float = 0.2,
        power: float = 0.5,
        momentum: float = 0.9,
        epsilon: float = 0.05,
        sinkhorn_iters: int = 3,
        kmeans_iters: int = 20,
        seed: int = 0,
        prototypes: Any = None,
    ) -> None:
        super().__init__(epoch_size)
        self.n_prototypes = int(check_count("n_prototypes", n_prototypes, minimum=1) or 1)
        self.ratio = check_ratio(ratio)
        self.power, self.momentum = float(power), _check_fraction("momentum", momentum, low_open=False)
        if not epsilon > 0:
            raise ConfigError(f"epsilon must be > 0, got {epsilon!r}")
        self.epsilon = float(epsilon)
        self.sinkhorn_iters = int(check_count("sinkhorn_iters", sinkhorn_iters, minimum=1) or 1)
        self.kmeans_iters = int(check_count("kmeans_iters", kmeans_iters, minimum=1) or 1)
        self.seed = int(check_count("seed", seed) or 0)
        self.warmup_samples = self._resolve_warmup(warmup_samples, warmup_fraction, prototypes is not None)
        self._prototypes: F32 | None = None
        self._dim: int | None = None
        self._buffer: list[F32] = []
        self._rng = np.random.default_rng(self.seed)
        self.last_selection: BandSelection | None = None  # the band decisions of the latest batch, for reports
        if prototypes is not None:
            self._prototypes = l2_normalize(check_matrix("prototypes", prototypes))
            if len(self._prototypes) != self.n_prototypes:
                raise ConfigError(f"prototypes has {len(self._prototypes)} rows, n_prototypes is {self.n_prototypes}")
            self._dim = self._prototypes.shape[1]
        else:
            self._phase = Phase.WARMUP

    def _resolve_warmup(self, warmup_samples: int | None, fraction: float, have_prototypes: bool) -> int:
        if have_prototypes:
            return 0
        if warmup_samples is None:
            if self.epoch_size is None:
                raise ConfigError("give warmup_samples, or epoch_size (the warm-up is warmup_fraction of it)")
            warmup_samples = math.ceil(_check_fraction("warmup_fraction", fraction) * self.epoch_size)
        count = int(check_count("warmup_samples", warmup_samples, minimum=1) or 1)
        # k-means needs at least one sample per prototype.
        return max(count, self.n_prototypes)

    @property
    def config(self) -> dict[str, Any]:
        """The resolved configuration (saved in the state and checked when loading it)."""
        keys = (
            "n_prototypes",
            "warmup_samples",
            "epoch_size",
            "ratio",
            "power",
            "momentum",
            "epsilon",
            "sinkhorn_iters",
            "kmeans_iters",
            "seed",
        )
        return {k: getattr(self, k) for k in keys}

    @property
    def prototypes(self) -> F32 | None:
        """A copy of the current ``(K, d)`` unit-norm prototypes (``None`` during the warm-up)."""
        return None if self._prototypes is None else self._prototypes.copy()

    def select(self, ids: Any, embeddings: Any = None, losses: Any = None) -> BoolArray:
        """Keep mask for one batch of joint embeddings (``losses`` is ignored by this selector).

        Args:
            ids: ``(n,)`` sample ids (ints or strings), aligned with ``embeddings``.
            embeddings: ``(n, d)`` finite joint (image ⊕ text) embeddings, see :func:`joint_embedding`.
            losses: unused; accepted for the :class:`~rfm_curation.selectors.base.Selector` protocol.

        Returns:
            ``(n,)`` bool mask: all True in the warm-up, the band rule while selecting, subset membership
            once the subset is fixed.
        """
        if embeddings is None:
            raise ValueError("embeddings is required by the prototype selector")
        x = check_matrix("embeddings", embeddings, dim=self._dim)
        id_list = check_ids(ids, len(x))
        if self._phase is Phase.FIXED:
            return self._in_subset(id_list)
        self._dim = x.shape[1]
        x = l2_normalize(x)
        if self._phase is Phase.WARMUP:
            self._buffer.append(x)
            keep = self._record(id_list, np.ones(len(x), dtype=bool))
            if self._seen >= self.warmup_samples:
                self._start_selecting()
        else:
            keep = self._record(id_list, self._select_batch(x))
        if self.epoch_size is not None and self._seen >= self.epoch_size:
            self.end_epoch()
        return keep

    def _start_selecting(self) -> None:
        warm = np.concatenate(self._buffer, axis=0)
        self._prototypes = l2_normalize(
            spherical_kmeans(warm, self.n_prototypes, seed=self.seed, niter=self.kmeans_iters)
        )
        self._buffer = []
        self._phase = Phase.SELECTING

    def _select_batch(self, x: F32) -> BoolArray:
        assert self._prototypes is not None  # SELECTING always has prototypes
        # Prototypes follow the data first (as the brief orders it), then the batch is judged against them.
        q = sinkhorn(x @ self._prototypes.T, self.epsilon, self.sinkhorn_iters)
        self._prototypes = ema_update(self._prototypes, x, q, self.momentum)
        self.last_selection = select_bands(x, self._prototypes, self.ratio, self.power, seed=self._rng)
        return self.last_selection.keep.copy()

    def end_epoch(self) -> None:
        """Fix the subset: from now on :meth:`select` keeps exactly the ids kept so far.

        Called automatically once ``epoch_size`` samples were seen; a trainer without an ``epoch_size``
        calls it at the end of its first epoch. An epoch spent entirely in warm-up keeps everything seen.
        """
        self._epoch += 1
        self._phase = Phase.FIXED
        self._buffer = []

    def state_dict(self) -> dict[str, Any]:
        state = self._base_state(self.config)
        dim = self._dim or 0
        state["dim"] = self._dim
        state["prototypes"] = (
            self._prototypes.copy() if self._prototypes is not None else np.zeros((0, dim), np.float32)
        )
        state["has_prototypes"] = self._prototypes is not None
        state["warmup_buffer"] = (
            np.concatenate(self._buffer, axis=0) if self._buffer else np.zeros((0, dim), np.float32)
        )
        state["rng_state"] = self._rng.bit_generator.state
        return state

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self._load_base_state(state, self.config)
        self._dim = None if state["dim"] is None else int(state["dim"])
        protos = np.array(state["prototypes"], dtype=np.float32)
        self._prototypes = protos if state["has_prototypes"] else None
        buffer = np.array(state["warmup_buffer"], dtype=np.float32)
        self._buffer = [buffer] if len(buffer) else []
        self._rng = np.random.default_rng(self.seed)
        self._rng.bit_generator.state = dict(state["rng_state"])
        self.last_selection = None
