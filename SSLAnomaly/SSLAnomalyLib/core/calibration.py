"""Calibration from normal images only: percentiles and thresholds at a stated false-positive rate.

The held-back normals' scores travel with the model, so every result can say where it ranks among
normals and whether it crosses the threshold chosen for the stated false-positive rate. No abnormal
image is ever used here.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

DEFAULT_FPR = 0.05


@dataclass
class Calibration:
    normal_scores: np.ndarray      # image scores of the calibration normals, sorted
    normal_peaks: np.ndarray       # per-image peak of the in-lung heatmap of the same normals, sorted
    false_positive_rate: float = DEFAULT_FPR

    def __post_init__(self):
        self.normal_scores = np.sort(np.asarray(self.normal_scores, dtype=np.float64))
        self.normal_peaks = np.sort(np.asarray(self.normal_peaks, dtype=np.float64))
        if not 0 < self.false_positive_rate < 1:
            raise ValueError("false_positive_rate must be between 0 and 1")

    @property
    def threshold(self) -> float:
        """Image score above which at most `false_positive_rate` of normals fall."""
        return float(np.quantile(self.normal_scores, 1 - self.false_positive_rate))

    @property
    def pixel_threshold(self) -> float:
        """Heatmap value that at most `false_positive_rate` of normal images reach anywhere in the
        lungs: a region above it is a finding on only that share of normal radiographs."""
        return float(np.quantile(self.normal_peaks, 1 - self.false_positive_rate))

    def percentile(self, score: float) -> float:
        """Share (0-100) of calibration normals scoring at or below `score`."""
        return float(100.0 * np.searchsorted(self.normal_scores, score, side="right") / len(self.normal_scores))

    def far_beyond_normals(self, score: float) -> bool:
        """Whether `score` exceeds the highest calibration normal by more than the normals' own
        10th-90th percentile range: more unlike the training images than abnormal chests usually
        are, the mark of an input that may not be a frontal chest radiograph at all."""
        low, high = np.quantile(self.normal_scores, [0.1, 0.9])
        return bool(score > self.normal_scores[-1] + (high - low))

    def with_false_positive_rate(self, fpr: float) -> "Calibration":
        return Calibration(self.normal_scores, self.normal_peaks, fpr)

    def to_dict(self) -> dict:
        return {"false_positive_rate": self.false_positive_rate, "threshold": self.threshold,
                "pixel_threshold": self.pixel_threshold, "n_normals": int(len(self.normal_scores)),
                "normal_scores": [round(float(s), 6) for s in self.normal_scores],
                "normal_peaks": [round(float(s), 6) for s in self.normal_peaks]}

    @classmethod
    def from_dict(cls, d: dict) -> "Calibration":
        return cls(np.asarray(d["normal_scores"]), np.asarray(d["normal_peaks"]), d["false_positive_rate"])
