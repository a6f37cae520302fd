import sys

from rfm_data.cli import main

sys.exit(main())
