"""The command line: `lmscope <command> ...` or `python -m lmscope <command> ...` prints a probe's results as JSON
(see views.cli)."""

import sys

from views.cli import main


def run() -> None:
    """The `lmscope` command (pyproject.toml's script)."""
    sys.exit(main())


if __name__ == "__main__":
    run()
