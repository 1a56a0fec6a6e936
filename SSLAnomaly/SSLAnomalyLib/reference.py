"""The normal reference: what normal radiographs look like in the encoder's feature space.

Two complementary statistics, both fitted on normal images only and both of fixed size whatever
the number of normals (so scoring cost never grows with the training set):

- image level: one Gaussian over pooled, L2-normalised embeddings with Ledoit-Wolf shrinkage;
  the score is the Mahalanobis distance (the AnatPaste scoring);
- patch level: a chest radiograph has a fixed layout, so each feature-map position gets its own
  mean, and residuals share one Ledoit-Wolf covariance (a compact PaDiM). A patch is compared with
  the nearest of the means in its 3x3 neighbourhood, which tolerates small shifts in positioning.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

MAX_RESIDUALS = 200_000  # patch residuals sampled to fit the shared covariance


class NormalReference:
    def __init__(self, pooled_mean=None, pooled_precision=None, patch_means=None,
                 patch_precision=None):
        self.pooled_mean = pooled_mean
        self.pooled_precision = pooled_precision
        self.patch_means = patch_means          # (channels, h, w)
        self.patch_precision = patch_precision  # (channels, channels)

    def fit(self, pooled: np.ndarray, patches: np.ndarray, seed: int = 0) -> "NormalReference":
        """pooled: (n, d) embeddings; patches: (n, c, h, w) patch features of normal images."""
        from sklearn.covariance import LedoitWolf  # here: importing scikit-learn costs detection ~0.7 s at start

        lw = LedoitWolf().fit(pooled)
        self.pooled_mean = lw.location_.astype(np.float32)
        self.pooled_precision = lw.precision_.astype(np.float32)
        self.patch_means = patches.mean(axis=0).astype(np.float32)
        resid = self._nearest_residuals(torch.from_numpy(patches)).numpy()
        resid = resid.transpose(0, 2, 3, 1).reshape(-1, patches.shape[1])
        rng = np.random.default_rng(seed)
        if len(resid) > MAX_RESIDUALS:
            resid = resid[rng.choice(len(resid), MAX_RESIDUALS, replace=False)]
        lw = LedoitWolf(assume_centered=True).fit(resid)
        self.patch_precision = lw.precision_.astype(np.float32)
        return self

    def _nearest_residuals(self, patches: torch.Tensor) -> torch.Tensor:
        """Residual to the closest (Euclidean) per-position mean within a 3x3 neighbourhood."""
        means = torch.from_numpy(self.patch_means)
        c, h, w = means.shape
        padded = F.pad(means[None], (1, 1, 1, 1), mode="replicate")[0]
        best, best_d = None, None
        for dy in range(3):
            for dx in range(3):
                r = patches - padded[:, dy:dy + h, dx:dx + w]
                d = (r * r).sum(1, keepdim=True)
                if best is None:
                    best, best_d = r, d
                else:
                    closer = d < best_d
                    best = torch.where(closer, r, best)
                    best_d = torch.where(closer, d, best_d)
        return best

    def pooled_score(self, pooled: np.ndarray) -> np.ndarray:
        """Mahalanobis distance of each embedding to the normal Gaussian: (n,)."""
        d = pooled - self.pooled_mean
        return np.sqrt(np.maximum(np.einsum("nd,de,ne->n", d, self.pooled_precision, d), 0))

    def patch_map(self, patches: torch.Tensor) -> torch.Tensor:
        """Mahalanobis distance of each patch residual: (n, h, w)."""
        r = self._nearest_residuals(patches)
        p = torch.from_numpy(self.patch_precision)
        m = torch.einsum("nchw,cd,ndhw->nhw", r, p, r)
        return m.clamp_min(0).sqrt()

    def to_arrays(self) -> dict[str, np.ndarray]:
        return {"pooled_mean": self.pooled_mean, "pooled_precision": self.pooled_precision,
                "patch_means": self.patch_means, "patch_precision": self.patch_precision}

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray]) -> "NormalReference":
        return cls(**{k: np.asarray(arrays[k], dtype=np.float32) for k in
                      ("pooled_mean", "pooled_precision", "patch_means", "patch_precision")})
