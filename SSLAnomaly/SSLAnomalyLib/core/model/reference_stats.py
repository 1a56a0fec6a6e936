"""Sufficient statistics of the normal reference: sums that add over batches, folds and sites.

Everything `NormalReference` holds is a function of a few float64 sums, so a reference is fitted
streaming (memory does not grow with the number of normals), a cross-fitted reference "without
fold k" is the total minus fold k, and sites' sums merge into the exact fit on all their normals.

- The pooled Gaussian needs n, sum x, sum x x^T, sum ||x||^2 x and sum ||x||^4: the Ledoit-Wolf
  shrinkage (scikit-learn's `ledoit_wolf_shrinkage`) needs only the centred covariance S and
  sum ||x - m||^4, because ||x x^T - S||_F^2 = ||x||^4 - 2 x^T S x + ||S||_F^2; the centred
  fourth moment expands into the uncentred sums above.
- The patch means need the per-position sums.
- The shared patch covariance is taken on residuals to the nearest mean of the 3x3 neighbourhood,
  which needs the means first: a second pass accumulates the residuals' sums against given means
  (`means_digest` says which), and only residuals against the final means give the exact fit.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F


# The pooled embeddings have unit length (`encoder.pooled_features`), so the trace of their sum of
# x x^T is their number, to float32 rounding (1e-7 relative); a count off by more than this is not theirs.
UNIT_LENGTH_RTOL = 1e-4
# The same normals encoded on another device (a GPU, a CPU) sum to within float rounding, 1e-6 of the largest
# sum; other normals, even as many, differ by their spread: 2e-3 for two sets of 22 synthetic radiographs,
# falling as one over the root of their number (some 1e-4 for sets of 1e5)
SAME_NORMALS_RTOL = 1e-5


@dataclass
class MomentSums:
    """Sums over samples x (rows) of 1, x, x x^T, ||x||^2 x and ||x||^4, in float64."""

    n: int
    s1: np.ndarray
    s2: np.ndarray
    s3: np.ndarray
    s4: float

    @classmethod
    def zeros(cls, d: int) -> "MomentSums":
        return cls(0, np.zeros(d), np.zeros((d, d)), np.zeros(d), 0.0)

    @classmethod
    def of(cls, x: np.ndarray) -> "MomentSums":
        x = np.asarray(x, dtype=np.float64)
        sq = np.einsum("nd,nd->n", x, x)
        return cls(len(x), x.sum(0), x.T @ x, sq @ x, float(sq @ sq))

    def __add__(self, o: "MomentSums") -> "MomentSums":
        return MomentSums(self.n + o.n, self.s1 + o.s1, self.s2 + o.s2, self.s3 + o.s3, self.s4 + o.s4)

    def __sub__(self, o: "MomentSums") -> "MomentSums":
        return MomentSums(self.n - o.n, self.s1 - o.s1, self.s2 - o.s2, self.s3 - o.s3, self.s4 - o.s4)

    def ledoit_wolf(self, centred: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """(mean, shrunk covariance) exactly as scikit-learn's `LedoitWolf(assume_centered=centred)`
        computes them on the samples, from the sums alone."""
        n, p = self.n, len(self.s1)
        m = np.zeros(p) if centred else self.s1 / n
        c = float(m @ m)
        cov = self.s2 / n - np.outer(m, m)
        fourth = (self.s4 - 4 * m @ self.s3 + 4 * m @ self.s2 @ m + 2 * c * np.trace(self.s2)
                  - 4 * c * (m @ self.s1) + n * c * c)  # sum ||x - m||^4
        mu = np.trace(cov) / p
        frobenius = float(np.sum(cov * cov))  # ||S||_F^2
        delta = (frobenius - 2 * mu * np.trace(cov) + p * mu * mu) / p
        beta = min((fourth / n - frobenius) / (p * n), delta)
        shrinkage = 0.0 if beta == 0 else beta / delta
        shrunk = (1 - shrinkage) * cov
        shrunk.flat[:: p + 1] += shrinkage * mu
        return m, shrunk

    def arrays(self, prefix: str) -> dict[str, np.ndarray]:
        return {f"{prefix}.n": np.array([self.n], np.int64), f"{prefix}.s1": self.s1, f"{prefix}.s2": self.s2,
                f"{prefix}.s3": self.s3, f"{prefix}.s4": np.array([self.s4])}

    def could_be_samples(self) -> bool:
        """Whether these could be the sums of `n` real feature vectors: a symmetric second moment,
        every variance at least 0 and some above 0 (features of different images differ), and
        ||x||^4 at least what ||x||^2 implies (Cauchy-Schwarz). A hand-edited or damaged file fails.
        Under two samples there is no spread to judge (the count rules refuse so few)."""
        n, s1, s2 = self.n, self.s1, self.s2
        if n < 2:
            return True
        with np.errstate(all="ignore"):  # sums near the float limit overflow here: they fail, with no warning
            scale = max(np.float64(np.abs(s2).max()), np.float64(1e-300))
            variance = n * np.diag(s2) - s1 ** 2
            fourth = np.float64(self.s4) * n - np.square(np.trace(s2)) * (1 - 1e-9)
            return bool(np.isfinite(variance).all() and np.isfinite(fourth)
                        and np.allclose(s2, s2.T, rtol=0, atol=1e-9 * scale) and (variance >= -1e-9 * n * scale).all()
                        and variance.sum() > 0 and fourth >= 0)

    @classmethod
    def from_arrays(cls, a: dict[str, np.ndarray], prefix: str) -> "MomentSums":
        return cls(int(a[f"{prefix}.n"][0]), *(np.asarray(a[f"{prefix}.{k}"], np.float64) for k in ("s1", "s2", "s3")),
                   float(a[f"{prefix}.s4"][0]))


def precision(covariance: np.ndarray) -> np.ndarray:
    """The inverse of a shrunk covariance. Shrinkage makes it positive definite, so this is the
    pseudo-inverse scikit-learn stores (`scipy.linalg.pinvh`, to 1e-14), at a tenth of the time."""
    return np.linalg.inv(covariance)


def means_digest(means: np.ndarray) -> str:
    """Which patch means residuals were taken against (float32, as the reference holds them)."""
    return hashlib.sha256(np.ascontiguousarray(means, dtype=np.float32).tobytes()).hexdigest()[:16]


class NeighbourMeans:
    """Each position's mean and its eight neighbours' (the shifts a patch is compared with), laid
    out once per reference: one small product per position then costs a tenth of re-laying the
    means out for every image."""

    def __init__(self, means: np.ndarray) -> None:
        m = torch.from_numpy(np.asarray(means, dtype=np.float32))
        c, h, w = m.shape
        padded = F.pad(m[None], (1, 1, 1, 1), mode="replicate")[0]
        # (9, c, h, w)
        self.shifted = torch.stack([padded[:, dy:dy + h, dx:dx + w] for dy in range(3) for dx in range(3)])
        self.by_position = self.shifted.flatten(2).permute(2, 1, 0).contiguous()  # (h w, c, 9)
        self.norms = (self.shifted * self.shifted).sum(1).flatten(1).T[:, None, :]  # (h w, 1, 9)

    def residuals(self, patches: torch.Tensor) -> torch.Tensor:
        """Residual of each patch (n, c, h, w) to the closest (Euclidean) of its position's nine
        means: small shifts in positioning are not mistaken for anomalies."""
        _, c, h, w = self.shifted.shape
        # ||x - m||^2 = ||x||^2 - 2 x.m + ||m||^2: per position one small product, not nine full differences
        d = self.norms - 2 * torch.bmm(patches.flatten(2).permute(2, 0, 1), self.by_position)  # (h w, n, 9)
        nearest = d.argmin(2)  # (h w, n): the first of equally near means
        # picked from the per-position layout (h w, c, 9): a third of the time of a gather from the
        # (n, 9, c, h, w) expansion of the shifted means, the same values
        chosen = torch.gather(self.by_position, 2, nearest[:, None, :].expand(-1, c, -1))  # (h w, c, n)
        return patches - chosen.permute(2, 1, 0).reshape(len(patches), c, h, w)


def residual_sums(patches: torch.Tensor, neighbours: NeighbourMeans) -> MomentSums:
    """The residuals' sums of a batch of patch features against a reference's means (the second pass)."""
    r = neighbours.residuals(patches)
    return MomentSums.of(r.permute(0, 2, 3, 1).reshape(-1, r.shape[1]).numpy())


@dataclass
class PositionSums:
    """Per-position sums of normals' patch distance maps (n, h, w) and of their squares: each
    position's normal distance, mean and spread (`NormalReference.with_positions`)."""

    n: int
    s1: np.ndarray  # (h, w) float64
    s2: np.ndarray

    @classmethod
    def of(cls, maps: np.ndarray) -> "PositionSums":
        d = np.asarray(maps, dtype=np.float64)
        return cls(len(d), d.sum(0), (d * d).sum(0))

    def __add__(self, o: "PositionSums") -> "PositionSums":
        return PositionSums(self.n + o.n, self.s1 + o.s1, self.s2 + o.s2)

    def __sub__(self, o: "PositionSums") -> "PositionSums":
        return PositionSums(self.n - o.n, self.s1 - o.s1, self.s2 - o.s2)

    def mean_std(self) -> tuple[np.ndarray, np.ndarray, float]:
        """Each position's mean and standard deviation, and the standard deviation of all values."""
        mean = self.s1 / self.n
        overall = self.s1.sum() / (self.n * self.s1.size)
        spread_all = np.sqrt(max(self.s2.sum() / (self.n * self.s1.size) - overall ** 2, 0.0))
        return mean, np.sqrt(np.maximum(self.s2 / self.n - mean ** 2, 0)), float(spread_all)


@dataclass
class ReferenceStats:
    """What a set of normal images contributes to a normal reference: the pooled embeddings' sums,
    the per-position patch sums, and (second pass) the residual sums against `means_digest`."""

    pooled: MomentSums
    patch_sum: np.ndarray              # (c, h, w) float64
    n_images: int
    residual: MomentSums | None = None
    means_digest: str | None = None

    @classmethod
    def zeros(cls, d: int, shape: tuple[int, int, int]) -> "ReferenceStats":
        return cls(MomentSums.zeros(d), np.zeros(shape), 0)

    @classmethod
    def of(cls, pooled: np.ndarray, patches: torch.Tensor) -> "ReferenceStats":
        """First-pass sums of a batch: pooled (n, d), patches (n, c, h, w)."""
        return cls(MomentSums.of(pooled), patches.double().sum(0).numpy(), len(pooled))

    def __add__(self, o: "ReferenceStats") -> "ReferenceStats":
        return ReferenceStats(self.pooled + o.pooled, self.patch_sum + o.patch_sum, self.n_images + o.n_images,
                              *self._residuals(o, lambda a, b: a + b))

    def __sub__(self, o: "ReferenceStats") -> "ReferenceStats":
        return ReferenceStats(self.pooled - o.pooled, self.patch_sum - o.patch_sum, self.n_images - o.n_images,
                              *self._residuals(o, lambda a, b: a - b))

    def _residuals(self, o: "ReferenceStats", op) -> tuple[MomentSums | None, str | None]:
        if self.residual is None or o.residual is None or self.means_digest != o.means_digest:
            return None, None
        return op(self.residual, o.residual), self.means_digest

    def patch_means(self) -> np.ndarray:
        return (self.patch_sum / self.n_images).astype(np.float32)

    def with_residuals(self, residual: MomentSums, means: np.ndarray) -> "ReferenceStats":
        return ReferenceStats(self.pooled, self.patch_sum, self.n_images, residual, means_digest(means))

    @property
    def exact(self) -> bool:
        """Whether the residuals were taken against these statistics' own patch means."""
        return self.residual is not None and self.means_digest == means_digest(self.patch_means())

    def problem(self, pooled_size: int, patch_shape: tuple[int, int, int]) -> str | None:
        """What in these sums could not come from `n_images` normals under a model of these feature
        sizes (an edited or damaged file, merged otherwise into a wrong reference), or None."""
        c, h, w = patch_shape
        p, r = self.pooled, self.residual
        sums = {"pooled.s1": (p.s1, (pooled_size,)), "pooled.s2": (p.s2, (pooled_size, pooled_size)),
                "pooled.s3": (p.s3, (pooled_size,)), "patch_sum": (self.patch_sum, (c, h, w))}
        if r is not None:
            sums.update({"residual.s1": (r.s1, (c,)), "residual.s2": (r.s2, (c, c)), "residual.s3": (r.s3, (c,))})
        for name, (value, shape) in sums.items():
            if value.shape != shape:
                return f"{name} has shape {value.shape}; this model's features need {shape}"
        if p.n != self.n_images or (r is not None and r.n != self.n_images * h * w):
            return (f"its counts disagree ({self.n_images} normals, pooled sums of {p.n}"
                    + (f", residual sums of {r.n} patches" if r is not None else "") + ")")
        if not all(np.isfinite(v).all() for v, _ in sums.values()) or not np.isfinite([p.s4] + ([r.s4] if r else [])).all():
            return "it holds non-finite sums"
        spread = next((name for name, m in (("pooled", p), ("residual", r)) if m is not None and not m.could_be_samples()), None)
        if spread is not None:
            return f"its {spread} moments are sums no normals could give (a variance below 0, or none at all)"
        lengths = float(np.trace(p.s2))  # sum ||x||^2: the count itself, the embeddings being of unit length
        if not np.isclose(lengths, p.n, rtol=UNIT_LENGTH_RTOL, atol=0):
            return (f"it counts {p.n} normals but its pooled sums are of {lengths:.6g} unit-length embeddings "
                    "(a count changed without its sums)")
        return None

    def same_normals(self, o: "ReferenceStats") -> bool:
        """Whether `o` holds these normals' sums (a site's file given twice, or computed on two devices):
        the same count, and pooled and patch sums equal to SAME_NORMALS_RTOL of their largest entry."""
        pairs = ((self.pooled.s1, o.pooled.s1), (self.patch_sum, o.patch_sum))
        return self.n_images == o.n_images and all(np.abs(a - b).max() <= SAME_NORMALS_RTOL * np.abs(a).max()
                                                   for a, b in pairs)

    def fingerprint(self) -> str:
        """Which normals these sums are of (the same images give the same pooled and patch sums)."""
        h = hashlib.sha256(np.array([self.n_images], np.int64).tobytes())
        for value in (self.pooled.s1, self.patch_sum):
            h.update(np.ascontiguousarray(value, np.float64).tobytes())
        return h.hexdigest()[:16]

    def arrays(self) -> dict[str, np.ndarray]:
        a = {**self.pooled.arrays("pooled"), "patch_sum": self.patch_sum, "n_images": np.array([self.n_images], np.int64)}
        if self.residual is not None:
            a.update(self.residual.arrays("residual"))
        return a

    @classmethod
    def from_arrays(cls, a: dict[str, np.ndarray], means_digest: str | None) -> "ReferenceStats":
        residual = MomentSums.from_arrays(a, "residual") if "residual.n" in a else None
        return cls(MomentSums.from_arrays(a, "pooled"), np.asarray(a["patch_sum"], np.float64), int(a["n_images"][0]),
                   residual, means_digest if residual is not None else None)
