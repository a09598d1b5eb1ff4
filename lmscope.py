"""The command line: `python -m lmscope <command> ...` prints a probe's results as JSON (see views.cli)."""

import sys

from views.cli import main

if __name__ == "__main__":
    sys.exit(main())
