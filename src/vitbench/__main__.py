"""``python -m vitbench ...`` runs the command line (as ``accelerate launch -m vitbench ...`` does)."""

import sys

from vitbench.cli.main import main

sys.exit(main())
