"""Seeded synthetic abnormalities ("phantoms") drawn on a normal radiograph, to measure what a model
flags and where it points (`sslanomaly evaluate --phantoms`).

A phantom is drawn on the image's own grid (intensities in [0, 1]) inside the lung fields that the
product itself draws on the *unaltered* image (the caller passes them), on one named side: `right`
and `left` are the patient's, in the standard display (the patient's right on the image's left).
Opacities brighten towards the soft-tissue brightness of the heart shadow, with soft edges and part
of the lung's texture kept; a pneumothorax is a darker, vessel-free rim with a thin pleural line.
Sizes are fractions of the width of both lung fields together, named in adult-equivalent
millimetres (that width taken as 280 mm, about 0.15-0.2 mm per pixel of a full-size radiograph); on
a child the same fraction is a smaller lesion.

Pure numpy/scipy and kept apart from training: no pretext or training augmentation imports it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from SSLAnomalyLib.evaluation.choices import parse_names

LUNG_SPAN_MM = 280.0
SIZES = {
    "whiteout": ("hemithorax",),
    "effusion": ("small", "large"),
    "consolidation": ("lobar",),
    "mass": ("30mm", "60mm"),
    "nodule": ("8mm", "15mm", "25mm"),
    "pneumothorax": ("small", "large"),
    "cardiomegaly": ("ctr_0.60-0.65",),
}
KINDS = tuple(SIZES)
# kinds no training of the product draws (the lung network's augmentation draws white-out, effusion
# and consolidation; the encoder's `opacity` pretext a soft density): the honest test of generalisation
HELD_OUT_KINDS = ("mass", "nodule", "pneumothorax", "cardiomegaly")
EFFUSION_HEIGHT = {"small": 0.2, "large": 0.5}      # height below the meniscus, share of the field's
PNEUMOTHORAX_RIM = {"small": 0.12, "large": 0.35}   # rim width at the apex, share of the field's width
TARGET_CTR = (0.60, 0.65)
GROW = 2  # pixels an opacity may reach beyond the lung field (its partial-volume rim)


@dataclass
class Phantom:
    kind: str
    size: str
    side: str                # "right", "left" (patient's) or "centre" (cardiomegaly)
    image: np.ndarray        # (rows, cols) in [0, 1], the normal with the phantom drawn
    region_mask: np.ndarray  # bool: every pixel the phantom changed lies inside it


@dataclass
class Chest:
    """The geometry of the unaltered normal that every phantom is placed by."""

    image: np.ndarray
    fields: dict[str, np.ndarray]  # "right" (image left) and "left" (image right) lung field
    span: float                    # width of both lung fields together, pixels
    soft_tissue: float             # brightness of the heart shadow
    lung_level: float              # median brightness of the lung fields

    @classmethod
    def of(cls, image01: np.ndarray, lungs: np.ndarray) -> "Chest":
        lungs = np.asarray(lungs, bool)
        cols = np.flatnonzero(lungs.any(axis=0))
        if cols.size < 2:
            raise ValueError("no lung fields to draw a phantom in")
        left_of_mid = np.arange(lungs.shape[1])[None, :] < (cols[0] + cols[-1]) / 2
        fields = {"right": lungs & left_of_mid, "left": lungs & ~left_of_mid}
        heart = _heart_area(fields["right"], fields["left"])
        lung_bright = float(np.percentile(image01[lungs], 90))
        soft = float(np.median(image01[heart])) if heart.any() else lung_bright
        return cls(image01, fields, float(cols[-1] - cols[0] + 1), max(soft, lung_bright),
                   float(np.median(image01[lungs])))

    def px(self, millimetres: float) -> float:
        return millimetres / LUNG_SPAN_MM * self.span

    def pick_side(self, rng: np.random.Generator) -> str:
        """A random side whose field is at least a fifth of the other's (else the larger one)."""
        sizes = {s: int(f.sum()) for s, f in self.fields.items()}
        usable = [s for s in ("right", "left") if sizes[s] >= 0.2 * max(sizes.values())]
        return usable[int(rng.integers(len(usable)))]


def _edges(field: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per row: whether the field has pixels, its first and its last column."""
    has = field.any(axis=1)
    first = np.argmax(field, axis=1)
    last = field.shape[1] - 1 - np.argmax(field[:, ::-1], axis=1)
    return has, first, last


def _span_rows(field: np.ndarray) -> tuple[int, int]:
    rows = np.flatnonzero(field.any(axis=1))
    return int(rows[0]), int(rows[-1])


def _cardiac_rows(right: np.ndarray, left: np.ndarray) -> np.ndarray:
    """Rows of the lower 55 % of where both fields have lung, above the diaphragm's domes (both fields at
    least half their widest there): where the heart borders them."""
    rows = right.any(axis=1) & left.any(axis=1)
    for field in (right, left):
        width = field.sum(axis=1)
        rows &= width >= 0.5 * width.max()
    both = np.flatnonzero(rows)
    if both.size == 0:
        return both
    return both[both >= both[0] + 0.45 * (both[-1] - both[0])]


def _heart_area(right: np.ndarray, left: np.ndarray) -> np.ndarray:
    """The heart shadow: between the fields' medial edges in the cardiac rows."""
    area = np.zeros(right.shape, bool)
    _, _, r_last = _edges(right)
    _, l_first, _ = _edges(left)
    for r in _cardiac_rows(right, left):
        area[r, r_last[r] + 1:l_first[r]] = True
    return area


def _grid(shape) -> tuple[np.ndarray, np.ndarray]:
    return np.mgrid[0:shape[0], 0:shape[1]].astype(np.float32)


def _smooth_noise(shape, sigma: float, rng: np.random.Generator) -> np.ndarray:
    """Gaussian noise smoothed to blobs of about `sigma` pixels, unit standard deviation."""
    n = ndimage.gaussian_filter(rng.standard_normal(shape).astype(np.float32), max(sigma, 0.5))
    return n / (n.std() + 1e-8)


def _within(alpha: np.ndarray, field: np.ndarray) -> np.ndarray:
    """The opacity kept to the field grown by GROW pixels, its faint tail cut to exactly zero."""
    alpha = alpha * ndimage.binary_dilation(field, iterations=GROW)
    return np.where(alpha >= 0.01, alpha, 0).astype(np.float32)


def _opacify(chest: Chest, alpha: np.ndarray, rng: np.random.Generator,
             adds: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Blend towards soft tissue by `alpha`, keeping 40 % of the fine texture (vessels, ribs show through
    a real opacity, fainter; clipped so that the lung's own border leaves no outline) plus a little
    mottling. A lesion (`adds`) over what is already that bright (a rib, the heart) still brightens it
    by a quarter of the lung-to-soft-tissue contrast, as density adds; a heart that grows into the lung
    replaces lung and leaves soft tissue as it was."""
    x = chest.image
    detail = np.clip(x - ndimage.gaussian_filter(x, max(1.0, 0.01 * chest.span)), -0.04, 0.04)
    texture = 0.4 * detail + 0.015 * _smooth_noise(x.shape, 0.02 * chest.span, rng)
    floor = 0.25 * max(chest.soft_tissue - chest.lung_level, 0.05) if adds else 0.0
    out = x + alpha * np.maximum(chest.soft_tissue + texture - x, floor)
    return np.clip(out, 0, 1).astype(np.float32), alpha > 0


def whiteout(chest: Chest, field: np.ndarray, side: str, size: str, rng: np.random.Generator) -> np.ndarray:
    """The whole hemithorax opaque: the field filled, densest inside, soft at its border."""
    soft = ndimage.gaussian_filter(field.astype(np.float32), max(1.0, 0.01 * chest.span))
    return _within(soft * rng.uniform(0.85, 1.0), field)


def effusion(chest: Chest, field: np.ndarray, side: str, size: str, rng: np.random.Generator) -> np.ndarray:
    """Basal opacity below a meniscus that climbs towards the chest wall, denser downwards."""
    top, bottom = _span_rows(field)
    height = bottom - top + 1
    cols = np.flatnonzero(field.any(axis=0))
    yy, xx = _grid(field.shape)
    lateral = (cols[-1] - xx) if side == "right" else (xx - cols[0])
    lateral = np.clip(lateral / max(cols[-1] - cols[0], 1), 0, 1)
    level = bottom - EFFUSION_HEIGHT[size] * rng.uniform(0.9, 1.1) * height
    edge = level - rng.uniform(0.08, 0.15) * height * lateral ** 2
    alpha = np.clip((yy - edge) / (0.1 * height), 0, 1) * rng.uniform(0.85, 1.0)
    return _within(alpha, field)


def consolidation(chest: Chest, field: np.ndarray, side: str, size: str, rng: np.random.Generator) -> np.ndarray:
    """A lobe filled, patchily: an upper lobe with a sharp lower border (the fissure), or a lower lobe
    whose upper border fades (the oblique fissure is not seen edge-on)."""
    top, bottom = _span_rows(field)
    height = bottom - top + 1
    yy, xx = _grid(field.shape)
    if rng.random() < 0.5:
        cols = np.flatnonzero(field.any(axis=0))
        bend = ((xx - cols.mean()) / max(cols[-1] - cols[0], 1)) ** 2
        fissure = top + rng.uniform(0.35, 0.45) * height + 0.1 * height * bend
        alpha = np.clip((fissure - yy) / max(1.0, 0.005 * chest.span), 0, 1)
    else:
        border = top + rng.uniform(0.5, 0.6) * height
        alpha = np.clip((yy - border) / (0.12 * height), 0, 1)
    patches = np.clip(0.8 + 0.25 * _smooth_noise(field.shape, 0.03 * chest.span, rng), 0.3, 1)
    return _within(alpha * patches * rng.uniform(0.6, 0.85), field)


def round_opacity(chest: Chest, field: np.ndarray, side: str, size: str, rng: np.random.Generator) -> np.ndarray:
    """A sphere of `size` millimetres wholly inside the field: projected thickness sqrt(1 - r^2), denser
    the larger it is, a slightly lobulated soft edge."""
    diameter = float(size.removesuffix("mm"))
    radius = max(1.0, chest.px(diameter) / 2)
    depth = ndimage.distance_transform_edt(field)
    room = np.argwhere(depth >= radius + GROW + 1)
    cy, cx = room[rng.integers(len(room))] if len(room) else np.unravel_index(np.argmax(depth), depth.shape)
    yy, xx = _grid(field.shape)
    angle = np.arctan2(yy - cy, xx - cx)
    lobulation = 0.08 if diameter >= 30 else 0.03
    edge = radius * (1 + lobulation * np.sin(rng.integers(3, 7) * angle + rng.uniform(0, 2 * np.pi)))
    rho2 = ((yy - cy) ** 2 + (xx - cx) ** 2) / edge ** 2
    strength = 0.35 + 0.5 * min(1.0, diameter / 60)
    alpha = strength * np.sqrt(np.clip(1 - rho2, 0, 1))
    return _within(ndimage.gaussian_filter(alpha, max(0.5, 0.08 * radius)), field)


OPACITIES = {"whiteout": whiteout, "effusion": effusion, "consolidation": consolidation,
             "mass": round_opacity, "nodule": round_opacity}


def pneumothorax(chest: Chest, field: np.ndarray, side: str, size: str,
                 rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A darker, vessel-free rim along the lateral edge of the field, widest at the apex, bordered
    medially by a thin bright visceral pleural line."""
    x = chest.image
    has, first, last = _edges(field)
    top, bottom = _span_rows(field)
    rows = np.arange(field.shape[0], dtype=np.float32)
    width = PNEUMOTHORAX_RIM[size] * rng.uniform(0.85, 1.15) * float(np.max((last - first + 1)[has]))
    width = width * (1 - 0.5 * np.clip((rows - top) / max(bottom - top, 1), 0, 1))
    _, xx = _grid(field.shape)
    inward = xx - first[:, None] if side == "right" else last[:, None] - xx
    rim = field & (inward >= 0) & (inward < width[:, None])
    line = ndimage.binary_dilation(rim, iterations=max(1, round(0.004 * chest.span))) & field & ~rim
    inside = field.astype(np.float32)
    sigma = 0.03 * chest.span  # the lung blurred within its field: the vessels gone, the chest wall kept out
    smooth = ndimage.gaussian_filter(x * inside, sigma) / np.maximum(ndimage.gaussian_filter(inside, sigma), 1e-3)
    fine = float(np.std((x - ndimage.gaussian_filter(x, 1.0))[field]))
    lucent = smooth - rng.uniform(0.04, 0.08) + rng.normal(0, fine, x.shape)
    out = np.where(rim, np.minimum(x, lucent), x)
    out = np.where(line, x + rng.uniform(0.06, 0.12), out)
    return np.clip(out, 0, 1).astype(np.float32), rim | line


def cardiomegaly(chest: Chest, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """The heart shadow widened into both lower lung fields, two thirds of the growth to the patient's
    left, until the cardiothoracic ratio (widest heart over widest thorax, both read off the lung
    fields' edges) is 0.60-0.65 (at least 0.08 above what it was); below the widest rows the new
    borders drop straight to the diaphragm."""
    right, left = chest.fields["right"], chest.fields["left"]
    _, r_first, r_last = _edges(right)
    _, l_first, l_last = _edges(left)
    rows = _cardiac_rows(right, left)
    if rows.size == 0:
        raise ValueError("the lung fields share no rows: no heart border to widen")
    thorax = float(np.max(l_last[rows] - r_first[rows] + 1))
    gap = (l_first[rows] - r_last[rows] - 1).astype(np.float32)
    target = max(rng.uniform(*TARGET_CTR), float(gap.max()) / thorax + 0.08) * thorax
    t = (rows - rows[0]) / max(rows[-1] - rows[0], 1)
    shape = np.sqrt(np.sin(0.5 * np.pi * np.clip(t / 0.7, 0.05, 1)))  # grows out of the mediastinum, widest low
    bulge = shape * np.min((target - gap) / shape)      # the widest row reaches the target exactly
    lower = np.flatnonzero(right.any(axis=1) & left.any(axis=1))
    below = np.arange(rows[-1] + 1, lower[-1] + 1)
    border_r = np.r_[r_last[rows] - 0.35 * bulge, np.full(below.size, r_last[rows[-1]] - 0.35 * bulge[-1])]
    border_l = np.r_[l_first[rows] + 0.65 * bulge, np.full(below.size, l_first[rows[-1]] + 0.65 * bulge[-1])]
    heart = np.zeros(right.shape, bool)
    cols = np.arange(right.shape[1])
    for r, a, b in zip(np.r_[rows, below], border_r, border_l):
        heart[r] = (cols > a) & (cols < b)
    alpha = ndimage.gaussian_filter(heart.astype(np.float32), max(1.0, 0.01 * chest.span)) * 0.95
    # the old heart is left as it is (eroded sideways only, so its border with the lung is redrawn
    # and no row of it is): the region is what grew
    old = ndimage.binary_erosion(_heart_area(right, left), structure=np.ones((1, 2 * GROW + 1), bool))
    return _opacify(chest, np.where((alpha >= 0.01) & ~old, alpha, 0).astype(np.float32), rng, adds=False)


def draw_phantom(kind: str, size: str, image01: np.ndarray, lungs: np.ndarray, rng: np.random.Generator) -> Phantom:
    """One phantom of `kind` and `size` on `image01` ((rows, cols) in [0, 1]) placed by `lungs` (bool
    lung fields of the unaltered image on the same grid); reproducible from `rng`'s seed."""
    if size not in SIZES.get(kind, ()):
        raise ValueError(f"no phantom {kind!r} of size {size!r}")
    chest = Chest.of(np.asarray(image01, np.float32), lungs)
    if kind == "cardiomegaly":
        return Phantom(kind, size, "centre", *cardiomegaly(chest, rng))
    side = chest.pick_side(rng)
    field = chest.fields[side]
    if kind == "pneumothorax":
        return Phantom(kind, size, side, *pneumothorax(chest, field, side, size, rng))
    return Phantom(kind, size, side, *_opacify(chest, OPACITIES[kind](chest, field, side, size, rng), rng))


def parse_kinds(text: str) -> list[str]:
    """'all' or a comma-separated list of kinds -> the kinds, checked."""
    return parse_names(text, KINDS, "phantom kind(s)")
