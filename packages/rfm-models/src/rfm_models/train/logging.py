"""Training logs: ``metrics.jsonl`` (one JSON record per logged step), TensorBoard scalars, kept ids, progress.

Records carry the compute counters, so FLOPs-to-quality comparisons between runs are read off the files. On
resume the files are cut back to the checkpoint's step: records written after it (by a killed run) would
otherwise appear twice, and the resumed run rewrites them identically in deterministic mode.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping, Sequence
from typing import Any

from rfm_data import io

METRICS_FILE = "metrics.jsonl"


def kept_ids_file(rank: int) -> str:
    return f"kept_ids-rank-{rank}.jsonl"


def truncate_jsonl(url: str, max_step: int) -> None:
    """Keep only the records of ``url`` with ``step <= max_step`` (atomically; absent file: nothing)."""
    if not io.exists(url):
        return
    kept = []
    for line in io.read_text(url).splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue  # a line torn by kill -9
        if int(record.get("step", 0)) <= max_step:
            kept.append(line)
    io.write_text(url, "".join(f"{line}\n" for line in kept))


def read_jsonl(url: str) -> list[dict[str, Any]]:
    """Every complete record of a JSON-lines file."""
    out = []
    for line in io.read_text(url).splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return out


class _Appender:
    """Appends lines to a local file, or buffers and rewrites on object stores (which cannot append)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._local = io.protocol_of(url) == "file"
        self._lines: list[str] = []
        if not self._local and io.exists(url):
            self._lines = io.read_text(url).splitlines(keepends=True)
        if self._local:
            fs, path = io.filesystem(url)
            fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
            self._file = open(path, "a", encoding="utf-8")  # noqa: SIM115 - held open for the run

    def write(self, record: Mapping[str, Any]) -> None:
        line = json.dumps(record, allow_nan=True) + "\n"
        if self._local:
            self._file.write(line)
            self._file.flush()  # a killed run keeps everything up to its last step
        else:
            self._lines.append(line)

    def flush(self) -> None:
        if not self._local:
            io.write_text(self.url, "".join(self._lines))

    def close(self) -> None:
        if self._local:
            self._file.close()
        else:
            self.flush()


class TrainLogger:
    """Rank-aware writer of metrics (rank 0), kept ids (every rank) and the progress bar (rank 0)."""

    def __init__(self, output_dir: str, rank: int, start_step: int, total_steps: int | None,
                 tensorboard: bool = True, progress: bool = True) -> None:
        self.rank = rank
        self._metrics = _Appender(io.join(output_dir, METRICS_FILE)) if rank == 0 else None
        self._kept = _Appender(io.join(output_dir, kept_ids_file(rank)))
        self._tb: Any = None
        if tensorboard and rank == 0:
            from torch.utils.tensorboard import SummaryWriter

            self._tb = SummaryWriter(log_dir=_tb_dir(output_dir), purge_step=start_step + 1)
        self._bar: Any = None
        if progress and rank == 0 and sys.stderr.isatty():
            from tqdm.auto import tqdm

            self._bar = tqdm(total=total_steps, initial=start_step, unit="step", dynamic_ncols=True)

    def metrics(self, record: Mapping[str, Any]) -> None:
        """One record (must contain ``step``) to metrics.jsonl and TensorBoard."""
        if self._metrics is not None:
            self._metrics.write(record)
        if self._tb is not None:
            for key, value in record.items():
                if key != "step" and isinstance(value, int | float) and not isinstance(value, bool):
                    self._tb.add_scalar(f"train/{key}", value, int(record["step"]))

    def kept_ids(self, step: int, epoch: int, phase: str, ids: Sequence[Any]) -> None:
        self._kept.write({"step": step, "epoch": epoch, "phase": phase, "ids": list(ids)})

    def progress(self, step: int, loss: float, lr: float) -> None:
        if self._bar is not None:
            self._bar.update(step - self._bar.n)
            self._bar.set_postfix(loss=f"{loss:.4f}", lr=f"{lr:.2e}", refresh=False)

    def flush(self) -> None:
        """Make everything written so far durable (called at each checkpoint)."""
        for appender in (self._metrics, self._kept):
            if appender is not None:
                appender.flush()
        if self._tb is not None:
            self._tb.flush()

    def close(self) -> None:
        for appender in (self._metrics, self._kept):
            if appender is not None:
                appender.close()
        if self._tb is not None:
            self._tb.close()
        if self._bar is not None:
            self._bar.close()


def _tb_dir(output_dir: str) -> str:
    # SummaryWriter writes through its own file layer (local paths, gs:// via tensorflow's gfile only):
    # local output dirs are passed as paths; remote ones get a local tb/ that the user syncs.
    if io.protocol_of(output_dir) == "file":
        return str(io.filesystem(io.join(output_dir, "tb"))[1])
    return "tb"
