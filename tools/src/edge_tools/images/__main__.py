import sys

from edge_tools.images.cli import main

sys.exit(main())
