"""`python -m edge_tools.bench [--quick | --smoke] [--out docs/benchmarks.md]`: see `edge_tools.bench.cli`."""

import sys

from edge_tools.bench.cli import main

sys.exit(main())
