"""`python -m vptbench.cli`, as the `vptbench` script."""

import sys

from vptbench.cli import app

sys.exit(app())
