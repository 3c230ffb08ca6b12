"""Allow ``python -m bids_glm``."""

import sys

from bids_glm.cli.main import main

sys.exit(main())
