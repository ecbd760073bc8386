"""`python -m gdws.cli ...`: the same as the `gdws` console script."""
import sys

from gdws.cli.commands import main

sys.exit(main())
