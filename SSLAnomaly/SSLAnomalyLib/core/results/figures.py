"""A score and its threshold as a reader sees them: rounded, they must still compare as they do
unrounded. At two decimals a score of 1.074 against the adult model's threshold 1.06859 read "score
1.07 (threshold 1.07): ABNORMAL", and 1.066 read the same numbers "within normal range"; so the
overlay, the Slicer panel and the findings JSON add decimals until the printed figures say which is
higher (the verdict is score > threshold). The percentile reads alike everywhere too (`percentile_text`):
the panel's "100th" for a rank of 99.6, and "94th" where the overlay and the verdict line said "93.8th"."""

from __future__ import annotations

MOST_DECIMALS = 17  # a float64 is exact in its repr by then


def rounded_apart(score: float, threshold: float, decimals: int) -> tuple[float, float, int]:
    """(score, threshold, d): both rounded to the fewest decimals d >= `decimals` at which they are
    equal only if equal, and the score higher only if it is higher (`rounded_together`)."""
    (score, threshold), d = rounded_together([score, threshold], decimals)
    return score, threshold, d


def rounded_together(values, decimals: int) -> tuple[list[float], int]:
    """(values, d): all rounded to the fewest decimals d >= `decimals` at which those that differ still
    differ. Rounding never reverses an order, so each then compares with each as it did unrounded: a
    finding's score above the pixel threshold, or the reader's sensitivity equal to it, stays so."""
    values = [float(v) for v in values]
    for d in range(decimals, MOST_DECIMALS):
        rounded = [round(v, d) for v in values]
        if len(set(rounded)) == len(set(values)):
            return rounded, d
    return values, MOST_DECIMALS


def score_texts(score: float, threshold: float, decimals: int = 2) -> tuple[str, str]:
    """The printed score and threshold (`rounded_apart`), e.g. ("1.074", "1.069")."""
    s, t, d = rounded_apart(score, threshold, decimals)
    return f"{s:.{d}f}", f"{t:.{d}f}"


def percentile_text(percentile: float) -> str:
    """The rank among normals as a reader says it: never "100.0th"."""
    if percentile > 99.9:
        return ">99.9th"
    if percentile < 0.1:
        return "<0.1th"
    return f"{percentile:.1f}th"
