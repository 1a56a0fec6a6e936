"""Calibration from normal images only: percentiles and thresholds at a stated false-positive rate.

The held-back normals' scores travel with the model, so every result can say where it ranks among
normals and whether it crosses the threshold chosen for the stated false-positive rate. No abnormal
image is ever used here.

Thresholds by rank (`rule="rank"`, models calibrated from this round on): with n calibration
scores, the threshold is the k-th smallest, k = ceil((n + 1)(1 - FPR)). For a new normal
exchangeable with the calibration normals, the chance to score above it is then (n + 1 - k)/(n + 1)
<= FPR, and given the calibration set its false-positive rate is Beta(n + 1 - k, k) distributed:
`expected_fpr` states its mean and a 90 % interval. With fewer than five normals above the
threshold (n - k < 5: n < 119 at 5 %) that interval is wide, and `unstable` says so. An FPR below 1/(n + 1)
cannot be met at all: k would be n + 1, so the threshold is the highest normal, which a new normal
exceeds with probability 1/(n + 1), above the rate asked; `unmet` says so. Older models keep the
interpolated quantile (`rule="quantile"`) they were made with.

Normals set aside (`Calibration.of_normals`): a site's "normals" are labelled by reports or by NLP
and hold a few abnormal chests (the NIH train "No Finding" images hold whole-hemithorax white-outs
that score like the worst pneumonia); at 7 % of 204 normals, a dozen of them decide the threshold
and leave new, truly normal radiographs far below it. Normals beyond Tukey's far-out fence of the
out-of-fold scores (Q3 + 3 IQR, a rule fixed in advance, never tuned) are set aside: not counted
in the thresholds, stated in the manifest and the card for the site to review. A clean set of
normals has none there, and its thresholds are exactly as before.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

DEFAULT_FPR = 0.05
INTERVAL = 0.9           # the stated interval of the false-positive rate on new normals
MIN_ABOVE = 5            # fewer than this many calibration normals above the threshold (n - k): unstable
FAR_OUT = 3.0            # Tukey's far-out fence: normals above Q3 + FAR_OUT x IQR are set aside
STATED_TOLERANCE = 1e-5  # a stated threshold and its scores' agree to this (relative); scores are stored to 6 decimals


def stable_from(fpr: float) -> int:
    """The fewest normals whose threshold at `fpr` has MIN_ABOVE above it: n - k = floor((n + 1) FPR) - 1."""
    return int(np.ceil((MIN_ABOVE + 1) / fpr)) - 1


@dataclass
class ExpectedFPR:
    """The false-positive rate on new normals that a threshold at rank k of n normals implies."""

    mean: float
    low: float
    high: float
    n: int
    above: int  # calibration normals above the threshold
    fpr: float  # the false-positive rate asked for

    @classmethod
    def at_rank(cls, k: int, n: int, fpr: float) -> "ExpectedFPR":
        from scipy.stats import beta  # here: detection never needs it

        a, b = n + 1 - k, k
        low, high = (0.0, 1.0) if a <= 0 else beta.ppf([(1 - INTERVAL) / 2, (1 + INTERVAL) / 2], a, b)
        return cls(max(a, 0) / (n + 1), float(low), float(high), n, n - k, fpr)

    @property
    def unstable(self) -> bool:
        """Fewer than MIN_ABOVE normals above the threshold, as the line says: n x FPR < 5 passed 100
        to 118 normals at 5 %, which leave 4 above it."""
        return self.above < MIN_ABOVE

    @property
    def unmet(self) -> bool:
        """Whether the rate asked is below the 1/(n + 1) that no threshold on n normals gets under."""
        return self.fpr * (self.n + 1) < 1

    def text(self) -> str:
        """One line for the command line and the model card."""
        line = (f"expected false-positive rate on new normals {100 * self.mean:.1f} % "
                f"({100 * INTERVAL:.0f} % interval {100 * self.low:.1f}-{100 * self.high:.1f} %, {self.n} normals, "
                f"{self.above} above the threshold)")
        if self.unmet:
            line += (f"; the {100 * self.fpr:g} % asked cannot be met on {self.n} normals: the threshold is the "
                     f"highest of them, which a new normal exceeds at {100 / (self.n + 1):.1f} % (at least "
                     f"{int(np.ceil(1 / self.fpr)) - 1} normals are needed for {100 * self.fpr:g} %)")
        if self.unstable:
            line += (f"; unstable: a {100 * self.fpr:g} % threshold on {self.n} normals has fewer than {MIN_ABOVE} above "
                     f"it; calibrate on at least {stable_from(self.fpr)} normals for a stable one")
        return line

    def to_dict(self) -> dict:
        return {"mean": round(self.mean, 6), "low": round(self.low, 6), "high": round(self.high, 6),
                "interval": INTERVAL, "n_normals": self.n, "above_threshold": self.above, "unstable": self.unstable,
                "unmet": self.unmet}


@dataclass
class Calibration:
    normal_scores: np.ndarray      # image scores of the calibration normals, sorted
    normal_peaks: np.ndarray       # per-image peak of the in-lung heatmap of the same normals, sorted
    false_positive_rate: float = DEFAULT_FPR
    rule: str = "quantile"         # "rank": the conformal order statistic; "quantile": interpolated (older models)
    set_aside: np.ndarray = field(default_factory=lambda: np.zeros(0))  # scores of the normals left out (far out)
    set_aside_files: list[str] = field(default_factory=list)            # their file names, highest score first

    def __post_init__(self):
        self.normal_scores = np.sort(np.asarray(self.normal_scores, dtype=np.float64))
        self.normal_peaks = np.sort(np.asarray(self.normal_peaks, dtype=np.float64))
        self.set_aside = np.sort(np.asarray(self.set_aside, dtype=np.float64))
        if not len(self.normal_scores) or len(self.normal_peaks) != len(self.normal_scores):
            # the thresholds are ranks among them: without one of each per normal they are no one's
            raise ValueError(f"needs one score and one peak per calibration normal, and at least one normal: "
                             f"{len(self.normal_scores)} scores, {len(self.normal_peaks)} peaks")
        if not 0 < self.false_positive_rate < 1:
            raise ValueError("false_positive_rate must be between 0 and 1")
        if self.rule not in ("rank", "quantile"):
            raise ValueError(f"unknown threshold rule {self.rule!r}")

    @classmethod
    def of_normals(cls, scores, peaks, fpr: float, names=None) -> "Calibration":
        """The rank-rule calibration of out-of-fold `scores` and `peaks` (one each per normal, named
        by `names`), with the normals beyond the far-out fence set aside (module docstring)."""
        scores, peaks = np.asarray(scores, np.float64), np.asarray(peaks, np.float64)
        q1, q3 = np.quantile(scores, [0.25, 0.75])
        far = scores > q3 + FAR_OUT * (q3 - q1)
        files = [] if names is None else [str(names[i]) for i in np.flatnonzero(far)[np.argsort(-scores[far])]]
        return cls(scores[~far], peaks[~far], fpr, "rank", scores[far], files)

    @property
    def rank(self) -> int:
        """k: the threshold is the k-th smallest calibration value (rule "rank"; n + 1 means none is
        high enough, and the threshold is the highest)."""
        return int(np.ceil((len(self.normal_scores) + 1) * (1 - self.false_positive_rate)))

    def _at(self, values: np.ndarray) -> float:
        if self.rule == "quantile":
            return float(np.quantile(values, 1 - self.false_positive_rate))
        return float(values[min(self.rank, len(values)) - 1])

    @property
    def threshold(self) -> float:
        """Image score above which a new normal falls with probability at most `false_positive_rate`."""
        return self._at(self.normal_scores)

    @property
    def pixel_threshold(self) -> float:
        """Heatmap value that new normal images reach anywhere in the lungs with probability at most
        `false_positive_rate`: a region above it is a finding on only that share of normal radiographs.
        Image and pixel thresholds are set at the same rank, so `--fpr` moves both together."""
        return self._at(self.normal_peaks)

    def expected_fpr(self) -> ExpectedFPR:
        """The false-positive rate the image threshold implies on new normals, with its interval."""
        n = len(self.normal_scores)
        k = int(np.searchsorted(self.normal_scores, self.threshold, side="right"))
        return ExpectedFPR.at_rank(k, n, self.false_positive_rate)

    def text(self) -> str:
        """The expected false-positive rate, and the normals set aside, in one line for the command
        line and the model card."""
        line = self.expected_fpr().text()
        if len(self.set_aside):
            which = ", ".join(self.set_aside_files) or ", ".join(f"{s:.2f}" for s in self.set_aside[::-1])
            line += (f"; {len(self.set_aside)} normal(s) set aside, scoring far beyond the others "
                     f"({which}): likely abnormal, review them")
        return line

    def percentile(self, score: float) -> float:
        """Share (0-100) of calibration normals scoring at or below `score`."""
        return float(100.0 * np.searchsorted(self.normal_scores, score, side="right") / len(self.normal_scores))

    def far_beyond_normals(self, score: float) -> bool:
        """Whether `score` exceeds the highest calibration normal by more than the normals' own
        10th-90th percentile range: more unlike the training images than abnormal chests usually
        are, the mark of an input that may not be a frontal chest radiograph at all. The normals set
        aside do not count: they lie far out by definition (the adult model's are white-outs up to
        11.05, where a shuffled-tile mosaic scores 12.7), and the warning says that a chest this far
        out is strongly abnormal."""
        low, high = np.quantile(self.normal_scores, [0.1, 0.9])
        return bool(score > self.normal_scores[-1] + (high - low))

    def with_false_positive_rate(self, fpr: float) -> "Calibration":
        return Calibration(self.normal_scores, self.normal_peaks, fpr, self.rule, self.set_aside, self.set_aside_files)

    def to_dict(self) -> dict:
        """The calibration as a manifest states it: its scores to 6 decimals, and the thresholds of
        those scores, which is what a model loaded from it applies (thresholds from the unrounded
        scores differed in the 7th decimal, and a score between the two got opposite verdicts)."""
        stated = Calibration(*(np.asarray([round(float(s), 6) for s in values], np.float64)
                               for values in (self.normal_scores, self.normal_peaks)),
                             self.false_positive_rate, self.rule,
                             np.asarray([round(float(s), 6) for s in self.set_aside], np.float64), self.set_aside_files)
        return {"false_positive_rate": stated.false_positive_rate, "threshold": stated.threshold,
                "pixel_threshold": stated.pixel_threshold, "n_normals": int(len(stated.normal_scores)),
                "rule": stated.rule, "expected_fpr": stated.expected_fpr().to_dict(),
                "normal_scores": stated.normal_scores.tolist(), "normal_peaks": stated.normal_peaks.tolist(),
                "set_aside_scores": stated.set_aside.tolist(), "set_aside_files": list(stated.set_aside_files),
                "set_aside_rule": f"out-of-fold score above Q3 + {FAR_OUT:g} IQR (Tukey's far-out fence)"}

    @classmethod
    def from_dict(cls, d: dict) -> "Calibration":
        """The calibration a manifest states. The thresholds it states must be those of its scores (to
        the 6 decimals scores are stored at): a model applies the scores', so a stated one edited by
        hand (-5, 1e308) was shown by `models` and the card while another decided every verdict."""
        calibration = cls(np.asarray(d["normal_scores"]), np.asarray(d["normal_peaks"]), d["false_positive_rate"],
                          d.get("rule", "quantile"), np.asarray(d.get("set_aside_scores", [])),
                          d.get("set_aside_files", []))
        for key, applied in (("threshold", calibration.threshold), ("pixel_threshold", calibration.pixel_threshold)):
            stated = d.get(key)
            if stated is not None and not abs(float(stated) - applied) <= STATED_TOLERANCE * max(1.0, abs(applied)):
                raise ValueError(f"{key} {stated} is not the {applied:.6g} its normal scores give at false-positive "
                                 f"rate {calibration.false_positive_rate:g}")
        return calibration
