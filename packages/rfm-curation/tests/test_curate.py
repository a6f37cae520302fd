"""End to end on the bundled real sample: every strategy, the CLI, the outputs, bad input."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from rfm_curation import CurationConfig, curate
from rfm_curation.cli import main
from rfm_curation.embeddings import write_embeddings
from rfm_curation.errors import ConfigError
from rfm_curation.select import proportional_budgets
from rfm_curation.strategies import resolve_budget
from rfm_data.manifest import read_manifest, to_table, write_manifest


@pytest.mark.parametrize("strategy", ["random", "hkmeans", "chexficient", "label_balance"])
def test_every_strategy_runs_on_the_real_sample(sample_dataset: str, sample_store: str, tmp_path: Path,
                                                strategy: str) -> None:
    cfg = CurationConfig(strategy=strategy, budget=0.5, dedup=("exact", "perceptual", "semantic"),
                         filters=("blank", "tiny", "empty_report", "view"), seed=1)
    result = curate(sample_dataset, sample_store, str(tmp_path / "out"), cfg)
    selection = pq.read_table(tmp_path / "out" / "selection.parquet").to_pydict()
    assert len(selection["sample_id"]) == result.total == 65
    assert sum(selection["kept"]) == result.kept <= result.budget == 32
    reasons = {r for r in selection["reason"] if r}
    assert "quarantined" in reasons and "empty_report" in reasons  # 2 broken files; Kermany has no reports
    assert all((r == "") == k for r, k in zip(selection["reason"], selection["kept"], strict=True))
    curated = read_manifest(str(tmp_path / "out" / "manifest.parquet"))
    assert curated["curation_reason"].to_pylist() == selection["reason"]
    report = (tmp_path / "out" / "report.md").read_text()
    assert "## Label prevalence" in report and "COVID-19" in report
    assert (tmp_path / "out" / "report.png").read_bytes()[:4] == b"\x89PNG"
    assert json.loads((tmp_path / "out" / "curation.json").read_text())["kept"] == result.kept


def test_planted_copies_of_real_images_are_removed_with_their_reason(sample_dataset: str, tmp_path: Path) -> None:
    # Duplicate three real manifest rows under new ids (same bytes, same pixels, same embedding).
    rows = read_manifest(f"{sample_dataset}/manifest.parquet").to_pylist()
    accepted = [r for r in rows if r["status"] == "accepted"]
    copies = [{**r, "sample_id": "zz-copy-" + r["sample_id"]} for r in accepted[:3]]
    dataset = tmp_path / "ds"
    shutil.copytree(sample_dataset, dataset)
    write_manifest(to_table(rows + copies), str(dataset / "manifest.parquet"))
    vectors = np.random.default_rng(0).standard_normal((len(accepted), 8)).astype(np.float32)
    ids = [r["sample_id"] for r in accepted] + [c["sample_id"] for c in copies]
    write_embeddings(str(tmp_path / "emb"), ids, {"joint": np.concatenate([vectors, vectors[:3]])})
    curate(str(dataset), str(tmp_path / "emb"), str(tmp_path / "out"), CurationConfig(strategy="random", budget=1.0))
    sel = pq.read_table(tmp_path / "out" / "selection.parquet").to_pylist()
    by_id = {r["sample_id"]: r for r in sel}
    for c, original in zip(copies, accepted[:3], strict=True):
        assert by_id[c["sample_id"]]["reason"] == "exact_duplicate"
        assert by_id[c["sample_id"]]["duplicate_of"] == original["sample_id"]
    groups = pq.read_table(tmp_path / "out" / "duplicates.parquet")
    assert groups.num_rows == 6
    assert "exact_duplicate | 3 | 3" in (tmp_path / "out" / "report.md").read_text()


def test_cli_run_report_and_list(sample_dataset: str, sample_store: str, tmp_path: Path,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    out = str(tmp_path / "out")
    assert main(["run", sample_dataset, sample_store, "--strategy", "hkmeans", "--budget", "20", "--out", out,
                 "--views", "PA,AP", "--levels", "6,2"]) == 0
    assert "kept 20 of 63 accepted" in capsys.readouterr().out
    (tmp_path / "out" / "report.md").unlink()
    assert main(["report", out]) == 0
    assert (tmp_path / "out" / "report.md").exists()
    assert main(["list"]) == 0
    assert "hkmeans" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--budget", "1.5"], "budget=1.5 is outside (0, 1]"),
        (["--budget", "0.0"], "budget=0.0 is outside (0, 1]"),
        (["--strategy", "magic"], "unknown selection strategy 'magic'"),
        (["--kind", "text"], "embeddings.kind: 'text' is not in the store"),
        (["--filters", "sharpness"], "unknown quality filter 'sharpness'"),
    ],
)
def test_cli_bad_input_exits_2_naming_the_field_and_writes_nothing(
    sample_dataset: str, sample_store: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str],
    message: str,
) -> None:
    assert main(["run", sample_dataset, sample_store, "--out", str(tmp_path / "out"), *args]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_ids_missing_from_the_manifest_and_dimension_mismatch(sample_dataset: str, tmp_path: Path) -> None:
    write_embeddings(str(tmp_path / "emb"), ["not-in-manifest", "also-not"], {"joint": np.ones((2, 4))})
    with pytest.raises(ConfigError, match=r"embeddings\.ids: 2 ids are not in the manifest"):
        curate(sample_dataset, str(tmp_path / "emb"), str(tmp_path / "out"))
    assert not (tmp_path / "out").exists()


def test_nan_embeddings_are_refused_before_any_output(sample_dataset: str, sample_store: str, tmp_path: Path) -> None:
    store = tmp_path / "emb"
    shutil.copytree(sample_store, store)
    arr = np.load(store / "image.npy")
    arr[5, 2] = np.nan
    np.save(store / "image.npy", arr)
    with pytest.raises(ConfigError, match=r"embeddings\.image: row for sample_id '.+' is NaN or inf"):
        curate(sample_dataset, str(store), str(tmp_path / "out"))
    assert not (tmp_path / "out").exists()


def test_curation_reads_and_writes_fsspec_urls(sample_dataset: str, sample_store: str) -> None:
    out = "memory://rfm-curation-test/curated"
    result = curate(sample_dataset, sample_store, out, CurationConfig(strategy="random", budget=10))
    assert result.kept == 10
    assert read_manifest(f"{out}/manifest.parquet")["curation_kept"].to_pylist().count(True) == 10


def test_a_manifest_without_accepted_samples_is_empty_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_manifest(to_table([{"sample_id": "a", "status": "quarantined", "reason": "truncated"}]),
                   str(tmp_path / "ds" / "manifest.parquet"))
    with pytest.raises(ConfigError, match="budget: there are no samples to select from"):
        curate(str(tmp_path / "ds"), None, str(tmp_path / "out"), CurationConfig(strategy="random", dedup=()))
    assert main(["run", str(tmp_path / "nowhere"), "--strategy", "random", "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "manifest:" in err and "does not exist" in err
    assert not (tmp_path / "out").exists()


def test_curating_one_split_keeps_evaluation_samples_out(sample_dataset: str, sample_store: str,
                                                        tmp_path: Path) -> None:
    result = curate(sample_dataset, sample_store, str(tmp_path / "out"),
                    CurationConfig(strategy="hkmeans", budget=0.5, split="train", seed=0))
    selection = pq.read_table(tmp_path / "out" / "selection.parquet").to_pydict()
    manifest = read_manifest(sample_dataset + "/manifest.parquet").to_pydict()
    split_of = dict(zip(manifest["sample_id"], manifest["split"], strict=True))
    train = sum(1 for s, st in zip(manifest["split"], manifest["status"], strict=True)
                if s == "train" and st == "accepted")
    assert result.budget == resolve_budget(0.5, train) == 21  # a fraction of the split's 41 accepted samples
    kept = [i for i, k in zip(selection["sample_id"], selection["kept"], strict=True) if k]
    assert kept and {split_of[i] for i in kept} == {"train"}
    other = {i for i, r in zip(selection["sample_id"], selection["reason"], strict=True) if r == "other_split"}
    assert other == {i for i, s in split_of.items() if s in ("val", "test")} - {
        i for i, st in zip(manifest["sample_id"], manifest["status"], strict=True) if st != "accepted"}
    with pytest.raises(ConfigError, match="split: no accepted sample has split 'holdout'"):
        curate(sample_dataset, sample_store, str(tmp_path / "bad"), CurationConfig(split="holdout"))


def test_a_stratified_selection_keeps_the_mix_of_a_column(sample_dataset: str, sample_store: str,
                                                          tmp_path: Path) -> None:
    """Balancing strategies shift a pooled dataset's mix; ``stratify`` keeps each value's share of the budget."""
    result = curate(sample_dataset, sample_store, str(tmp_path / "out"),
                    CurationConfig(strategy="hkmeans", budget=0.5, split="train", seed=0, dedup=(), stratify="view"))
    curated = read_manifest(str(tmp_path / "out" / "manifest.parquet")).to_pydict()
    rows = [(v, k) for v, k, s, st in zip(curated["view"], curated["curation_kept"], curated["split"],
                                          curated["status"], strict=True) if s == "train" and st == "accepted"]
    views = sorted({v for v, _ in rows})
    candidates = [sum(1 for v, _ in rows if v == view) for view in views]
    kept = [sum(1 for v, k in rows if v == view and k) for view in views]
    assert len(views) == 2 and result.kept == result.budget == sum(kept)
    assert kept == proportional_budgets(candidates, result.budget)
    selection = pq.read_table(tmp_path / "out" / "selection.parquet").to_pydict()
    view_of = dict(zip(curated["sample_id"], curated["view"], strict=True))
    clusters = {c: {view_of[i] for i, cc in zip(selection["sample_id"], selection["cluster"], strict=True)
                    if cc == c} for c in set(selection["cluster"]) - {-1}}
    assert all(len(v) == 1 for v in clusters.values())  # each stratum numbers its own clusters
    with pytest.raises(ConfigError, match=r"stratify: the manifest has no column 'site'; its columns: sample_id"):
        curate(sample_dataset, sample_store, str(tmp_path / "bad"), CurationConfig(stratify="site"))


def test_proportional_budgets_sum_to_the_budget_and_fit_each_stratum() -> None:
    assert proportional_budgets([300, 100], 100) == [75, 25]
    assert proportional_budgets([3, 1], 2) == [2, 0]
    assert proportional_budgets([1, 10], 5) == [0, 5]
    assert proportional_budgets([2, 2, 2], 6) == [2, 2, 2]
