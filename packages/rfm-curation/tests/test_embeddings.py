from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from rfm_curation.embeddings import EmbeddingStore, EmbeddingWriter, load_normalized, write_embeddings
from rfm_curation.errors import ConfigError


def test_round_trip_streams_and_memory_maps_every_kind(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    ids = [f"id{i}" for i in range(300)]
    image, text = rng.standard_normal((300, 8)), rng.standard_normal((300, 4))
    write_embeddings(str(tmp_path / "s"), ids, {"image": image, "text": text})
    store = EmbeddingStore(str(tmp_path / "s"))
    assert store.kinds == ["image", "text"] and store.count == 300 and store.dims == {"image": 8, "text": 4}
    assert store.ids().tolist() == ids
    chunks = list(store.iter_chunks("text", chunk_rows=128))
    assert [start for start, _ in chunks] == [0, 128, 256]
    np.testing.assert_allclose(np.concatenate([c for _, c in chunks]), text.astype(np.float32))
    np.testing.assert_allclose(store.mmap("image"), image.astype(np.float32))
    unit = load_normalized(store, "image")
    np.testing.assert_allclose(np.linalg.norm(unit, axis=1), 1.0, rtol=1e-6)


def test_a_memory_url_store_is_read_in_chunks() -> None:
    url = "memory://rfm-curation-test/store"
    write_embeddings(url, ["a", "b"], {"joint": [[1.0, 0.0], [0.0, 2.0]]})
    store = EmbeddingStore(url)
    np.testing.assert_allclose(load_normalized(store, "joint"), [[1, 0], [0, 1]])
    with pytest.raises(ConfigError, match="memory maps need a local store"):
        store.mmap("joint")


@pytest.mark.parametrize(
    ("arrays", "ids", "match"),
    [
        ({"image": [[np.nan, 1.0], [1.0, 1.0]]}, ["a", "b"], r"embeddings\.image: row for sample_id 'a' contains NaN"),
        ({"image": [[1.0, 1.0], [np.inf, 1.0]]}, ["a", "b"], r"sample_id 'b' contains NaN or inf"),
        ({"image": [[1.0, 1.0, 1.0]]}, ["a", "b"], r"embeddings\.image: 1 rows for 2 ids"),
        ({"image": [[1.0], [2.0]]}, ["a", "a"], r"embeddings\.ids: duplicate sample ids"),
        ({"image": np.zeros((0, 4))}, [], r"empty input"),
    ],
)
def test_bad_embeddings_name_the_field_and_write_nothing(tmp_path: Path, arrays: dict[str, object],
                                                          ids: list[str], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        write_embeddings(str(tmp_path / "s"), ids, arrays)  # type: ignore[arg-type]
    assert not list(tmp_path.rglob("*.*")), "a failed write left files behind"


def test_a_dimension_mismatch_in_a_later_chunk_is_refused_without_output(tmp_path: Path) -> None:
    def write() -> None:
        with EmbeddingWriter(str(tmp_path / "s"), 4, {"image": 3}) as writer:
            writer.add(["a", "b"], {"image": np.ones((2, 3))})
            writer.add(["c", "d"], {"image": np.ones((2, 5))})

    with pytest.raises(ConfigError, match=r"embeddings\.image: expected shape \(rows, 3\)"):
        write()
    assert not list(tmp_path.rglob("*.*"))


def test_an_incomplete_store_is_refused(tmp_path: Path) -> None:
    def write() -> None:
        with EmbeddingWriter(str(tmp_path / "s"), 3, {"image": 2}) as writer:
            writer.add(["a", "b"], {"image": np.ones((2, 2))})

    with pytest.raises(ConfigError, match="2 rows added, count=3"):
        write()
    with pytest.raises(ConfigError, match="not an embedding store"):
        EmbeddingStore(str(tmp_path / "s"))


def test_zero_vectors_and_nan_from_foreign_writers_are_caught_at_load(tmp_path: Path) -> None:
    write_embeddings(str(tmp_path / "s"), ["a", "b"], {"image": [[1.0, 0.0], [1.0, 1.0]]})
    # Another tool rewrites the array in place (the .npy format is open): the loader must still check.
    np.save(tmp_path / "s" / "image.npy", np.array([[1.0, 0.0], [0.0, 0.0]], dtype=np.float32))
    with pytest.raises(ConfigError, match=r"embeddings\.image: row for sample_id 'b' is a zero vector"):
        load_normalized(EmbeddingStore(str(tmp_path / "s")), "image")
    np.save(tmp_path / "s" / "image.npy", np.array([[1.0, 0.0], [np.nan, 0.0]], dtype=np.float32))
    with pytest.raises(ConfigError, match="sample_id 'b' is NaN or inf"):
        load_normalized(EmbeddingStore(str(tmp_path / "s")), "image")
