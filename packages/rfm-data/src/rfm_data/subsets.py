"""Sample-id subsets: which samples of a dataset a training run or an evaluation uses.

A subset is given by URL, in any of the forms a user or a pipeline step has at hand:

- a folder holding ``selection.parquet`` (what ``rfm-curate run`` writes): the rows with ``kept`` true;
- a Parquet table with a ``sample_id`` column (and optionally a boolean ``kept`` or ``curation_kept``
  column, e.g. a curated manifest): the ids whose flag is true, or all of them without a flag;
- a text file with one sample id per line (``#`` comments and blank lines ignored).

The loaders take the result as ``ids=`` (:class:`rfm_data.loader.StreamingShardDataset`, ``ShardDataset``).
"""

from __future__ import annotations

import numpy as np

from rfm_data import io
from rfm_data.errors import ConfigError

SELECTION_NAME = "selection.parquet"
_FLAG_COLUMNS = ("kept", "curation_kept")

__all__ = ["SELECTION_NAME", "read_sample_ids"]


def _ids_from_table(url: str) -> frozenset[str]:
    table = io.read_parquet(url)
    if "sample_id" not in table.column_names:
        raise ConfigError(f"{url}: a subset table needs a 'sample_id' column; it has {table.column_names}")
    ids = np.asarray(table.column("sample_id").to_pylist(), dtype=object)
    for flag in _FLAG_COLUMNS:
        if flag in table.column_names:
            keep = np.asarray(table.column(flag).fill_null(False).to_pylist(), dtype=bool)
            return frozenset(str(i) for i in ids[keep])
    return frozenset(str(i) for i in ids)


def _ids_from_text(url: str) -> frozenset[str]:
    lines = (line.strip() for line in io.read_text(url).splitlines())
    return frozenset(line for line in lines if line and not line.startswith("#"))


def read_sample_ids(url: str) -> frozenset[str]:
    """The sample ids of the subset at ``url`` (see the module docstring for the accepted forms).

    Raises:
        ConfigError: nothing at ``url``, a table without ``sample_id``, or an empty subset.
    """
    if io.exists(io.join(url, SELECTION_NAME)):
        url = io.join(url, SELECTION_NAME)
    elif not io.exists(url):
        raise ConfigError(f"subset {url} does not exist: give a curation output folder, a Parquet table with "
                          "sample_id, or a text file of ids")
    ids = _ids_from_table(url) if url.endswith(".parquet") else _ids_from_text(url)
    if not ids:
        raise ConfigError(f"subset {url} selects no sample: nothing to train or evaluate on")
    return ids
