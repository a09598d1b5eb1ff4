"""`python -m probes ...`: the command-line interface."""

from probes.cli import main

raise SystemExit(main())
