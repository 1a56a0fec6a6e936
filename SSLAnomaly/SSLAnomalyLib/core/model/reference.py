"""The normal reference: what normal radiographs look like in the encoder's feature space.

Two complementary statistics, both fitted on normal images only and both of fixed size whatever
the number of normals (so scoring cost never grows with the training set):

- image level: one Gaussian over pooled, L2-normalised embeddings with Ledoit-Wolf shrinkage;
  the score is the Mahalanobis distance (the AnatPaste scoring);
- patch level: a chest radiograph has a fixed layout, so each feature-map position gets its own
  mean, and residuals share one Ledoit-Wolf covariance (a compact PaDiM). A patch is compared with
  the nearest of the means in its 3x3 neighbourhood, which tolerates small shifts in positioning.
  Optionally (`standardise_positions`) each position's distance is then expressed against what held-out
  normals show there (mean and spread): lung borders, clavicles and the heart edge vary a lot between
  normal radiographs, so a raw distance map peaks on them; a standardised one peaks where the image
  is unusual for that position.
"""

from __future__ import annotations

import numpy as np
import torch

from SSLAnomalyLib.core.model.reference_stats import (NeighbourMeans, PositionSums, ReferenceStats, precision,
                                                      residual_sums)

POSITION_OFFSET = 3.0    # standardised maps are z + 3, so normal tissue sits well above 0


class NormalReference:
    def __init__(self, pooled_mean=None, pooled_precision=None, patch_means=None,
                 patch_precision=None, distance_mean=None, distance_std=None):
        self.pooled_mean = pooled_mean
        self.pooled_precision = pooled_precision
        self.patch_means = patch_means          # (channels, h, w)
        self.patch_precision = patch_precision  # (channels, channels)
        self.distance_mean = distance_mean      # (h, w) normals' patch distance per position, or None
        self.distance_std = distance_std        # (h, w)
        self._neighbours: NeighbourMeans | None = None

    def fit(self, pooled: np.ndarray, patches: np.ndarray) -> "NormalReference":
        """pooled: (n, d) embeddings; patches: (n, c, h, w) patch features of normal images, in memory
        (a small fit: checkpoint selection). Large fits stream the same sums (`ReferenceStats`)."""
        patches = torch.from_numpy(np.asarray(patches))
        stats = ReferenceStats.of(pooled, patches)
        means = stats.patch_means()
        residuals = residual_sums(patches, NeighbourMeans(means))
        vars(self).update(vars(self.from_stats(stats.with_residuals(residuals, means))))
        return self

    @classmethod
    def from_stats(cls, stats: ReferenceStats) -> "NormalReference":
        """The reference of first- and second-pass sums: the Ledoit-Wolf Gaussians of the pooled
        embeddings and of the patch residuals, and the per-position means."""
        if stats.residual is None:
            raise ValueError("the patch residual sums (second pass) are missing")
        mean, cov = stats.pooled.ledoit_wolf()
        _, residual_cov = stats.residual.ledoit_wolf(centred=True)
        return cls(mean.astype(np.float32), precision(cov).astype(np.float32), stats.patch_means(),
                   precision(residual_cov).astype(np.float32))

    def _nearest_residuals(self, patches: torch.Tensor) -> torch.Tensor:
        if self._neighbours is None:  # laid out once per reference (`fit` replaces it with the rest)
            self._neighbours = NeighbourMeans(self.patch_means)
        return self._neighbours.residuals(patches)

    def pooled_score(self, pooled: np.ndarray) -> np.ndarray:
        """Mahalanobis distance of each embedding to the normal Gaussian: (n,)."""
        d = pooled - self.pooled_mean
        return np.sqrt(np.maximum(np.einsum("nd,de,ne->n", d, self.pooled_precision, d), 0))

    def fit_positions(self, patches: np.ndarray) -> "NormalReference":
        """Learn each position's normal distance (mean, spread) from held-out normals' patches."""
        fitted = self.with_positions(PositionSums.of(self.raw_patch_map(torch.from_numpy(patches)).numpy()))
        self.distance_mean, self.distance_std = fitted.distance_mean, fitted.distance_std
        return self

    def with_positions(self, sums: PositionSums | None) -> "NormalReference":
        """This reference with each position's normal distance from held-out normals' distance sums
        (None: raw distances). The spread has a floor, a tenth of the spread over all positions, so
        that no position divides by about 0."""
        if sums is None:
            return NormalReference(self.pooled_mean, self.pooled_precision, self.patch_means, self.patch_precision)
        mean, std, spread_all = sums.mean_std()
        return NormalReference(self.pooled_mean, self.pooled_precision, self.patch_means, self.patch_precision,
                               mean.astype(np.float32), (std + 0.1 * spread_all).astype(np.float32))

    def raw_patch_map(self, patches: torch.Tensor) -> torch.Tensor:
        """Mahalanobis distance of each patch residual: (n, h, w)."""
        r = self._nearest_residuals(patches)
        p = torch.from_numpy(self.patch_precision)
        m = torch.einsum("nchw,cd,ndhw->nhw", r, p, r)
        return m.clamp_min(0).sqrt()

    def patch_map(self, patches: torch.Tensor) -> torch.Tensor:
        """The patch distance map (n, h, w); against each position's normal distance where fitted,
        shifted so that a position's normal mean sits at the map's mean level (the map stays >= 0)."""
        m = self.raw_patch_map(patches)
        if self.distance_mean is None:
            return m
        z = (m - torch.from_numpy(self.distance_mean)) / torch.from_numpy(self.distance_std)
        return (z + POSITION_OFFSET).clamp_min(0)

    def to_arrays(self) -> dict[str, np.ndarray]:
        arrays = {"pooled_mean": self.pooled_mean, "pooled_precision": self.pooled_precision,
                  "patch_means": self.patch_means, "patch_precision": self.patch_precision}
        if self.distance_mean is not None:
            arrays.update(distance_mean=self.distance_mean, distance_std=self.distance_std)
        return arrays

    def misfit(self, pooled_dim: int, patch_shape: tuple[int, int, int]) -> str | None:
        """Why these arrays cannot score an encoder's pooled embeddings of `pooled_dim` and patch
        features of `patch_shape` (channels, h, w), naming the array; None where they fit."""
        c, h, w = patch_shape
        wanted = {"pooled_mean": (pooled_dim,), "pooled_precision": (pooled_dim, pooled_dim),
                  "patch_means": (c, h, w), "patch_precision": (c, c)}
        if (self.distance_mean is None) != (self.distance_std is None):
            return "reference.distance_mean and reference.distance_std come together or not at all"
        if self.distance_mean is not None:
            wanted.update(distance_mean=(h, w), distance_std=(h, w))
        for name, shape in wanted.items():
            found = tuple(np.shape(getattr(self, name)))
            if found != shape:
                return f"reference.{name} has shape {found}, not the {shape} its encoder's features need"
        return None

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray]) -> "NormalReference":
        keys = ["pooled_mean", "pooled_precision", "patch_means", "patch_precision"]
        keys += [k for k in ("distance_mean", "distance_std") if k in arrays]  # models of this round on
        return cls(**{k: np.asarray(arrays[k], dtype=np.float32) for k in keys})
