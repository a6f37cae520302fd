"""rfm-curation: deduplication, quality filters and budgeted, balanced, long-tail-favouring data selection (offline and online)."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("rfm-curation")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0+unknown"

__all__ = ["__version__"]
