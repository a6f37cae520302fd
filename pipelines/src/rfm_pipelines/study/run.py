"""Run a study preset locally (kfp.local): the library behind ``rfm study efficiency``."""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from rfm_data.errors import ConfigError
from rfm_pipelines.study.plan import StudyPreset, pipeline_arguments, study_presets

__all__ = ["StudyRun", "parse_study_values", "run_study"]


@dataclass(frozen=True)
class StudyRun:
    """A finished local study: the copied study folder, its Markdown report, the kfp.local run folder, seconds."""

    out: Path
    report: Path
    run_dir: Path
    seconds: float
    runs: int


def parse_study_values(study: StudyPreset, pairs: Sequence[str]) -> dict[str, Any]:
    """``["train_steps=20", "seeds=[0,1,2]"]`` → typed values for :meth:`StudyPreset.with_values`.

    String fields take the text as is; the others are JSON (numbers, lists, objects).

    Raises:
        ConfigError: a malformed pair, an unknown key (listing the known ones) or a value that is not JSON.
    """
    current = {f.name: getattr(study, f.name) for f in fields(study)}
    values: dict[str, Any] = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        if not sep or not key:
            raise ConfigError(f"--set {pair!r} must look like KEY=VALUE")
        if key not in current:
            raise ConfigError(f"unknown study setting {key!r}; known: {', '.join(sorted(current))}")
        if isinstance(current[key], str):
            values[key] = text
            continue
        try:
            value = json.loads(text)
        except json.JSONDecodeError as err:
            raise ConfigError(f"--set {key}={text!r} is not valid JSON (e.g. {json.dumps(current[key])})") from err
        if isinstance(current[key], float) and isinstance(value, int):
            value = float(value)
        if type(value) is not type(current[key]):
            raise ConfigError(f"--set {key}={text!r} must be a {type(current[key]).__name__} like "
                              f"{json.dumps(current[key])}")
        values[key] = value
    return values


def run_study(preset: str, data_root: str, out: str, pairs: Sequence[str] = (),
              pipeline_root: str = "outputs/kfp-local") -> StudyRun:
    """Run the ``efficiency`` pipeline for study ``preset`` (with ``pairs`` overriding its fields) on the sources
    under ``data_root``; copy the study folder (report, plots, JSON) to ``out``.

    Raises:
        ConfigError: a missing source folder, a bad setting; runner.StepFailedError when a step fails.
    """
    from rfm_pipelines import runner  # kfp and every pipeline: imported only when a study really runs

    study = study_presets.create(preset)
    study = study.with_values(parse_study_values(study, pairs))
    arguments = pipeline_arguments(study, data_root)
    missing = [s["source"] for s in arguments["sources"] if s["source"] != "sample" and not Path(s["source"]).is_dir()]
    if missing:
        raise ConfigError(f"source folder(s) {missing} do not exist: give --data-root, the folder that holds "
                          f"{', '.join(str(s['source']) for s in study.sources)}")
    if not os.environ.get("RFM_DEID_KEY"):
        raise ConfigError("RFM_DEID_KEY is not set: the ingest steps pseudonymise ids with it; export your site's "
                          "key (any fixed string for public data), e.g. RFM_DEID_KEY=... rfm study efficiency ...")
    start = time.perf_counter()
    run = runner.run_local("efficiency", arguments, pipeline_root)
    seconds = time.perf_counter() - start
    report = Path(run.output.path)
    study_dir = _study_folder(report)
    dest = Path(out)
    if dest.exists():
        shutil.rmtree(dest)
    shutil.copytree(study_dir, dest)
    (dest / "command.json").write_text(json.dumps({"preset": preset, "data_root": data_root, "set": list(pairs),
                                                   "seconds": round(seconds, 1), "arguments": arguments}, indent=2))
    return StudyRun(dest, dest / "study.md", run.run_dir, seconds, len(arguments["runs"]))


def _study_folder(report: Path) -> Path:
    """The study artifact beside the report artifact (kfp.local: <task folder>/<output name>)."""
    folder = report.parent / "study"
    if not (folder / "study.md").exists():
        raise ConfigError(f"no study folder next to {report}: the study-report step wrote elsewhere")
    return folder
