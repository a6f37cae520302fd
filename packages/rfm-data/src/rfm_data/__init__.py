"""rfm-data: radiology data ingestion, de-identification, reports, manifests, shards and fast loading."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("rfm-data")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0+unknown"

__all__ = ["__version__"]
