"""Report labeler benchmark: reports/s per core and macro-F1 vs the IU MeSH tags, rule backend vs baseline.

Both backends label the same real reports (the IU / Open-i ``reports.jsonl`` of the development data:
findings + impression) in one process, interleaved over rounds (the order alternates), so figures are per
core and comparable within the run. Speed is reports per CPU-second of this process (other jobs on a shared
machine do not count against it), with wall-clock reports/s beside it; the median round is reported.
Accuracy is the evaluation of ``rfm_data.labels.evaluate`` (positive mentions, observations with >= 20
gold positives), strict (1) and with uncertain counted (1 or -1). Prints a table, writes JSON.

    .venv/bin/python tools/benchmarks/bench_labeler.py --out tools/benchmarks/results/labeler.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

from rfm_data.labels import create_labeler
from rfm_data.labels.base import Labeler
from rfm_data.labels.evaluate import evaluate_iu, iter_iu_records

BACKENDS = ("rule", "keyword")


def _iu_url() -> str:
    root = Path(os.environ.get("RFM_SHARED_DATA", Path(__file__).resolve().parents[3] / "shared" / "data"))
    return str(root / "iu_xray_reports" / "reports.jsonl")


def _one_round(labeler: Labeler, texts: list[str]) -> tuple[float, float]:
    cpu, wall = time.process_time(), time.perf_counter()
    labeler.label_batch(texts)
    return len(texts) / (time.process_time() - cpu), len(texts) / (time.perf_counter() - wall)


def measure(texts: list[str], rounds: int) -> dict[str, dict[str, float]]:
    """Median and best reports/s per CPU-second and wall-clock, per backend, interleaved over rounds."""
    labelers = {name: create_labeler(name) for name in BACKENDS}
    for labeler in labelers.values():
        labeler.label_batch(texts[:50])  # warm-up: regex caches, first-call costs
    cpu: dict[str, list[float]] = {n: [] for n in BACKENDS}
    wall: dict[str, list[float]] = {n: [] for n in BACKENDS}
    for r in range(rounds):
        for name in BACKENDS if r % 2 == 0 else BACKENDS[::-1]:
            c, w = _one_round(labelers[name], texts)
            cpu[name].append(c)
            wall[name].append(w)
    return {n: {"reports_per_cpu_s": statistics.median(cpu[n]), "best_reports_per_cpu_s": max(cpu[n]),
                "reports_per_wall_s": statistics.median(wall[n])} for n in BACKENDS}


# The phrase lists were developed on the R2Gen train split only; val + outside R2Gen is held out.
SPLITS = {"train": ("train",), "held_out": ("val", ""), "all": None}


def by_split(labeler: Labeler, url: str, observations: list[str]) -> dict[str, float]:
    """Strict macro-F1 per split over the same observations (those with >= 20 gold positives in all reports),
    so that the splits compare: on a split alone fewer observations reach 20."""
    out = {}
    for split, values in SPLITS.items():
        scores = evaluate_iu(labeler, url, splits=values, positive_values=(1,)).scores
        out[split] = round(statistics.mean(scores[o].f1 for o in observations), 4)
    return out


def accuracy(url: str) -> dict[str, dict[str, object]]:
    """Macro-F1 and per-observation scores of each backend, strict and with uncertain counted, and by split."""
    out: dict[str, dict[str, object]] = {}
    for name in BACKENDS:
        labeler = create_labeler(name)
        strict = evaluate_iu(labeler, url, positive_values=(1,))
        lenient = evaluate_iu(labeler, url, positive_values=(1, -1))
        observations = [o for o, s in strict.scores.items() if s.support >= strict.min_support]
        out[name] = {"strict": strict.to_dict(), "with_uncertain": lenient.to_dict(),
                     "strict_by_split": by_split(labeler, url, observations)}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--out", default="tools/benchmarks/results/labeler.json")
    args = parser.parse_args()
    url = _iu_url()
    texts = [r.text for r in iter_iu_records(url)]
    speed = measure(texts, args.rounds)
    scores = accuracy(url)
    print(f"{len(texts)} IU reports (findings + impression, {sum(map(len, texts)) / len(texts):.0f} chars on average), "
          f"{args.rounds} rounds, 1 process")
    print(f"{'backend':<10}{'reports/CPU-s':>15}{'best':>10}{'reports/wall-s':>16}{'macro-F1':>10}{'(+uncertain)':>14}")
    for name in BACKENDS:
        s, a = speed[name], scores[name]
        strict, lenient = a["strict"], a["with_uncertain"]
        assert isinstance(strict, dict) and isinstance(lenient, dict)
        print(f"{name:<10}{s['reports_per_cpu_s']:>15.0f}{s['best_reports_per_cpu_s']:>10.0f}"
              f"{s['reports_per_wall_s']:>16.0f}{strict['macro_f1']:>10.3f}{lenient['macro_f1']:>14.3f}")
        print(f"{'':<10}strict macro-F1 by split: {a['strict_by_split']}")
    result = {"reports": len(texts), "rounds": args.rounds, "machine": platform.processor() or platform.machine(),
              "python": platform.python_version(), "speed": speed, "accuracy": scores,
              "command": "python tools/benchmarks/bench_labeler.py --out tools/benchmarks/results/labeler.json"}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2, sort_keys=True) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
