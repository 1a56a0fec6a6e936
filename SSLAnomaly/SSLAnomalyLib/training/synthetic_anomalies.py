"""Anatomy-aware synthetic anomalies for the self-supervised pretext task, all parameters in one place.

Two kinds, both confined to the lung fields:
- `anatpaste`: the published recipe (Sato et al. 2023): a jittered patch of the same image pasted
  through a blurred ellipse/rectangle mask, multiplied by the lung mask.
- `opacity`: a soft, textured increase in density inside the lungs (what pneumonia, effusion or a
  mass looks like on a radiograph), with random strength down to barely visible, so the network
  cannot solve the task from sharp paste edges alone.
Every call takes a numpy Generator so augmentations are reproducible from a seed.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from scipy import ndimage


@dataclass(frozen=True)
class PretextConfig:
    kinds: tuple[str, ...] = ("anatpaste",)             # the bundled model's recipe (docs/model.md)
    area_range: tuple[float, float] = (0.02, 0.15)      # patch area as a fraction of the image
    aspect_range: tuple[float, float] = (0.3, 3.3)      # log-uniform
    jitter: float = 0.1                                 # brightness/contrast jitter of the patch
    opacity_range: tuple[float, float] = (150 / 255, 1.0)
    blur_max: float = 15 / 256                          # Gaussian blur of the mask, fraction of side
    haze_strength: tuple[float, float] = (0.05, 0.45)   # opacity: blend weight toward dense tissue
    haze_texture: float = 0.5                           # opacity: share of low-frequency noise
    dense_weight: float = 1.0                           # weight of the per-cell "altered" term

    def to_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, d: dict) -> "PretextConfig":
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})


def _patch_shape(n: int, cfg: PretextConfig, rng: np.random.Generator) -> tuple[int, int]:
    area = rng.uniform(*cfg.area_range) * n * n
    aspect = np.exp(rng.uniform(np.log(cfg.aspect_range[0]), np.log(cfg.aspect_range[1])))
    h = int(np.clip(np.sqrt(area * aspect), 4, n - 2))
    w = int(np.clip(np.sqrt(area / aspect), 4, n - 2))
    return h, w


def _region_mask(n: int, centre: tuple[int, int], shape: tuple[int, int], cfg: PretextConfig,
                 rng: np.random.Generator) -> np.ndarray:
    """Soft ellipse or rectangle of `shape` centred at `centre`, blurred, in [0, 1]."""
    h, w = shape
    yy, xx = np.mgrid[0:n, 0:n]
    dy, dx = (yy - centre[0]) / (h / 2), (xx - centre[1]) / (w / 2)
    if rng.random() < 0.5:
        m = (dy ** 2 + dx ** 2 <= 1).astype(np.float32)
    else:
        m = ((np.abs(dy) <= 1) & (np.abs(dx) <= 1)).astype(np.float32)
    sigma = rng.uniform(0, cfg.blur_max) * n
    return ndimage.gaussian_filter(m, sigma) if sigma > 0.5 else m


def _centre_in(mask: np.ndarray, rng: np.random.Generator) -> tuple[int, int]:
    ys, xs = np.nonzero(mask)
    i = rng.integers(len(ys))
    return int(ys[i]), int(xs[i])


def anatpaste(image: np.ndarray, lung: np.ndarray, cfg: PretextConfig,
              rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """AnatPaste: returns (augmented image, blend mask in [0, 1])."""
    n = image.shape[0]
    h, w = _patch_shape(n, cfg, rng)
    y0, x0 = rng.integers(0, n - h), rng.integers(0, n - w)
    patch = image[y0:y0 + h, x0:x0 + w]
    patch = patch * rng.uniform(1 - cfg.jitter, 1 + cfg.jitter) + rng.uniform(-cfg.jitter, cfg.jitter)
    cy, cx = _centre_in(lung, rng)
    top, left = int(np.clip(cy - h // 2, 0, n - h)), int(np.clip(cx - w // 2, 0, n - w))
    source = image.copy()
    source[top:top + h, left:left + w] = patch
    m = _region_mask(n, (top + h // 2, left + w // 2), (h, w), cfg, rng)
    m *= rng.uniform(*cfg.opacity_range) * lung
    return np.clip(image * (1 - m) + source * m, 0, 1).astype(np.float32), m


def opacity(image: np.ndarray, lung: np.ndarray, cfg: PretextConfig,
            rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A soft, textured density inside the lungs: returns (augmented image, blend mask)."""
    n = image.shape[0]
    h, w = _patch_shape(n, cfg, rng)
    m = _region_mask(n, _centre_in(lung, rng), (h, w), cfg, rng)
    m = ndimage.gaussian_filter(m, n / 40)  # opacities have no sharp edges
    noise = ndimage.gaussian_filter(rng.standard_normal((n, n)), n / 30)
    noise = (noise - noise.min()) / (np.ptp(noise) + 1e-6)
    m = m * (1 - cfg.haze_texture + cfg.haze_texture * noise)
    m = m / (m.max() + 1e-6) * rng.uniform(*cfg.haze_strength) * lung
    dense = np.quantile(image[lung] if lung.any() else image, 0.9)
    return np.clip(image * (1 - m) + max(dense, image.mean()) * m, 0, 1).astype(np.float32), m


KINDS = {"anatpaste": anatpaste, "opacity": opacity}


def synthesise(image: np.ndarray, lung: np.ndarray, cfg: PretextConfig,
               rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Apply one randomly chosen kind; with no lung found, the whole image is the allowed region."""
    allowed = lung.astype(bool) if lung.any() else np.ones(lung.shape, bool)
    kind = cfg.kinds[rng.integers(len(cfg.kinds))]
    return KINDS[kind](image, allowed, cfg, rng)
