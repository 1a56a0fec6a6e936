"""Round-9 study (docs/model.md): `sslanomaly ARGS` with every model input gamma-corrected so that
its median grey maps to 0.65, to test whether the RSNA pipeline's darker, more contrasted films are
what makes its normals score above NIH pneumonia. Not a product option: it cost NIH dev AUROC.

    .venv/bin/python scripts/study_with_gamma_inputs.py train|evaluate ...   (the CLI's own arguments)
"""

import sys

import numpy as np

import SSLAnomalyLib.core.detection.detector as detector
import SSLAnomalyLib.training.feature_cache as feature_cache
import SSLAnomalyLib.training.fitting as fitting
from SSLAnomalyLib.cli import main
from SSLAnomalyLib.core.model import preprocess

TARGET = 0.65
plain = preprocess.to_model_input


def gamma_input(slice2d: np.ndarray, size: int) -> np.ndarray:
    x = plain(slice2d, size)
    median = min(max(float(np.median(x)), 1e-3), 0.999)
    return np.power(x, float(np.clip(np.log(TARGET) / np.log(median), 0.5, 2.0))).astype(np.float32)


for module in (preprocess, detector, feature_cache, fitting):
    module.to_model_input = gamma_input

if __name__ == "__main__":
    sys.argv = ["sslanomaly"] + sys.argv[1:]
    sys.exit(main())
