"""MONAI-style transforms for radiographs: array transforms plus ``...d`` dict wrappers taking ``keys``.

Array transforms take a float tensor ``(C, H, W)`` or a batch ``(B, C, H, W)``; random ones draw independent
parameters per sample of a batch, so the same object augments one item in a DataLoader worker or a whole
collated batch (in the main process or on a GPU).

**One resample per image.** Every geometric transform describes itself as a ``(N, 3, 3)`` matrix that maps
*output* normalised coordinates (``align_corners=False``: -1 and +1 are the outer pixel edges) to *input*
normalised coordinates, plus an output size. :class:`Compose` multiplies the matrices of consecutive fusable
geometric transforms and resamples once with a single ``grid_sample``: pad-to-square + random resized crop +
rotation/translation cost one bilinear interpolation instead of three (and blur less). A transform that is
not fused uses its exact path (``F.pad`` / slicing / antialiased ``F.interpolate``).

**Randomness** only from explicit seeds: each random transform owns a ``torch.Generator`` seeded at
construction (``seed=0``) and re-seeded with :meth:`Randomizable.set_random_state`; :class:`Compose` seeds its
children with seeds derived from its own. The loaders in :mod:`rfm_data.loader` re-seed the transform per
sample from ``(seed, epoch, sample position)``, so augmentation does not depend on worker count and resumes
exactly.

No horizontal flip by default anywhere: laterality (heart on the patient's left, side markers) is part of
what a chest X-ray means.
"""

from __future__ import annotations

import functools
import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeAlias

import numpy as np

from rfm_data.registry import Registry

try:
    import torch
    import torch.nn.functional as nnf
except ImportError as err:  # the core package stays importable without torch
    raise ImportError('rfm_data.transforms needs torch: pip install "rfm-data[torch]"') from err

Tensor: TypeAlias = torch.Tensor
Size2: TypeAlias = tuple[int, int]
Matrices: TypeAlias = np.ndarray  # (N, 3, 3) float64, output-normalised → input-normalised coordinates
Plan: TypeAlias = tuple[Matrices, Size2]
Item: TypeAlias = dict[str, Any]
KeysLike: TypeAlias = str | Sequence[str]
Range: TypeAlias = tuple[float, float]

CXR_MEAN = 0.5
CXR_STD = 0.25

__all__ = [
    "CXR_MEAN", "CXR_STD", "CenterCrop", "CenterCropd", "Compose", "GeometricDict", "GeometricTransform",
    "MapTransform", "Normalize", "Normalized", "RandomAffine", "RandomAffined", "RandomIntensity",
    "RandomIntensityd", "RandomResizedCrop", "RandomResizedCropd", "Randomizable", "Resize", "Resized",
    "SquarePad", "SquarePadd", "Transform", "affine_matrix", "create_transform", "cxr_batch_item_transform",
    "cxr_eval_transform", "cxr_train_transform", "fuse", "mix_seed", "presets", "warp",
]


# ------------------------------------------------------------------------------------------------ helpers
def _as_batch(img: Tensor) -> tuple[Tensor, bool]:
    if img.ndim == 4:
        return img, True
    if img.ndim == 3:
        return img.unsqueeze(0), False
    raise ValueError(f"expected a (C, H, W) image or a (B, C, H, W) batch, got shape {tuple(img.shape)}")


def _unbatch(img: Tensor, batched: bool) -> Tensor:
    return img if batched else img.squeeze(0)


def _size(img: Tensor) -> Size2:
    return int(img.shape[-2]), int(img.shape[-1])


def _count(img: Tensor) -> int:
    return int(img.shape[0]) if img.ndim == 4 else 1


def _pair(value: float | Sequence[float]) -> tuple[float, float]:
    if isinstance(value, int | float):
        return float(value), float(value)
    lo, hi = value
    return float(lo), float(hi)


def _symmetric(value: float | Sequence[float]) -> tuple[float, float]:
    """``d`` → ``(-d, d)``; a pair stays as it is."""
    if isinstance(value, int | float):
        return -float(value), float(value)
    return _pair(value)


def _per_key(mode: str | Sequence[str | None] | None, n: int) -> tuple[str | None, ...]:
    if mode is None or isinstance(mode, str):
        return (mode,) * n
    return tuple(mode)


def _size2(size: int | Sequence[int]) -> Size2:
    if isinstance(size, int):
        return size, size
    h, w = size
    return int(h), int(w)


def mix_seed(*parts: int) -> int:
    """A well-spread 63-bit seed from integers (splitmix64 steps): seeds for children, samples, epochs."""
    x = 0x9E3779B97F4A7C15
    for part in parts:
        x = (x ^ (int(part) & 0xFFFFFFFFFFFFFFFF)) * 0xBF58476D1CE4E5B9 & 0xFFFFFFFFFFFFFFFF
        x = (x ^ (x >> 31)) * 0x94D049BB133111EB & 0xFFFFFFFFFFFFFFFF
        x ^= x >> 29
    return x & 0x7FFFFFFFFFFFFFFF


def _crop_matrix(in_size: Size2, cw: float, ch: float, cx: float, cy: float) -> list[list[float]]:
    """Sample the ``cw x ch`` pixel region centred at ``(cx, cy)`` (pixels from the image centre)."""
    h, w = in_size
    return [[cw / w, 0.0, 2 * cx / w], [0.0, ch / h, 2 * cy / h], [0.0, 0.0, 1.0]]


@functools.lru_cache(maxsize=16)
def _pixel_centres(n: int) -> np.ndarray:
    centres = (np.arange(n, dtype=np.float32) * 2 + 1) / n - 1
    centres.setflags(write=False)
    return centres


def _grid(m: Matrices, out: Size2) -> Tensor:
    """``affine_grid`` equivalent, ``(N, H, W, 2)``, built with numpy broadcasting in a planar
    ``(N, 2, H, W)`` buffer (contiguous writes), returned as a permuted view ``grid_sample`` reads as is.
    On one CPU core this is ~10x faster than ``F.affine_grid`` (a poorly shaped (H*W, 3) @ (3, 2) matmul)
    and ~1.7x faster than writing the interleaved layout."""
    h, w = out
    xs, ys = _pixel_centres(w), _pixel_centres(h)
    m32 = m.astype(np.float32)
    grid = np.empty((len(m), 2, h, w), np.float32)
    for k in range(2):  # k = 0: input x, k = 1: input y
        rows = ys[None, :] * m32[:, k, 1:2] + m32[:, k, 2:3]
        np.add(rows[:, :, None], (xs[None, :] * m32[:, k, 0:1])[:, None, :], out=grid[:, k])
    return torch.from_numpy(grid).permute(0, 2, 3, 1)


_EYE = np.eye(3)


def _is_identity(m: Matrices, in_size: Size2, out: Size2) -> bool:
    return in_size == out and float(np.abs(m - _EYE).max()) < 1e-7


def warp(img: Tensor, matrices: Matrices, out_size: Size2, mode: str = "bilinear") -> Tensor:
    """Resample ``img`` ``(C, H, W)`` / ``(B, C, H, W)`` to ``out_size`` through ``matrices`` (one per sample,
    or one for all); outside the input is 0 (black before normalisation)."""
    x, batched = _as_batch(img)
    if _is_identity(matrices, _size(x), out_size):
        return img
    grid = _grid(matrices, out_size)
    if grid.shape[0] != x.shape[0]:
        grid = grid.expand(x.shape[0], -1, -1, -1)
    x = x if x.is_floating_point() else x.float()
    out = nnf.grid_sample(x, grid.to(x.device, x.dtype), mode=mode, padding_mode="zeros", align_corners=False)
    return _unbatch(out, batched)


def affine_matrix(size: Size2, degrees: float, dx: float = 0.0, dy: float = 0.0, zoom: float = 1.0,
                  flip: bool = False) -> np.ndarray:
    """The ``(3, 3)`` matrix of a rotation about the centre (degrees, counter-clockwise on screen), then a
    zoom, then a shift of ``(dx, dy)`` pixels (+x right, +y down), after an optional horizontal flip.

    The forward map (input → output pixels, from the centre, y down) is ``u_out = zoom * R * F * u_in + t``
    with ``R = [[c, s], [-s, c]]``; grid_sample needs its inverse ``u_in = F * R^T * (u_out - t) / zoom``,
    written out here already conjugated by the normalisation ``diag(w / 2, h / 2)``. Scalar math: per sample
    it is ~10x cheaper than the same expressions on one-element numpy arrays.
    """
    h, w = size
    theta = math.radians(degrees)
    c, s = math.cos(theta) / zoom, math.sin(theta) / zoom
    f = -1.0 if flip else 1.0
    return np.array([[f * c, -f * s * h / w, -2 * f * (c * dx - s * dy) / w],
                     [s * w / h, c, -2 * (s * dx + c * dy) / h],
                     [0.0, 0.0, 1.0]])


# --------------------------------------------------------------------------------------------- base types
class Transform(ABC):
    """An array transform: tensor ``(C, H, W)`` or ``(B, C, H, W)`` → tensor."""

    @abstractmethod
    def __call__(self, img: Tensor) -> Tensor: ...


class Randomizable:
    """Owns a ``torch.Generator``; like MONAI's ``Randomizable`` but torch-native and seeded by default."""

    generator: torch.Generator

    def __init__(self, seed: int = 0) -> None:
        self.generator = torch.Generator().manual_seed(seed)
        self._owns_generator = True

    def set_random_state(self, seed: int | None = None,
                         generator: torch.Generator | None = None) -> Randomizable:
        """Re-seed with ``seed``, or draw from ``generator`` (shared, not copied). Returns ``self``."""
        if generator is not None:
            self.generator, self._owns_generator = generator, False
        elif seed is not None:
            if not self._owns_generator:  # never re-seed a generator the caller shares with others
                self.generator, self._owns_generator = torch.Generator(), True
            self.generator.manual_seed(seed)
        else:
            raise ValueError("set_random_state needs a seed or a generator")
        return self

    def _uniform(self, n: int, ranges: Sequence[Range]) -> list[list[float]]:
        """``n`` rows of uniform draws in ``ranges``: one torch call for all of them (per-call overhead
        dominates at these sizes), Python floats for the per-sample math that follows."""
        u = torch.rand((n, len(ranges)), generator=self.generator, dtype=torch.float64).tolist()
        return [[lo + (hi - lo) * v for (lo, hi), v in zip(ranges, row, strict=True)] for row in u]


def _seed_children(children: Sequence[object], seed: int) -> None:
    for i, child in enumerate(children):
        if isinstance(child, Randomizable | Compose | MapTransform):
            child.set_random_state(mix_seed(seed, i))


class GeometricTransform(Transform):
    """A spatial transform described by a matrix (see the module docstring), fusable by :class:`Compose`.

    ``mode`` is the interpolation; ``None`` marks an exact transform (pad, crop) that adopts the mode of the
    transforms it is fused with.
    """

    fusable = True

    def __init__(self, mode: str | None = "bilinear") -> None:
        self.mode = mode

    @abstractmethod
    def plan(self, n: int, size: Size2) -> Plan:
        """Matrices for ``n`` samples of spatial ``size`` and the output size (draws random parameters)."""

    def apply(self, img: Tensor, matrices: Matrices, out_size: Size2, mode: str) -> Tensor:
        """Apply a plan; subclasses with an exact path (pad, crop, antialiased resize) override this."""
        return warp(img, matrices, out_size, mode)

    def __call__(self, img: Tensor) -> Tensor:
        matrices, out = self.plan(_count(img), _size(img))
        return self.apply(img, matrices, out, self.mode or "bilinear")


# ------------------------------------------------------------------------------------ geometric transforms
class Resize(GeometricTransform):
    """Resize to ``spatial_size``: an int sets the long side (aspect kept), ``(H, W)`` sets both.

    With ``antialias=True`` (default) it runs alone through antialiased ``F.interpolate`` (right for large
    downscales, e.g. 2,048 → 224) and is not fused; ``antialias=False`` makes it free inside a fused chain.
    """

    def __init__(self, spatial_size: int | Sequence[int], mode: str = "bilinear",
                 antialias: bool = True) -> None:
        super().__init__(mode)
        self.spatial_size = spatial_size
        self.antialias = antialias
        self.fusable = not antialias

    def output_size(self, size: Size2) -> Size2:
        """The size an input of ``size`` is resized to."""
        if not isinstance(self.spatial_size, int):
            return _size2(self.spatial_size)
        h, w = size
        scale = self.spatial_size / max(h, w)
        return max(1, round(h * scale)), max(1, round(w * scale))

    def plan(self, n: int, size: Size2) -> Plan:
        return np.broadcast_to(_EYE, (n, 3, 3)), self.output_size(size)

    def apply(self, img: Tensor, matrices: Matrices, out_size: Size2, mode: str) -> Tensor:
        x, batched = _as_batch(img)
        if _size(x) == out_size:
            return img
        x = x if x.is_floating_point() else x.float()
        smooth = mode in ("bilinear", "bicubic")
        out = nnf.interpolate(x, size=out_size, mode=mode if smooth else "nearest-exact",
                              antialias=self.antialias and smooth, align_corners=False if smooth else None)
        return _unbatch(out, batched)


class CenterCrop(GeometricTransform):
    """Crop the centre ``size`` (int or ``(H, W)``), padding with 0 where the image is smaller."""

    def __init__(self, size: int | Sequence[int]) -> None:
        super().__init__(None)
        self.size = size

    def output_size(self, size: Size2) -> Size2:
        return _size2(self.size)

    @staticmethod
    def _offset(have: int, want: int) -> int:
        """Top/left of the output window in input pixels (negative = padding)."""
        return (have - want) // 2 if have >= want else -((want - have) // 2)

    def plan(self, n: int, size: Size2) -> Plan:
        out = self.output_size(size)
        return _window_matrices(n, size, out), out

    def apply(self, img: Tensor, matrices: Matrices, out_size: Size2, mode: str) -> Tensor:
        (h, w), (oh, ow) = _size(img), out_size
        top, left = self._offset(h, oh), self._offset(w, ow)
        pads = (max(0, -left), max(0, left + ow - w), max(0, -top), max(0, top + oh - h))
        x = nnf.pad(img, pads) if any(pads) else img
        top, left = top + pads[2], left + pads[0]
        return x[..., top:top + oh, left:left + ow]


@functools.lru_cache(maxsize=64)
def _window_matrices(n: int, size: Size2, out: Size2) -> Matrices:
    """Matrices of a centred crop / pad window (cached: deterministic, and planned once per item)."""
    (h, w), (oh, ow) = size, out
    top, left = CenterCrop._offset(h, oh), CenterCrop._offset(w, ow)
    # Centre of the window relative to the image centre, in pixels: integer offsets keep sampling on pixel
    # centres, so a fused chain of crops and pads reproduces the exact path.
    one = _crop_matrix(size, float(ow), float(oh), left + ow / 2 - w / 2, top + oh / 2 - h / 2)
    m = np.array([one] * n)
    m.setflags(write=False)
    return m


class SquarePad(CenterCrop):
    """Pad the short side with 0 (black) so the image is square; anatomy is never cut or distorted."""

    def __init__(self) -> None:
        super().__init__(0)

    def output_size(self, size: Size2) -> Size2:
        side = max(size)
        return side, side


class RandomResizedCrop(Randomizable, GeometricTransform):
    """Crop a random region (area fraction ``scale``, aspect ``ratio`` log-uniform) and resize it to ``size``.

    Width and height are clipped to the image instead of re-drawn (torchvision retries up to 10 times), so the
    draw is one vectorised call per batch; the clipping only matters for extreme aspect ratios.
    """

    def __init__(self, size: int | Sequence[int], scale: Range = (0.7, 1.0), ratio: Range = (3 / 4, 4 / 3),
                 mode: str = "bilinear", seed: int = 0) -> None:
        Randomizable.__init__(self, seed)
        GeometricTransform.__init__(self, mode)
        self.size, self.scale, self.ratio = _size2(size), scale, ratio

    def plan(self, n: int, size: Size2) -> Plan:
        h, w = size
        ratios = (math.log(self.ratio[0]), math.log(self.ratio[1]))
        out = []
        for area, log_r, u, v in self._uniform(n, [self.scale, ratios, (-1.0, 1.0), (-1.0, 1.0)]):
            r = math.exp(log_r)
            cw, ch = min(math.sqrt(area * h * w * r), w), min(math.sqrt(area * h * w / r), h)
            out.append(_crop_matrix(size, cw, ch, u * (w - cw) / 2, v * (h - ch) / 2))
        return np.array(out), self.size


class RandomAffine(Randomizable, GeometricTransform):
    """Random rotation about the centre, translation, zoom and (off by default) horizontal flip.

    Args:
        degrees: rotation range; a number ``d`` means ``(-d, d)``. Positive is counter-clockwise on screen.
        translate: shift range as a fraction of the size; a number ``t`` means ``±t`` on both axes.
        scale: zoom range (``> 1`` enlarges the content).
        flip_prob: probability of a horizontal flip. Keep 0 for chest X-rays: laterality carries meaning.
        mode: interpolation (``bilinear`` for images, ``nearest`` for label masks).
        seed: initial seed of the generator.
    """

    def __init__(self, degrees: float | Range = 10.0, translate: float | Range = 0.0,
                 scale: Range = (1.0, 1.0), flip_prob: float = 0.0, mode: str = "bilinear",
                 seed: int = 0) -> None:
        Randomizable.__init__(self, seed)
        GeometricTransform.__init__(self, mode)
        self.degrees = _symmetric(degrees)
        self.translate = _pair(translate)
        self.scale, self.flip_prob = _pair(scale), flip_prob

    def plan(self, n: int, size: Size2) -> Plan:
        h, w = size
        (fx, fy), (s0, s1) = self.translate, self.scale
        ranges = [self.degrees, (-fx, fx), (-fy, fy), (math.log(s0), math.log(s1)), (0.0, 1.0)]
        draws = self._uniform(n, ranges)
        return np.stack([affine_matrix(size, deg, tx * w, ty * h, math.exp(log_zoom), flip < self.flip_prob)
                         for deg, tx, ty, log_zoom, flip in draws]), size


# ------------------------------------------------------------------------------------ intensity transforms
def _pow(x: Tensor, exponent: float) -> Tensor:
    """``x ** exponent`` for ``x >= 0``. On CPU as ``exp2(exponent * log2(x))`` in numpy, whose SIMD float32
    ``log2`` / ``exp2`` are ~2.5x faster than ``np.power`` and ~4x faster than ``torch.pow`` here."""
    if x.device.type == "cpu" and x.dtype == torch.float32 and not x.requires_grad:
        with np.errstate(divide="ignore"):  # log2(0) = -inf, and exp2(-inf) = 0 as it should
            y = np.log2(x.contiguous().numpy())
        y *= np.float32(exponent)
        return torch.from_numpy(np.exp2(y, out=y))
    return x.pow(exponent)


class RandomIntensity(Randomizable, Transform):
    """Random gamma, contrast (about the image mean) and brightness for images in [0, 1]; output clamped.

    Args:
        brightness: additive shift range ``±brightness``.
        contrast: multiplicative range ``1 ± contrast`` about the per-image mean.
        gamma: exponent range (log-uniform); ``(1, 1)`` disables it (``pow`` is the costliest op here).
        seed: initial seed of the generator.
    """

    def __init__(self, brightness: float = 0.1, contrast: float = 0.1, gamma: Range = (0.8, 1.25),
                 seed: int = 0) -> None:
        super().__init__(seed)
        self.brightness, self.contrast, self.gamma = brightness, contrast, _pair(gamma)

    def draw(self, n: int) -> np.ndarray:
        """``(n, 3)`` parameters: gamma, contrast factor, brightness shift."""
        g0, g1 = self.gamma
        ranges = [(math.log(g0), math.log(g1)), (1 - self.contrast, 1 + self.contrast),
                  (-self.brightness, self.brightness)]
        params = np.array(self._uniform(n, ranges))
        params[:, 0] = np.exp(params[:, 0])
        return params

    def apply(self, img: Tensor, params: np.ndarray) -> Tensor:
        """Apply drawn ``params`` (one row per sample)."""
        x, batched = _as_batch(img)
        if x.shape[0] == 1:  # python scalars: broadcasting a (1, 1, 1, 1) tensor costs more than the op
            g, c, b = (float(v) for v in params[0])
            y = _pow(x, g) if g != 1.0 else x.clone()
            mean = float(y.mean()) if c != 1.0 else 0.0
            y.mul_(c).add_(mean * (1 - c) + b)
        else:
            g_t, c_t, b_t = (torch.as_tensor(params[:, k], dtype=x.dtype).view(-1, 1, 1, 1).to(x.device)
                             for k in range(3))
            y = x.pow(g_t)
            means = y.mean(dim=(1, 2, 3), keepdim=True)
            y = y * c_t + (means * (1 - c_t) + b_t)
        return _unbatch(y.clamp_(0.0, 1.0), batched)

    def __call__(self, img: Tensor) -> Tensor:
        return self.apply(img, self.draw(_count(img)))


class Normalize(Transform):
    """``(x - mean) / std``; scalars, or one value per channel."""

    def __init__(self, mean: float | Sequence[float] = CXR_MEAN,
                 std: float | Sequence[float] = CXR_STD) -> None:
        self.mean, self.std = mean, std

    def __call__(self, img: Tensor) -> Tensor:
        if isinstance(self.mean, int | float) and isinstance(self.std, int | float):
            return (img - self.mean).div_(self.std)
        mean = torch.as_tensor(self.mean, dtype=img.dtype, device=img.device).view(-1, 1, 1)
        std = torch.as_tensor(self.std, dtype=img.dtype, device=img.device).view(-1, 1, 1)
        return (img - mean) / std


# ------------------------------------------------------------------------------------------ dict wrappers
class MapTransform:
    """Base of the dict wrappers: applies to ``keys`` of an item (a missing key raises unless allowed)."""

    def __init__(self, keys: KeysLike, allow_missing_keys: bool = False) -> None:
        self.keys: tuple[str, ...] = (keys,) if isinstance(keys, str) else tuple(keys)
        self.allow_missing_keys = allow_missing_keys

    def present(self, item: Mapping[str, Any]) -> list[str]:
        """The keys to transform in ``item``; a missing key raises ``KeyError`` unless allowed."""
        missing = [k for k in self.keys if k not in item]
        if missing and not self.allow_missing_keys:
            raise KeyError(f"{type(self).__name__}: keys {missing} not in item (has {sorted(item)})")
        return [k for k in self.keys if k in item]

    def set_random_state(self, seed: int | None = None,
                         generator: torch.Generator | None = None) -> MapTransform:
        """Forward to the wrapped transform when it is random; a no-op otherwise."""
        inner = getattr(self, "transform", None)
        if isinstance(inner, Randomizable):
            inner.set_random_state(seed, generator)
        return self

    def __call__(self, item: Mapping[str, Any]) -> Item:
        raise NotImplementedError


class GeometricDict(MapTransform):
    """Applies one geometric ``transform`` with the same parameters to every key (image and its masks).

    ``mode`` is one interpolation for all keys or one per key (``"nearest"`` for label masks); ``None`` for
    exact transforms (pad, crop), which adopt the modes of the transforms they are fused with.
    """

    def __init__(self, keys: KeysLike, transform: GeometricTransform,
                 mode: str | Sequence[str | None] | None = "bilinear",
                 allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        self.transform = transform
        self.modes = _per_key(mode, len(self.keys))
        if len(self.modes) != len(self.keys):
            raise ValueError(f"{len(self.modes)} modes for {len(self.keys)} keys")

    def __call__(self, item: Mapping[str, Any]) -> Item:
        return _apply_plan_to_keys(self, item, [self.transform])


def _apply_plan_to_keys(wrapper: GeometricDict | _FusedWarpd, item: Mapping[str, Any],
                        chain: Sequence[GeometricTransform]) -> Item:
    out = dict(item)
    keys = wrapper.present(item)
    if not keys:
        return out
    sizes = {_size(item[k]) for k in keys}
    if len(sizes) > 1:
        raise ValueError(f"keys {keys} have different spatial sizes {sorted(sizes)}: one plan cannot fit all")
    matrices, size = _plan_chain(chain, _count(item[keys[0]]), sizes.pop())
    mode_of = {k: m or "bilinear" for k, m in zip(wrapper.keys, wrapper.modes, strict=True)}
    for key in keys:
        if len(chain) == 1:
            out[key] = chain[0].apply(item[key], matrices, size, mode_of[key])
        else:
            out[key] = warp(item[key], matrices, size, mode_of[key])
    return out


class Resized(GeometricDict):
    """Dict wrapper of :class:`Resize`."""

    def __init__(self, keys: KeysLike, spatial_size: int | Sequence[int],
                 mode: str | Sequence[str] = "bilinear", antialias: bool = True,
                 allow_missing_keys: bool = False) -> None:
        super().__init__(keys, Resize(spatial_size, antialias=antialias), mode, allow_missing_keys)


class CenterCropd(GeometricDict):
    """Dict wrapper of :class:`CenterCrop`."""

    def __init__(self, keys: KeysLike, size: int | Sequence[int], allow_missing_keys: bool = False) -> None:
        super().__init__(keys, CenterCrop(size), None, allow_missing_keys)


class SquarePadd(GeometricDict):
    """Dict wrapper of :class:`SquarePad`."""

    def __init__(self, keys: KeysLike, allow_missing_keys: bool = False) -> None:
        super().__init__(keys, SquarePad(), None, allow_missing_keys)


class RandomResizedCropd(GeometricDict):
    """Dict wrapper of :class:`RandomResizedCrop` (one draw shared by all keys)."""

    def __init__(self, keys: KeysLike, size: int | Sequence[int], scale: Range = (0.7, 1.0),
                 ratio: Range = (3 / 4, 4 / 3), mode: str | Sequence[str] = "bilinear", seed: int = 0,
                 allow_missing_keys: bool = False) -> None:
        super().__init__(keys, RandomResizedCrop(size, scale, ratio, seed=seed), mode, allow_missing_keys)


class RandomAffined(GeometricDict):
    """Dict wrapper of :class:`RandomAffine` (one draw shared by all keys)."""

    def __init__(self, keys: KeysLike, degrees: float | Range = 10.0, translate: float | Range = 0.0,
                 scale: Range = (1.0, 1.0), flip_prob: float = 0.0, mode: str | Sequence[str] = "bilinear",
                 seed: int = 0, allow_missing_keys: bool = False) -> None:
        inner = RandomAffine(degrees, translate, scale, flip_prob, seed=seed)
        super().__init__(keys, inner, mode, allow_missing_keys)


class RandomIntensityd(MapTransform):
    """Dict wrapper of :class:`RandomIntensity` (one draw shared by all keys)."""

    def __init__(self, keys: KeysLike, brightness: float = 0.1, contrast: float = 0.1,
                 gamma: Range = (0.8, 1.25), seed: int = 0, allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        self.transform = RandomIntensity(brightness, contrast, gamma, seed=seed)

    def __call__(self, item: Mapping[str, Any]) -> Item:
        out, keys = dict(item), self.present(item)
        if keys:
            params = self.transform.draw(_count(item[keys[0]]))
            for key in keys:
                out[key] = self.transform.apply(item[key], params)
        return out


class Normalized(MapTransform):
    """Dict wrapper of :class:`Normalize`."""

    def __init__(self, keys: KeysLike, mean: float | Sequence[float] = CXR_MEAN,
                 std: float | Sequence[float] = CXR_STD, allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        self.transform = Normalize(mean, std)

    def __call__(self, item: Mapping[str, Any]) -> Item:
        out = dict(item)
        for key in self.present(item):
            out[key] = self.transform(item[key])
        return out


# ------------------------------------------------------------------------------------- compose and fusion
def _plan_chain(chain: Sequence[GeometricTransform], n: int, size: Size2) -> Plan:
    total: Matrices | None = None
    for t in chain:
        matrices, size = t.plan(n, size)
        total = matrices if total is None else total @ matrices
    assert total is not None
    return total, size


class _FusedWarp(Transform):
    """Consecutive array geometric transforms resampled once."""

    def __init__(self, chain: Sequence[GeometricTransform]) -> None:
        modes = _merge_modes([(t.mode,) for t in chain])
        assert modes is not None
        self.chain, self.mode = list(chain), modes[0] or "bilinear"

    def __call__(self, img: Tensor) -> Tensor:
        matrices, size = _plan_chain(self.chain, _count(img), _size(img))
        return warp(img, matrices, size, self.mode)


class _FusedWarpd(MapTransform):
    """Consecutive geometric dict wrappers over the same keys, resampled once."""

    def __init__(self, parts: Sequence[GeometricDict]) -> None:
        super().__init__(parts[0].keys, parts[0].allow_missing_keys)
        modes = _merge_modes([p.modes for p in parts])
        assert modes is not None
        self.modes, self.chain = modes, [p.transform for p in parts]

    def __call__(self, item: Mapping[str, Any]) -> Item:
        return _apply_plan_to_keys(self, item, self.chain)


def _merge_modes(per_transform: Sequence[tuple[str | None, ...]]) -> tuple[str | None, ...] | None:
    """Per-key interpolation of a fused run; ``None`` when two transforms ask for different ones."""
    merged: list[str | None] = []
    for modes in zip(*per_transform, strict=True):
        wanted = {m for m in modes if m is not None}
        if len(wanted) > 1:
            return None
        merged.append(wanted.pop() if wanted else None)
    return tuple(merged)


def _fusion_key(t: object) -> tuple[object, ...] | None:
    """Transforms with equal keys may be fused (if their modes agree); ``None`` = not fusable."""
    if isinstance(t, GeometricTransform) and t.fusable:
        return ("array",)
    if isinstance(t, GeometricDict) and t.transform.fusable:
        return ("dict", t.keys, t.allow_missing_keys)
    return None


def _modes_of(t: Any) -> tuple[str | None, ...]:
    return (t.mode,) if isinstance(t, GeometricTransform) else tuple(t.modes)


def _joins(run: Sequence[Any], t: Any) -> bool:
    if _fusion_key(run[-1]) != _fusion_key(t):
        return False
    return _merge_modes([*(_modes_of(r) for r in run), _modes_of(t)]) is not None


def _fuse_run(run: list[Any]) -> Any:
    if len(run) == 1:
        return run[0]  # alone, a transform keeps its exact (non-resampling) path
    return _FusedWarp(run) if isinstance(run[0], GeometricTransform) else _FusedWarpd(run)


def fuse(transforms: Sequence[Any]) -> list[Any]:
    """Group consecutive fusable geometric transforms into single-resample stages."""
    stages: list[Any] = []
    run: list[Any] = []
    for t in transforms:
        if run and (_fusion_key(t) is None or not _joins(run, t)):
            stages.append(_fuse_run(run))
            run = []
        if _fusion_key(t) is None:
            stages.append(t)
        else:
            run.append(t)
    if run:
        stages.append(_fuse_run(run))
    return stages


class Compose:
    """Apply transforms in order; consecutive fusable geometric transforms resample once (``fuse=True``).

    Works for array transforms and dict transforms alike. ``set_random_state(seed)`` seeds every random child
    with a seed derived from ``(seed, position)``.
    """

    def __init__(self, transforms: Sequence[Callable[[Any], Any]], fuse_geometry: bool = True) -> None:
        self.transforms = list(transforms)
        self.stages = fuse(self.transforms) if fuse_geometry else list(self.transforms)

    def set_random_state(self, seed: int | None = None, generator: torch.Generator | None = None) -> Compose:
        """Seed children from ``seed`` (distinct per child), or share ``generator`` with all of them."""
        if generator is not None:
            for child in self.transforms:
                if isinstance(child, Randomizable | Compose | MapTransform):
                    child.set_random_state(generator=generator)
        elif seed is not None:
            _seed_children(self.transforms, seed)
        else:
            raise ValueError("set_random_state needs a seed or a generator")
        return self

    def __call__(self, data: Any) -> Any:
        for stage in self.stages:
            data = stage(data)
        return data


# ------------------------------------------------------------------------------------------------ presets
presets: Registry[Compose] = Registry("transform preset")


@presets.register("cxr_train")
def cxr_train_transform(size: int = 224, *, keys: KeysLike = ("image",), scale: Range = (0.7, 1.0),
                        ratio: Range = (3 / 4, 4 / 3), degrees: float = 10.0, translate: float = 0.05,
                        brightness: float = 0.1, contrast: float = 0.1, gamma: Range = (0.8, 1.25),
                        normalize: bool = True, mean: float = CXR_MEAN, std: float = CXR_STD,
                        seed: int = 0) -> Compose:
    """The typical chest X-ray training augmentation, one resample per image.

    Pad to square (keeps all anatomy, matches :func:`cxr_eval_transform`) → random resized crop to ``size`` →
    small rotation and translation (no flip) — fused into one ``grid_sample`` — then random gamma / contrast /
    brightness and normalisation. Works on one item ``(1, H, W)`` or a collated batch ``(B, 1, H, W)``.
    """
    steps: list[Any] = [
        SquarePadd(keys),
        RandomResizedCropd(keys, size, scale=scale, ratio=ratio),
        RandomAffined(keys, degrees=degrees, translate=translate),
        RandomIntensityd(keys, brightness=brightness, contrast=contrast, gamma=gamma),
    ]
    if normalize:
        steps.append(Normalized(keys, mean, std))
    return Compose(steps).set_random_state(seed)


@presets.register("cxr_eval")
def cxr_eval_transform(size: int = 224, *, keys: KeysLike = ("image",), normalize: bool = True,
                       mean: float = CXR_MEAN, std: float = CXR_STD) -> Compose:
    """Evaluation preprocessing: antialiased resize of the long side to ``size``, pad to square, normalise."""
    steps: list[Any] = [Resized(keys, size), SquarePadd(keys)]
    if normalize:
        steps.append(Normalized(keys, mean, std))
    return Compose(steps)


@presets.register("cxr_batch_item")
def cxr_batch_item_transform(size: int = 256, *, keys: KeysLike = ("image",)) -> Compose:
    """Per-item step of batch-level augmentation: make every item ``(1, size, size)`` so items collate.

    Resize (skipped when the long side is already ``size``, as in shards written at that size) and pad to
    square; then apply :func:`cxr_train_transform` to the collated batch.
    """
    return Compose([Resized(keys, size), SquarePadd(keys)])


def create_transform(name: str, **overrides: Any) -> Compose:
    """A registered preset by name (``cxr_train``, ``cxr_eval``, ``cxr_batch_item``) with ``overrides``."""
    return presets.create(name, **overrides)
