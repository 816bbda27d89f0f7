"""`python -m livefilter` runs the command line."""

import sys

from livefilter.cli import main

if __name__ == "__main__":
    sys.exit(main())
