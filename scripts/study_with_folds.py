"""Round-9 study (docs/model.md): `sslanomaly train ARGS` with the thresholds cross-fitted on FOLDS
folds instead of 5, to test whether the out-of-fold scores of a site's normals sit above its new
normals' because each fold's reference lacks a fifth of them.

    FOLDS=20 .venv/bin/python scripts/study_with_folds.py train ...   (the CLI's own arguments)
"""

import functools
import os
import sys

import SSLAnomalyLib.training.crossfit as crossfit
import SSLAnomalyLib.training.fitting as fitting
from SSLAnomalyLib.cli import main

fitting.cross_fit = functools.partial(crossfit.cross_fit, folds=int(os.environ["FOLDS"]))

if __name__ == "__main__":
    sys.argv = ["sslanomaly"] + sys.argv[1:]
    sys.exit(main())
