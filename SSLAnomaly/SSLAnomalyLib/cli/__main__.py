"""`python -m SSLAnomalyLib.cli ...` (how Slicer and torchrun start the command line)."""

import sys

from SSLAnomalyLib.cli import main

sys.exit(main())
