"""rfm-curation: deduplication, quality filters and budgeted, balanced, long-tail-favouring data selection.

Importing the package registers the built-in strategies, filters and deduplication methods.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("rfm-curation")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0+unknown"

from rfm_curation import hkmeans, offline_bands  # noqa: F401  (register their strategies)
from rfm_curation.select import CurationConfig, CurationResult, curate

__all__ = ["CurationConfig", "CurationResult", "__version__", "curate"]
