#!/usr/bin/env python3
"""``python run_all.py``: every server variant, every scenario, one comparison report.

The suite lives in :mod:`loadgen.suite` (its command line: :mod:`loadgen.suite.cli`).
How to read a report: ``results/README.md``.
"""

import sys

from loadgen.suite.cli import main

if __name__ == "__main__":
    sys.exit(main())
