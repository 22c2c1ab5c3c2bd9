"""`python -m mix`: the same entry point as the `mix` command."""

import sys

from mix.cli import main

sys.exit(main())
