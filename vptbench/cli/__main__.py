"""`python -m vptbench.cli`, as the `vptbench` script."""

import sys

from vptbench.cli import app

if __name__ == "__main__":  # not when a spawned child process imports it
    sys.exit(app())
