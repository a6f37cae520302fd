"""A map-style torch dataset over a table of CT / MR volumes (NIfTI files or DICOM-series folders) + reports.

The table (a ``.jsonl`` or ``.csv`` at any fsspec URL, or a list of :class:`VolumeRecord`) names one volume per
row: ``sample_id``, ``path`` (a ``.nii`` / ``.nii.gz`` file, or a folder holding one DICOM series; relative
paths are resolved against the table's folder), ``report`` and optional ``labels`` (a JSON object name → 1 / 0
/ -1) and ``patient_id``. Volumes are read through :mod:`rfm_data.readers.volume`.

Bad rows never crash a run: when the dataset is built every volume is read once (``validate=True``), and a row
whose volume cannot be read (corrupt, truncated, missing slices, ...), whose report is empty or whose id repeats
is *quarantined* with a :class:`~rfm_data.errors.Reason`. :attr:`VolumeDataset.accounting` always satisfies
``accepted + rejected == total``.

Items are shaped like :mod:`rfm_data.loader`'s, so ``VisionLanguageModel.collator()`` batches them:
``{"image": float32 (1, D, H, W), "report": str, "labels": {name: int}, "sample_id": str, "patient_id": str}``.
Use a :func:`~rfm_data.volume_transforms.build_volume_transform` that ends in a fixed ``size`` so items stack.
:class:`VolumeLoader` batches a dataset for ``rfm_models.train.train`` (epoch / position state for exact resume).
"""

from __future__ import annotations

import csv
import io as pyio
import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeAlias

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from rfm_data import io
from rfm_data.deid import Pseudonymizer
from rfm_data.errors import ConfigError, QuarantineError, Reason
from rfm_data.loader import collate
from rfm_data.readers import ReadOptions
from rfm_data.readers.volume import read_dicom_series, read_nifti
from rfm_data.records import Volume
from rfm_data.registry import Registry
from rfm_data.transforms import mix_seed
from rfm_data.volume_transforms import volume_to_tensor

Item: TypeAlias = dict[str, Any]
ItemTransform: TypeAlias = Callable[[Item], Item]

__all__ = ["Rejection", "VolumeAccounting", "VolumeDataset", "VolumeLoader", "VolumeRecord", "read_volume",
           "read_volume_table", "volume_formats"]

_NIFTI_SUFFIXES = (".nii", ".nii.gz")


@dataclass(frozen=True)
class VolumeRecord:
    """One row of a volume table."""

    sample_id: str
    path: str
    report: str = ""
    labels: dict[str, int] = field(default_factory=dict)
    patient_id: str = ""


@dataclass(frozen=True)
class Rejection:
    """A quarantined row: which, and why (``detail`` never holds header values)."""

    sample_id: str
    path: str
    reason: Reason
    detail: str = ""


@dataclass
class VolumeAccounting:
    """Rows accepted and rejected; ``accepted + len(rejected) == total`` always."""

    total: int
    accepted: int
    rejected: list[Rejection]

    def reasons(self) -> dict[str, int]:
        """Rejected rows per reason code."""
        counts: dict[str, int] = {}
        for r in self.rejected:
            counts[r.reason.value] = counts.get(r.reason.value, 0) + 1
        return counts

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable summary."""
        return {"total": self.total, "accepted": self.accepted, "rejected": len(self.rejected),
                "reasons": self.reasons(),
                "rows": [{"sample_id": r.sample_id, "path": r.path, "reason": r.reason.value, "detail": r.detail}
                         for r in self.rejected]}


# ------------------------------------------------------------------------------------------------- table
def _record(row: Mapping[str, Any], base: str, where: str) -> VolumeRecord:
    for name in ("sample_id", "path"):
        if not str(row.get(name) or "").strip():
            raise ConfigError(f"{where}: field {name!r} is missing or empty (every row needs sample_id and path)")
    labels = row.get("labels") or {}
    if isinstance(labels, str):
        try:
            labels = json.loads(labels) if labels.strip() else {}
        except json.JSONDecodeError:
            raise ConfigError(f"{where}: field 'labels' must be a JSON object such as {{\"Effusion\": 1}}") from None
    if not isinstance(labels, Mapping) or any(v not in (-1, 0, 1) for v in labels.values()):
        raise ConfigError(f"{where}: field 'labels' must map names to 1 / 0 / -1, got {labels!r}")
    path = str(row["path"]).strip()
    if "://" not in path and not path.startswith("/"):
        path = io.join(base, path)  # relative to the table, so a table and its volumes move together
    return VolumeRecord(str(row["sample_id"]).strip(), path, str(row.get("report") or ""),
                        {str(k): int(v) for k, v in labels.items()}, str(row.get("patient_id") or ""))


def _jsonl_rows(text: str, url: str) -> list[Mapping[str, Any]]:
    rows: list[Mapping[str, Any]] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            raise ConfigError(f"volume table {url}: line {number} is not JSON (one object per line)") from None
        if not isinstance(row, dict):
            raise ConfigError(f"volume table {url}: line {number} is not a JSON object")
        rows.append(row)
    return rows


def read_volume_table(url: str) -> list[VolumeRecord]:
    """Rows of a ``.jsonl`` or ``.csv`` volume table (see the module docstring).

    Raises:
        ConfigError: another suffix, or a row without ``sample_id`` / ``path`` or with malformed ``labels``
            (the row and field named).
    """
    if not url.endswith((".jsonl", ".csv")):
        raise ConfigError(f"volume table {url}: expected a .jsonl or .csv file")
    if not io.exists(url):
        raise ConfigError(f"volume table {url} does not exist")
    text = io.read_text(url)
    base = url.rsplit("/", 1)[0] if "/" in url else "."
    rows = _jsonl_rows(text, url) if url.endswith(".jsonl") else list(csv.DictReader(pyio.StringIO(text)))
    return [_record(row, base, f"{url} row {i + 1}") for i, row in enumerate(rows)]


# ----------------------------------------------------------------------------------------------- reading
volume_formats: Registry[Volume] = Registry("volume format")


@volume_formats.register("nifti")
def _read_nifti_url(path: str, options: ReadOptions) -> Volume:
    volume = read_nifti(io.read_bytes(path), path, options)
    if not isinstance(volume, Volume):  # the readers registry is typed for 2D and 3D results
        raise QuarantineError(Reason.NOT_2D, "the NIfTI reader returned no volume")
    return volume


@volume_formats.register("dicom_series")
def _read_series_url(path: str, options: ReadOptions) -> Volume:
    files = [f for f in io.list_files(path) if not f.rsplit("/", 1)[-1].startswith(".")]
    if not files:
        raise QuarantineError(Reason.EMPTY_FILE, "the DICOM series folder holds no files")
    return read_dicom_series([io.read_bytes(f) for f in files], files, options)


def _format_of(path: str) -> str:
    """``nifti`` for NIfTI files, ``dicom_series`` for folders; other files are unsupported."""
    if path.lower().endswith(_NIFTI_SUFFIXES):
        return "nifti"
    fs, local = io.filesystem(path)
    try:
        if fs.isdir(local):
            return "dicom_series"
        found = fs.exists(local)
    except OSError as err:
        raise QuarantineError(Reason.UNREADABLE_URL, type(err).__name__) from None
    if not found:
        raise QuarantineError(Reason.UNREADABLE_URL, "no file or folder at this path")
    raise QuarantineError(Reason.UNSUPPORTED_FORMAT, "expected a .nii / .nii.gz file or a DICOM series folder")


def read_volume(path: str, options: ReadOptions | None = None) -> Volume:
    """The volume at ``path`` (NIfTI file or DICOM-series folder); QuarantineError with a reason if unusable."""
    options = options or ReadOptions(pseudonymize=Pseudonymizer(b"rfm-volume-dataset"))
    return volume_formats.create(_format_of(path), path=path, options=options)


# ------------------------------------------------------------------------------------------------ dataset
def _check_row(record: VolumeRecord, seen: set[str], require_report: bool) -> Rejection | None:
    """Problems visible without reading the volume."""
    if record.sample_id in seen:
        return Rejection(record.sample_id, record.path, Reason.DUPLICATE_ID, "sample_id already used")
    seen.add(record.sample_id)
    if require_report and not record.report.strip():
        return Rejection(record.sample_id, record.path, Reason.EMPTY_REPORT, "the report is empty")
    return None


class VolumeDataset(Dataset[Item]):
    """Map-style dataset of volumes + reports; unusable rows are quarantined when it is built.

    Args:
        table: a table URL (``.jsonl`` / ``.csv``) or records.
        transform: dict transform on ``{"image": MetaTensor (1, D, H, W) with RAS affine, ...}``, e.g.
            :func:`~rfm_data.volume_transforms.build_volume_transform`; re-seeded per item from
            ``(seed, epoch, index)`` when it has ``set_random_state``. None: the voxels as read.
        seed: seed of the per-item augmentation.
        options: reader options (size limits); default: rfm-data's defaults.
        validate: read every volume now and quarantine the unreadable ones (exact accounting, costs one
            read per volume). False trusts the table: an unreadable volume then raises when its item is read.
        require_report: quarantine rows whose report is empty (``Reason.EMPTY_REPORT``).
        threads: concurrent reads while validating.
    """

    def __init__(self, table: str | Sequence[VolumeRecord], transform: ItemTransform | None = None, seed: int = 0,
                 options: ReadOptions | None = None, validate: bool = True, require_report: bool = True,
                 threads: int = 4) -> None:
        records = read_volume_table(table) if isinstance(table, str) else list(table)
        self.transform, self.seed, self.epoch = transform, seed, 0
        self.options = options or ReadOptions(pseudonymize=Pseudonymizer(b"rfm-volume-dataset"))
        rejected: list[Rejection] = []
        seen: set[str] = set()
        candidates: list[VolumeRecord] = []
        for record in records:
            problem = _check_row(record, seen, require_report)
            (rejected.append(problem) if problem else candidates.append(record))
        if validate:
            with ThreadPoolExecutor(max(1, threads)) as pool:
                problems = list(pool.map(self._probe, candidates))
            rejected += [p for p in problems if p is not None]
            candidates = [r for r, p in zip(candidates, problems, strict=True) if p is None]
        self.records = candidates
        self.accounting = VolumeAccounting(len(records), len(candidates), rejected)

    def _probe(self, record: VolumeRecord) -> Rejection | None:
        try:
            read_volume(record.path, self.options)
        except QuarantineError as err:
            return Rejection(record.sample_id, record.path, err.reason, err.detail)
        return None

    def __len__(self) -> int:
        return len(self.records)

    def set_epoch(self, epoch: int) -> None:
        """Augmentation of the next reads depends on ``epoch``."""
        self.epoch = epoch

    def __getitem__(self, index: int) -> Item:
        record = self.records[index]
        volume = read_volume(record.path, self.options)
        item: Item = {"image": volume_to_tensor(volume), "report": record.report, "labels": dict(record.labels),
                      "sample_id": record.sample_id, "patient_id": record.patient_id}
        if self.transform is None:
            item["image"] = item["image"].as_tensor()
            return item
        reseed = getattr(self.transform, "set_random_state", None)
        if reseed is not None:
            reseed(seed=mix_seed(self.seed, self.epoch, index))
        return self.transform(item)


# ------------------------------------------------------------------------------------------------- loader
class VolumeLoader:
    """Batches a :class:`VolumeDataset` in a seeded per-epoch order, and knows where the training loop is.

    It has what ``rfm_models.train.train`` needs for exact resume (``set_epoch``, ``state_dict``,
    ``load_state_dict``, ``len``): the order of epoch ``e`` is a permutation seeded by ``(seed, e)``, and the
    position is the number of samples handed to the loop, so a resumed run reads exactly the remaining ones.

    Args:
        dataset: the volumes.
        batch_size: samples per batch.
        shuffle: permute each epoch (else table order).
        seed: seed of the order.
        drop_last: drop the last partial batch of each epoch.
        num_workers: DataLoader worker processes (volumes decode in parallel).
        collate_fn: batches items (default ``rfm_data.loader.collate``; ``model.collator()`` for the model).
    """

    def __init__(self, dataset: VolumeDataset, batch_size: int, shuffle: bool = True, seed: int = 0,
                 drop_last: bool = False, num_workers: int = 0,
                 collate_fn: Callable[[list[Item]], Any] = collate) -> None:
        if batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
        if len(dataset) == 0:
            raise ConfigError(f"the volume dataset has no usable row ({dataset.accounting.reasons()} rejected): "
                              "check the table paths and VolumeDataset.accounting")
        self.dataset, self.batch_size, self.shuffle, self.seed = dataset, batch_size, shuffle, seed
        self.drop_last, self.num_workers, self.collate_fn = drop_last, num_workers, collate_fn
        self.epoch, self.consumed = 0, 0

    def __len__(self) -> int:
        n = len(self.dataset)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def _epoch_samples(self) -> int:
        return len(self) * self.batch_size if self.drop_last else len(self.dataset)

    def set_epoch(self, epoch: int) -> None:
        """Start ``epoch`` (from its beginning unless a resumed position says otherwise)."""
        if epoch != self.epoch:
            self.epoch, self.consumed = epoch, 0
        self.dataset.set_epoch(epoch)

    def state_dict(self) -> dict[str, Any]:
        """``{"epoch", "consumed", ...}``; a finished epoch is reported as the start of the next one."""
        done = self.consumed >= self._epoch_samples()
        epoch, consumed = (self.epoch + 1, 0) if done else (self.epoch, self.consumed)
        return {"epoch": epoch, "consumed": consumed, "seed": self.seed, "shuffle": self.shuffle,
                "batch_size": self.batch_size, "drop_last": self.drop_last, "samples": len(self.dataset)}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Resume from :meth:`state_dict`; the order-defining settings must match."""
        here = self.state_dict()
        for key in ("seed", "shuffle", "batch_size", "drop_last", "samples"):
            if key in state and state[key] != here[key]:
                raise ConfigError(f"cannot resume: {key}={state[key]!r} in the state but {here[key]!r} here; "
                                  "resume with the same volume table and loader settings")
        self.epoch, self.consumed = int(state["epoch"]), int(state["consumed"])
        self.dataset.set_epoch(self.epoch)

    def _order(self) -> list[int]:
        n = len(self.dataset)
        if not self.shuffle:
            return list(range(n))
        return [int(i) for i in np.random.default_rng(mix_seed(self.seed, self.epoch)).permutation(n)]

    def __iter__(self) -> Iterator[Any]:
        if self.consumed >= self._epoch_samples():
            self.consumed = 0
        order = self._order()[self.consumed:self._epoch_samples()]
        batches = [order[i:i + self.batch_size] for i in range(0, len(order), self.batch_size)]
        # A private generator: iterating must not draw from torch's global RNG (exact resume, as ShardLoader).
        loader = DataLoader(self.dataset, batch_sampler=batches, num_workers=self.num_workers,
                            collate_fn=self.collate_fn, generator=torch.Generator().manual_seed(self.seed))
        for batch in loader:
            self.consumed += len(batch["sample_id"])
            yield batch
