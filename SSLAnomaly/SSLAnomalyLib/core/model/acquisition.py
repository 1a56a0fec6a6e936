"""Acquisition directions: what in the patch features is the acquisition, not the anatomy, projected out.

Normals of another acquisition pipeline (another hospital, scanner, film digitiser or export) score
high against a site's reference although nothing in them is abnormal: their patch features sit apart
from the site's in a few directions (brightness of the lung fields within the window, sharpness, grain).
Both sets are normal, so whatever separates their lung-field means is acquisition; those directions
(the difference of the two sets' means, then the leading axes of how the other normals spread around
the site's mean) are removed from every patch feature before the normal reference is fitted and before
an image is scored (nuisance attribute projection). The heatmap then stops rising over a whole film
because it came from elsewhere, while a lesion, which moves patches in anatomy's directions, still does.
Only normals are used, so no threshold or direction ever looks at an abnormal label.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

ARRAY = "acquisition_directions"  # the model folder's array: (channels, k), orthonormal columns
DEFAULT_DIRECTIONS = 8
SAME_SOURCE = 1e-6  # a mean shift this small beside the normals' spread: the same images twice


@dataclass(frozen=True)
class AcquisitionDirections:
    """k orthonormal directions of the patch-feature space, (channels, k), projected out of patches."""

    directions: np.ndarray

    def __post_init__(self):
        d = self.directions
        if d.ndim != 2 or not 1 <= d.shape[1] <= d.shape[0] or not np.isfinite(d).all():
            raise ValueError(f"acquisition directions must be finite (channels, k) columns, not an array of shape "
                             f"{d.shape}")

    @property
    def k(self) -> int:
        return int(self.directions.shape[1])

    @classmethod
    def between(cls, site_means: np.ndarray, other_means: np.ndarray, k: int = DEFAULT_DIRECTIONS
                ) -> "AcquisitionDirections":
        """The directions separating two sets of normals' per-image lung-field mean features (n, channels):
        the difference of their means first, then the leading principal axes of the other set's
        offsets from the site's mean, each orthogonal to those before."""
        site, other = np.asarray(site_means, np.float64), np.asarray(other_means, np.float64)
        if not 1 <= k <= site.shape[1]:
            raise ValueError(f"the number of acquisition directions must be 1 to {site.shape[1]}, not {k}")
        if len(site) < 2 or len(other) < 2:
            raise ValueError("acquisition directions need at least two normals of each source")
        if k > len(other):  # the offsets of n normals span at most n - 1 axes beside the shift
            raise ValueError(f"{k} acquisition directions need at least {k} readable other-source normals, not "
                             f"{len(other)} (give more, or fewer --acquisition-directions)")
        shift = other.mean(0) - site.mean(0)
        if np.linalg.norm(shift) < SAME_SOURCE * np.linalg.norm(site.std(0)):
            raise ValueError("the other-source normals do not differ from the site's (the same images?): "
                             "nothing separates the two sets but chance")
        first = shift / max(np.linalg.norm(shift), 1e-12)
        offsets = other - site.mean(0)
        offsets -= np.outer(offsets @ first, first)
        _, _, axes = np.linalg.svd(offsets - offsets.mean(0), full_matrices=False)
        basis, _ = np.linalg.qr(np.column_stack([first, axes[:k - 1].T]))
        return cls(basis[:, :k].astype(np.float32))

    def apply(self, patches: torch.Tensor) -> torch.Tensor:
        """Patch features (n, channels, h, w) without their components along the directions."""
        u = torch.from_numpy(self.directions).to(patches.device, patches.dtype)
        x = patches.permute(0, 2, 3, 1)  # channels last, as the encoder's maps are laid out
        return (x - (x @ u) @ u.T).permute(0, 3, 1, 2)

    def to_arrays(self) -> dict[str, np.ndarray]:
        return {ARRAY: self.directions}

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray]) -> "AcquisitionDirections | None":
        """A model folder's directions; None for a model fitted without them. Checked against the patch
        means beside them, so every reader (detector, --start-from, federated sums) names a mismatch when
        the model is loaded rather than when an image is scored."""
        if ARRAY not in arrays:
            return None
        found = cls(np.asarray(arrays[ARRAY], np.float32))
        channels = np.shape(arrays["patch_means"])[0] if "patch_means" in arrays else found.directions.shape[0]
        if found.directions.shape[0] != channels:
            raise ValueError(f"acquisition directions of {found.directions.shape[0]} channels for patch features of "
                             f"{channels}")
        return found


def lung_field_means(patches: torch.Tensor, lungs: np.ndarray) -> np.ndarray:
    """Each image's mean patch feature over its lung fields (the whole grid where it has none): (n, channels)."""
    n, _, h, w = patches.shape
    mask = F.interpolate(torch.from_numpy(np.asarray(lungs, np.float32))[:, None], size=(h, w), mode="area")[:, 0]
    mask = torch.where(mask.flatten(1).sum(1, keepdim=True) > 0, mask.flatten(1), torch.ones(n, h * w))
    return (torch.einsum("ncp,np->nc", patches.flatten(2).float(), mask) / mask.sum(1, keepdim=True)).numpy()
