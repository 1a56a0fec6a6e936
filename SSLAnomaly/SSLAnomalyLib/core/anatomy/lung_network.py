"""Lung fields from a small MONAI U-Net trained on expert lung masks: the product's anatomy.

The network sees the same square, intensity-normalised input as the encoder (`preprocess`), so its
mask lies on the model grid the scoring uses. Its output is post-processed the way a radiologist
draws lung fields: one region per side of the midline (the largest), holes filled, islands dropped.
When the result is implausible (too small or too large, one side missing, one lung far smaller than
the other, both fields drawn away from where the training normals' lungs lie) the unsupervised mask of
`fallback.py` is used instead, then the training normals' prior; when one field alone is drawn away
from where lungs lie (the network, finding no aerated lung in a white hemithorax, draws one on the
shoulder or the arm), the other field mirrored takes its place. `LungFields.source` says which, and
`warning` says it in words for the output's warnings. A fallback
never hides what the network saw: its per-side areas (`network_side_fractions`, `network_side_ratio`)
are kept for the score, since a lung the network could not find is itself evidence of disease.

The bundled network lives in `Resources/Models/lungs/` (safetensors + manifest with SHA-256, verified
on load like every model folder) and is loaded once per process (`bundled_segmenter`). A candidate
network is tried without installing it by naming its folder in `SSLANOMALY_LUNGS`: training, scoring
and evaluation then draw every lung field with it. An anomaly model records the network its
reference was fitted with (`anatomy.lungs` in its manifest), and a detector scoring with another one
says so (`AnomalyDetector`), since its thresholds were set on the other network's fields.
"""

from __future__ import annotations

import functools
import math
import os
from dataclasses import asdict, dataclass

import numpy as np
import torch
from scipy import ndimage

from SSLAnomalyLib.core.anatomy.fallback import lung_mask, prior_mask
from SSLAnomalyLib.core.model.preprocess import resize
from SSLAnomalyLib.core.model_files import model_folder
from SSLAnomalyLib.core.model_files.manifest import LUNG_SEGMENTATION, Manifest
from SSLAnomalyLib.core.model_files.registry import MODELS_DIR

BUNDLED_LUNGS = MODELS_DIR / "lungs"
LUNGS_ENV = "SSLANOMALY_LUNGS"  # another lung model folder, for trying a candidate network

MIN_FIELD_FRACTION = 0.02   # one lung field under 2 % of the image is an island, not a lung
MIN_TOTAL_FRACTION = 0.08   # both lungs under 8 % of a frontal chest image: not lungs
MAX_TOTAL_FRACTION = 0.65
MIN_SIDE_RATIO = 0.25       # the smaller lung at least a quarter of the larger one
PRIOR_SUPPORT = 0.2         # where at least 20 % of the training normals had lung: where lungs can lie
MIN_PRIOR_COVERAGE = 0.2    # a field covering under a fifth of where lungs lie on its side was drawn elsewhere
SIDE_NAMES = ("image-left", "image-right")

SOURCES = {
    "network": None,
    "unsupervised": "the lung network's output was implausible ({why}); the unsupervised lung mask "
                    "(CLAHE + Otsu) was used instead",
    "mirrored": "the {why}; the other lung field mirrored is used on that side",
    "prior": "no plausible lung fields found ({why}); the average lung position of the training normals was "
             "used (is this a frontal chest radiograph?)",
}


@dataclass(frozen=True)
class LungNetConfig:
    """Everything needed to rebuild the network; stored in its manifest."""

    input_size: int = 128
    channels: tuple[int, ...] = (16, 32, 64, 128, 256)
    strides: tuple[int, ...] = (2, 2, 2, 2)
    num_res_units: int = 2

    @property
    def size_step(self) -> int:
        """What the input size must be a multiple of: the U-Net halves it at each stride and joins each
        half back to the size before (20 px: 3 against 4 at the third join)."""
        return math.prod(self.strides)

    def to_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, d: dict) -> "LungNetConfig":
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})


def build_lung_net(config: LungNetConfig) -> torch.nn.Module:
    """MONAI U-Net, one input channel (the radiograph), one output logit (lung)."""
    from monai.networks.nets import UNet

    return UNet(spatial_dims=2, in_channels=1, out_channels=1, channels=config.channels,
                strides=config.strides, num_res_units=config.num_res_units)


def to_net_input(images01: np.ndarray) -> torch.Tensor:
    """(n, s, s) images in [0, 1] -> (n, 1, s, s) centred tensor."""
    return torch.from_numpy((np.asarray(images01, np.float32) - 0.5) / 0.25)[:, None]


def side_fractions(mask: np.ndarray) -> tuple[float, float]:
    """Lung pixels left and right of the image's vertical midline, each as a share of the image."""
    half = mask.shape[1] // 2
    return float(mask[:, :half].sum() / mask.size), float(mask[:, half:].sum() / mask.size)


@dataclass
class LungFields:
    """The lung fields of one image, where they came from, and per-side areas for the score: a missing,
    shrunken or lopsided field (a white lung the network gave up) is evidence of disease, not only a reason
    for a fallback, so the network's own per-side areas are kept even when a fallback mask replaced them."""

    mask: np.ndarray                 # bool, on the grid of the image it was computed from
    source: str                      # "network", "mirrored" (one side), "unsupervised" or "prior"
    reason: str = ""                 # why the network's output was not used
    probability: np.ndarray | None = None  # the network's output on the same grid
    network_side_fractions: tuple[float, float] = (0.0, 0.0)  # the network's largest region each side of
    # the midline (image-left, image-right) as a share of the image, before any fallback

    @property
    def side_fractions(self) -> tuple[float, float]:
        """(image-left, image-right) area of the final mask, each as a share of the image."""
        return side_fractions(self.mask)

    @property
    def network_side_ratio(self) -> float:
        """Smaller over larger of the network's per-side areas: 1 symmetric, 0 one lung missing."""
        small, large = sorted(self.network_side_fractions)
        return 0.0 if large == 0 else small / large

    @property
    def warning(self) -> str | None:
        text = SOURCES[self.source]
        return None if text is None else text.format(why=self.reason)

    def on_grid(self, rows: int, cols: int) -> np.ndarray:
        """The lung fields as uint8 0/1 on a (rows, cols) input grid. The network's probability (where
        it was used) gives smooth borders at full resolution; the post-processed mask decides which
        regions are lung."""
        if self.source in ("network", "mirrored"):
            soft = self.probability * ndimage.binary_dilation(self.mask, iterations=1)
        else:
            soft = self.mask.astype(np.float32)
        full = resize(soft.astype(np.float32), (rows, cols)) >= 0.5
        return ndimage.binary_fill_holes(full).astype(np.uint8)


def two_lung_fields(probability: np.ndarray) -> tuple[tuple[np.ndarray, np.ndarray], str, tuple[float, float]]:
    """((image-left field, image-right field), "", per-side areas): the largest region on each side of the
    midline (by its centre) with holes filled, or (the partial fields, why they are implausible, per-side
    areas); areas as shares of the image. The lung mask is the two fields together."""
    n_rows, n_cols = probability.shape
    binary = probability >= 0.5
    fields = (np.zeros_like(binary), np.zeros_like(binary))
    labels, count = ndimage.label(binary)
    if count == 0:
        return fields, "no lung pixels", (0.0, 0.0)
    index = np.arange(1, count + 1)
    sizes = ndimage.sum(binary, labels, index=index) / binary.size
    cols = np.array([c for _, c in ndimage.center_of_mass(binary, labels, index)])
    areas = []
    for field, side in zip(fields, (cols < n_cols / 2, cols >= n_cols / 2)):
        if not side.any():
            areas.append(0.0)
            continue
        best = np.flatnonzero(side)[np.argmax(sizes[side])]
        areas.append(float(sizes[best]))
        if sizes[best] >= MIN_FIELD_FRACTION:
            field |= ndimage.binary_fill_holes(labels == best + 1)
    total, sides = float((fields[0] | fields[1]).mean()), (areas[0], areas[1])
    if min(areas) < MIN_FIELD_FRACTION:
        return fields, "one lung field missing", sides
    if not MIN_TOTAL_FRACTION <= total <= MAX_TOTAL_FRACTION:
        return fields, f"lungs cover {100 * total:.0f} % of the image", sides
    if min(areas) < MIN_SIDE_RATIO * max(areas):
        return fields, "one lung field far smaller than the other", sides
    return fields, "", sides


class LungSegmenter:
    """A verified lung model folder: `fields(images01)` on the model grid (`LungFields.on_grid` for any grid)."""

    def __init__(self, net: torch.nn.Module, config: LungNetConfig, model_id: str, manifest: Manifest | None = None):
        self.net, self.config, self.model_id, self.manifest = net.eval(), config, model_id, manifest

    @classmethod
    def load(cls, folder: str | os.PathLike = BUNDLED_LUNGS) -> "LungSegmenter":
        loaded = model_folder.load(folder, kind=LUNG_SEGMENTATION)
        manifest = loaded.manifest
        try:
            config = LungNetConfig.from_dict(manifest.section("network"))
            net = build_lung_net(config)
            net.load_state_dict(loaded.encoder_state)
        except (KeyError, TypeError, ValueError, RuntimeError) as e:
            raise model_folder.ModelError(loaded.path, f"manifest or weights are inconsistent ({e})") from None
        return cls(net, config, manifest.model_id, manifest)

    @property
    def model_sha256(self) -> str:
        """The seal of the folder it was loaded from (covering the SHA-256 of its weights): another network, or
        the bundled one upgraded, draws other lung fields, so other scores and findings. "" for an unsaved one."""
        return self.manifest.seal if self.manifest is not None else ""

    @torch.no_grad()
    def probability(self, images01: np.ndarray) -> np.ndarray:
        """(n, s, s) [0, 1] images of any square size -> (n, s, s) lung probabilities."""
        images01 = np.asarray(images01, np.float32)
        size = self.config.input_size
        s = images01.shape[-1]
        x = images01 if s == size else np.stack([resize(im, (size, size)) for im in images01])
        p = torch.sigmoid(self.net(to_net_input(x)))[:, 0].numpy()
        return p if s == size else np.stack([np.clip(resize(q, (s, s)), 0, 1) for q in p])

    def fields(self, images01: np.ndarray, prior: np.ndarray | None = None, batch_size: int = 32) -> list[LungFields]:
        """The lung fields of each square [0, 1] image, with the named fallback where the network's
        output is implausible."""
        out = []
        for i in range(0, len(images01), batch_size):
            chunk = images01[i:i + batch_size]
            out += [fields_from_probability(p, x, prior) for x, p in zip(chunk, self.probability(chunk))]
        return out

    def masks(self, images01: np.ndarray) -> np.ndarray:
        """(n, s, s) bool lung masks of training images (fallbacks included, no prior)."""
        return np.stack([f.mask for f in self.fields(images01)])


def side_coverage(fields: tuple[np.ndarray, np.ndarray], prior: np.ndarray) -> tuple[float, float]:
    """(image-left, image-right): the share of where lungs can lie on each side (the training normals'
    prior at `PRIOR_SUPPORT` or more, that half of the image) that the side's field (`two_lung_fields`)
    covers; NaN on a side where the prior has no lung (a degenerate prior judges nothing)."""
    support, half = prior >= PRIOR_SUPPORT, prior.shape[1] // 2
    out = []
    for field, cols in zip(fields, (slice(0, half), slice(half, None))):
        region = np.zeros_like(support)
        region[:, cols] = support[:, cols]
        out.append(float((field & region).sum() / region.sum()) if region.any() else float("nan"))
    return out[0], out[1]


def mirrored(field: np.ndarray, probability: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(mask, probability) of one side's field and its mirror about the image centre, the other side's
    field dropped."""
    own = np.where(ndimage.binary_dilation(field, iterations=2), probability, 0).astype(probability.dtype)
    return field | field[:, ::-1], np.maximum(own, own[:, ::-1])


def fields_from_probability(probability: np.ndarray, image01: np.ndarray, prior: np.ndarray | None) -> LungFields:
    """The lung fields of one image from the network's output. With the training normals' `prior`
    (detection), a field drawn away from where lungs lie (on the shoulder or the arm, as the network
    draws it when disease has made that lung white; under `MIN_PRIOR_COVERAGE` of that side's lung
    region) is not a lung field: the other field mirrored takes its place, so the density, the heat and
    the findings are measured where that lung is; both sides drawn away is implausible (a fallback)."""
    fields, why, sides = two_lung_fields(probability)
    mask = fields[0] | fields[1]
    if not why and prior is not None:
        coverage = side_coverage(fields, prior)
        low = [c < MIN_PRIOR_COVERAGE for c in coverage]
        if all(low):
            why = "both lung fields drawn away from where lungs lie"
        elif any(low):
            side = low.index(True)
            what = (f"{SIDE_NAMES[side]} lung field the network drew covers {100 * coverage[side]:.0f} % of where "
                    "lungs lie on that side")
            kept_and_mirror, its_probability = mirrored(fields[1 - side], probability)
            return LungFields(kept_and_mirror, "mirrored", what, its_probability, sides)
    if not why:
        return LungFields(mask, "network", probability=probability, network_side_fractions=sides)
    unsupervised = lung_mask(image01)
    if unsupervised is not None:
        return LungFields(unsupervised, "unsupervised", why, probability, sides)
    return LungFields(prior_mask(image01.shape[0], prior), "prior", why, probability, sides)


@functools.cache
def bundled_segmenter() -> LungSegmenter:
    """The bundled lung network (or the folder `SSLANOMALY_LUNGS` names), loaded and verified once per process."""
    return LungSegmenter.load(os.environ.get(LUNGS_ENV) or BUNDLED_LUNGS)
