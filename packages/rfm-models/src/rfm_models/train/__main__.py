"""``python -m rfm_models.train …``: the torchrun-compatible entry point (same as ``rfm-train``)."""

import sys

from rfm_models.train.cli import main

if __name__ == "__main__":
    sys.exit(main())
