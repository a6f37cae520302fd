"""Curation benchmark: dedup + hierarchical k-means + balanced selection of 22.7 % at 100k … 1,235,004 embeddings.

Data: the reference synthetic set (../shared/bench/make_embeddings.py: 512-d, long-tailed 2,000-component
mixture, 5 % planted near-duplicates), wrapped as an embedding store plus a minimal manifest. Each size runs
``rfm_curation.curate`` end to end (read store → exact + semantic dedup → hkmeans → write selection and report)
in a fresh subprocess (wall time, peak RSS from VmHWM). Beside it, in the same run: flat faiss spherical
k-means at the same number of level-1 clusters, 10 iterations: run fully at ``--flat-full`` sizes, and at
larger sizes timed on one assignment pass over ``--flat-probe`` rows and scaled to N rows x 10 iterations.
Quality: planted-duplicate recall, and coverage of rare mixture components versus random at equal budget
(random drawn from the same deduplicated candidates).

    .venv/bin/python tools/benchmarks/bench_curation.py                       # ~15 min on 2 shared cores
    .venv/bin/python tools/benchmarks/bench_curation.py --sizes 100000 --flat-full 100000   # smoke run
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
MAKE = Path(os.environ.get("RFM_SHARED_BENCH", ROOT.parent / "shared" / "bench")) / "make_embeddings.py"
SIZES = [100_000, 300_000, 600_000, 1_235_004]
BUDGET = 0.227


def leaf_clusters(n: int) -> int:
    """Level-1 clusters: 1,000 at 100k (the anchor measured on this machine) … 10,000 at 1.235M."""
    return min(10_000, n // 100)


def build_inputs(workdir: Path, n: int) -> tuple[Path, Path]:
    """Embeddings from the reference generator, an embedding store over them and a minimal manifest."""
    import pyarrow as pa

    from rfm_data.manifest import MANIFEST_SCHEMA, write_manifest

    raw = workdir / f"emb_{n}.npy"
    if not raw.exists():
        subprocess.run([sys.executable, str(MAKE), str(n), str(raw)], check=True)
    store, dataset = workdir / f"store_{n}", workdir / f"dataset_{n}"
    ids = [f"s{i:08d}" for i in range(n)]
    if not (store / "embeddings.json").exists():
        store.mkdir(exist_ok=True)
        if not (store / "joint.npy").exists():
            os.link(raw, store / "joint.npy")  # the generator writes a valid store file: no 2.5 GB copy
        pa.parquet.write_table(pa.table({"sample_id": ids}), store / "ids.parquet")
        meta = {"format_version": "1", "count": n, "kinds": {"joint": {"dim": 512, "dtype": "float32",
                                                                       "file": "joint.npy"}}}
        (store / "embeddings.json").write_text(json.dumps(meta))
    if not (dataset / "manifest.parquet").exists():
        cols = {f.name: pa.nulls(n, f.type).fill_null("") if pa.types.is_string(f.type) else None
                for f in MANIFEST_SCHEMA}
        cols["sample_id"] = pa.array(ids)
        cols["content_hash"] = pa.array([f"h{i}" for i in range(n)])
        cols["status"] = pa.array(["accepted"] * n)
        arrays = [cols[f.name] if cols[f.name] is not None else pa.nulls(n, f.type) for f in MANIFEST_SCHEMA]
        dataset.mkdir(exist_ok=True)
        write_manifest(pa.Table.from_arrays(arrays, schema=MANIFEST_SCHEMA), str(dataset / "manifest.parquet"))
    return dataset, store


CHILD = """
import json, os, resource, sys, time
from rfm_curation import CurationConfig, curate
strategy, dedup = sys.argv[6], tuple(sys.argv[7].split(","))
options = {"levels": [int(v) for v in sys.argv[4].split(",")]} if strategy == "hkmeans" else {}
t = time.perf_counter()
r = curate(sys.argv[1], sys.argv[2], sys.argv[3], CurationConfig(strategy=strategy, budget=float(sys.argv[5]),
           dedup=dedup, strategy_options=options))
wall = time.perf_counter() - t
hwm = next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM"))
ru = resource.getrusage(resource.RUSAGE_SELF)
print(json.dumps({"wall_s": wall, "cpu_s": ru.ru_utime + ru.ru_stime, "peak_rss_bytes": hwm * 1024, "kept": r.kept,
                  "load_avg_1min_after": os.getloadavg()[0]}))
"""


def run_curation(dataset: Path, store: Path, out: Path, levels: list[int], strategy: str = "hkmeans",
                 dedup: str = "exact,semantic") -> dict[str, float]:
    """End-to-end curate in a fresh process: wall time, CPU time and peak RSS."""
    args = [sys.executable, "-c", CHILD, str(dataset), str(store), str(out), ",".join(map(str, levels)), str(BUDGET),
            strategy, dedup]
    done = subprocess.run(args, check=True, capture_output=True, text=True)
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    result["stage_seconds"] = json.loads((out / "curation.json").read_text())["stage_seconds"]
    return result


def flat_kmeans_seconds(x: np.ndarray, k: int, full: bool, probe: int) -> tuple[float, str]:
    """Flat faiss spherical k-means, 10 iterations: measured, or one assignment pass extrapolated."""
    import faiss

    rng = np.random.default_rng(0)
    if full:
        km = faiss.Kmeans(x.shape[1], k, niter=10, seed=0, spherical=True, max_points_per_centroid=10**9)
        t = time.perf_counter()
        km.train(x)
        return time.perf_counter() - t, "measured (10 iterations)"
    centroids = x[rng.choice(len(x), k, replace=False)]
    index = faiss.IndexFlatIP(x.shape[1])
    index.add(centroids)
    rows = np.ascontiguousarray(x[rng.choice(len(x), probe, replace=False)])
    t = time.perf_counter()
    index.search(rows, 1)
    per_pass = (time.perf_counter() - t) * len(x) / probe
    return per_pass * 10, f"extrapolated: 1 pass over {probe:,} rows x {len(x) / probe:.1f} x 10 iterations"


def quality(workdir: Path, n: int, out: Path) -> dict[str, Any]:
    """Planted-duplicate recall, and rare-component coverage of hkmeans versus random at equal budget."""
    import pyarrow.parquet as pq

    sel = pq.read_table(out / "selection.parquet", columns=["kept", "reason"]).to_pydict()
    kept, reason = np.array(sel["kept"]), np.array(sel["reason"])
    dups = np.load(workdir / f"emb_{n}.dups.npy")
    comp = np.load(workdir / f"emb_{n}.clusters.npy")
    sizes = np.bincount(comp, minlength=2000)
    rare = sizes[comp] <= np.median(sizes[sizes > 0])  # components smaller than the median one
    candidates = np.flatnonzero(reason != "semantic_duplicate")
    rnd = np.zeros(n, bool)
    rnd[np.random.default_rng(0).choice(candidates, int(kept.sum()), replace=False)] = True
    rare_ids = np.flatnonzero(np.bincount(comp[rare], minlength=2000))

    def covered(mask: np.ndarray) -> int:
        return int(np.count_nonzero(np.bincount(comp[mask & rare], minlength=2000)[rare_ids]))

    planted_removed = reason[dups[:, 0]] == "semantic_duplicate"
    return {"dup_recall": float(planted_removed.mean()),
            "removed_not_planted": int((reason == "semantic_duplicate").sum() - planted_removed.sum()),
            "rare_components": len(rare_ids), "rare_covered_hkmeans": covered(kept),
            "rare_covered_random": covered(rnd), "rare_samples_hkmeans": int((kept & rare).sum()),
            "rare_samples_random": int((rnd & rare).sum())}


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--sizes", type=lambda s: [int(v) for v in s.split(",")], default=SIZES)
    p.add_argument("--flat-full", type=lambda s: [int(v) for v in s.split(",")], default=[100_000])
    p.add_argument("--flat-probe", type=int, default=50_000)
    p.add_argument("--workdir", type=Path, default=Path("/tmp/rfm-bench-curation"))
    p.add_argument("--out", type=Path, default=ROOT / "tools/benchmarks/results/curation.json")
    p.add_argument("--strategies-at", type=int, default=1_235_004, help="size for all strategies (0: skip)")
    a = p.parse_args()
    a.workdir.mkdir(parents=True, exist_ok=True)
    rows = []
    for n in a.sizes:
        dataset, store = build_inputs(a.workdir, n)
        k = leaf_clusters(n)
        levels = [k, k // 10, k // 100]
        cur = run_curation(dataset, store, a.workdir / f"out_{n}", levels)
        x = np.load(a.workdir / f"emb_{n}.npy", mmap_mode="r")
        flat_s, how = flat_kmeans_seconds(np.ascontiguousarray(x) if n in a.flat_full else x, k, n in a.flat_full,
                                          a.flat_probe)
        del x
        row = {"n": n, "leaf_clusters": k, "levels": levels, **cur, "embedding_bytes": n * 512 * 4,
               "flat_kmeans_s": flat_s, "flat_kmeans_how": how, **quality(a.workdir, n, a.workdir / f"out_{n}")}
        row["rss_over_embeddings"] = row["peak_rss_bytes"] / row["embedding_bytes"]
        row["speedup_vs_flat"] = flat_s / row["stage_seconds"]["strategy"]
        rows.append(row)
        print(json.dumps(row), flush=True)
    side = all_strategies(a.workdir, a.strategies_at) if a.strategies_at else []
    report(rows, side, a.out)
    return 0


def all_strategies(workdir: Path, n: int) -> list[dict[str, Any]]:
    """Every registered strategy at size ``n``, after exact dedup only (so the strategy's own cost shows)."""
    dataset, store = build_inputs(workdir, n)
    k = leaf_clusters(n)
    out = []
    for strategy in ("random", "label_balance", "hkmeans", "chexficient"):
        res = run_curation(dataset, store, workdir / f"side_{strategy}_{n}", [k, k // 10, k // 100], strategy, "exact")
        q = quality(workdir, n, workdir / f"side_{strategy}_{n}")
        row = {"strategy": strategy, "n": n, **res, "rare_covered": q["rare_covered_hkmeans"],
               "rare_samples": q["rare_samples_hkmeans"], "rare_components": q["rare_components"]}
        out.append(row)
        print(json.dumps(row), flush=True)
    return out


def report(rows: list[dict[str, Any]], side: list[dict[str, Any]], out: Path) -> None:
    """Rich table, JSON and a time-vs-N chart."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from rich.console import Console
    from rich.table import Table

    t = Table(title="curation: exact+semantic dedup → hkmeans → 22.7 % (2 shared cores)")
    cols = ["n", "leaf_clusters", "wall_s", "cpu_s", "load", "dedup_s", "hkmeans_s", "flat_kmeans_s", "speedup",
            "rss/emb", "dup_recall", "rare cov. hk/rand"]
    for c in cols:
        t.add_column(c, justify="right")
    for r in rows:
        st = r["stage_seconds"]
        t.add_row(f"{r['n']:,}", str(r["leaf_clusters"]), f"{r['wall_s']:.0f}", f"{r['cpu_s']:.0f}",
                  f"{r['load_avg_1min_after']:.1f}", f"{st['dedup']:.0f}",
                  f"{st['strategy']:.0f}", f"{r['flat_kmeans_s']:.0f}", f"{r['speedup_vs_flat']:.0f}x",
                  f"{r['rss_over_embeddings']:.2f}", f"{r['dup_recall']:.4f}",
                  f"{r['rare_covered_hkmeans']}/{r['rare_covered_random']} of {r['rare_components']}")
    console = Console(width=170)
    console.print(t)
    s = Table(title="all strategies side by side, after exact dedup, 22.7 %")
    for c in ("strategy", "n", "wall_s", "cpu_s", "strategy_s", "rss/emb", "rare components covered", "rare samples"):
        s.add_column(c, justify="right")
    for r in side:
        s.add_row(str(r["strategy"]), f"{r['n']:,}", f"{r['wall_s']:.0f}", f"{r['cpu_s']:.0f}",
                  f"{r['stage_seconds']['strategy']:.0f}", f"{r['peak_rss_bytes'] / (r['n'] * 2048):.2f}",
                  f"{r['rare_covered']} of {r['rare_components']}", str(r["rare_samples"]))
    console.print(s)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"budget": BUDGET, "cpu_count": os.cpu_count(), "rows": rows, "strategies": side},
                              indent=2))
    fig, ax = plt.subplots(figsize=(6, 4))
    ns = [r["n"] for r in rows]
    ax.plot(ns, [r["wall_s"] for r in rows], "o-", label="curate end to end (dedup + hkmeans + write)")
    ax.plot(ns, [r["stage_seconds"]["strategy"] for r in rows], "s-", label="hkmeans selection")
    ax.plot(ns, [r["flat_kmeans_s"] for r in rows], "x--", label="flat k-means, same k, 10 it.")
    ax.set(xlabel="embeddings", ylabel="seconds", yscale="log", title="time vs N (2 shared cores)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out.with_suffix(".png"), dpi=100)


if __name__ == "__main__":
    raise SystemExit(main())
