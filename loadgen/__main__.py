"""``python -m loadgen``: the load engine's command line (see :mod:`loadgen.engine.cli`)."""

import sys

from loadgen.engine.cli import main

if __name__ == "__main__":
    sys.exit(main())
