"""``python -m rfm_eval``."""

from rfm_eval.cli import main

raise SystemExit(main())
