"""SSLAnomaly core: self-supervised, anatomy-aware anomaly detection in chest radiographs.

Pure Python (numpy, torch, MONAI, SimpleITK, pydicom, scikit-learn); nothing here imports Slicer
except the mrml glue modules, which are only imported by the Slicer module and `--mrb`.
"""

__version__ = "0.1.0"
