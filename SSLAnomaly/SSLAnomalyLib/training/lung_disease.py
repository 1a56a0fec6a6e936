"""Disease drawn on the expert lung field for training the lung network (`train-anatomy
--disease-share`, `--disease-kinds`): a whited-out lung field, a pleural effusion with its meniscus,
consolidation, or (only when asked for) a whole opaque hemithorax.

The mask is left unchanged: the label is the anatomical lung field whatever fills it, so the network
learns to outline a white lung instead of dropping it (a network trained on normals only draws no lung
there, and everything the product calls "in the lungs" then misses the most obvious disease).
The first three stay inside the field; `hemithorax` whitens the whole side of the chest, chest wall and
shoulder soft tissue included, with the ribs blurred away, as a real opaque hemithorax looks
(00000506_013 of NIH, on which every network drew a "lung" on the shoulder: docs/anatomy.md).

Masses, nodules, pneumothorax and cardiomegaly are deliberately not drawn: the evaluation's phantoms
draw those, and training never imports them.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

KINDS = ("whiteout", "effusion", "consolidation")  # the default, as the bundled lung network was trained
ALL_KINDS = (*KINDS, "hemithorax")
GROW = 2  # pixels the drawing may reach beyond the mask (its partial-volume rim)


def lung_sides(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The mask split halfway between its leftmost and rightmost lung pixel: (image-left, image-right)."""
    cols = np.flatnonzero(mask.any(axis=0))
    mid = (cols[0] + cols[-1]) / 2 if cols.size else mask.shape[1] / 2
    left = np.arange(mask.shape[1])[None, :] < mid
    return mask & left, mask & ~left


def smooth_noise(shape: tuple[int, int], sigma: float, rng: np.random.Generator) -> np.ndarray:
    """Gaussian noise smoothed to blobs of about `sigma` pixels, unit standard deviation."""
    n = ndimage.gaussian_filter(rng.standard_normal(shape), sigma)
    return n / (n.std() + 1e-8)


def surrounding_tissue(image: np.ndarray, mask: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """What a lung filled with fluid or tissue looks like here: the body's non-lung pixels around it (chest
    wall laterally, mediastinum medially; not the air outside the body, darker than the lungs) spread into
    the lung by normalised convolution, 85-105 % as bright. Matching its surroundings, the opacity does not
    outline the mask (no shortcut for the network)."""
    sigma = rng.uniform(0.04, 0.10) * image.shape[0]
    outside = (~mask & (image > image[mask].mean())).astype(np.float32)
    fill = ndimage.gaussian_filter(image * outside, sigma) / (ndimage.gaussian_filter(outside, sigma) + 1e-6)
    return fill * rng.uniform(0.85, 1.05)


def whiteout(field: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Opacity of the whole field, full at its border and fading to 75-100 % inside it."""
    sigma = rng.uniform(0.01, 0.04) * field.shape[0]
    inner = ndimage.gaussian_filter(ndimage.binary_erosion(field, iterations=3).astype(np.float32), sigma)
    return 1 - rng.uniform(0, 0.25) * inner


def effusion(field: np.ndarray, on_image_left: bool, rng: np.random.Generator) -> np.ndarray:
    """Opacity of the lower 20-70 % of the field below a meniscus that curves up towards the chest wall,
    densest at the base."""
    rows, cols = np.nonzero(field)
    top, bottom, c0, c1 = rows.min(), rows.max(), cols.min(), cols.max()
    height = bottom - top + 1
    yy, xx = np.mgrid[0:field.shape[0], 0:field.shape[1]]
    lateral = np.clip(((c1 - xx) if on_image_left else (xx - c0)) / max(c1 - c0, 1), 0, 1)
    level = bottom - rng.uniform(0.2, 0.7) * height
    edge = level - rng.uniform(0.05, 0.25) * height * lateral ** rng.uniform(1.5, 3.0)
    ramp = rng.uniform(0.02, 0.12) * height
    return np.clip((yy - edge) / ramp, 0, 1) * rng.uniform(0.7, 1.0)


def consolidation(field: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One to three smooth random blobs of partial opacity, sometimes with faint dark branching lines
    (air bronchograms)."""
    n = field.shape[0]
    rows, cols = np.nonzero(field)
    scale = np.sqrt(field.sum())
    yy, xx = np.mgrid[0:n, 0:n]
    opacity = np.zeros(field.shape, np.float32)
    for _ in range(int(rng.integers(1, 4))):
        k = rng.integers(rows.size)
        ry, rx = rng.uniform(0.2, 0.55, 2) * scale
        distance = ((yy - rows[k]) / ry) ** 2 + ((xx - cols[k]) / rx) ** 2
        blob = distance + 0.6 * smooth_noise(field.shape, min(ry, rx) / 3, rng) < 1
        blob = ndimage.gaussian_filter(blob.astype(np.float32), rng.uniform(0.5, 2.0) * n / 128)
        opacity = np.maximum(opacity, blob * rng.uniform(0.35, 0.85))
    if rng.random() < 0.5:
        lines = np.exp(-(smooth_noise(field.shape, scale / 12, rng) / 0.12) ** 2)
        opacity *= 1 - 0.3 * lines
    return opacity


def hemithorax(image: np.ndarray, mask: np.ndarray, field: np.ndarray, on_image_left: bool,
               rng: np.random.Generator) -> np.ndarray:
    """`image` with the whole side of `field` opaque: from the lungs' midline out to the image edge and
    from above the apex to below the base, soft-edged, the ribs blurred away and everything brought
    towards the brightness of the body's soft tissue."""
    n = image.shape[0]
    cols = np.flatnonzero(mask.any(axis=0))
    mid = (cols[0] + cols[-1]) / 2 + (1 if on_image_left else -1) * rng.uniform(-0.02, 0.04) * n
    rows = np.flatnonzero(field.any(axis=1))
    top, bottom = rows[0] - rng.uniform(0.05, 0.25) * n, rows[-1] + rng.uniform(0.0, 0.06) * n
    yy, xx = np.mgrid[0:n, 0:image.shape[1]]
    side = (xx < mid) if on_image_left else (xx >= mid)
    region = ndimage.gaussian_filter((side & (yy >= top) & (yy <= bottom)).astype(np.float32),
                                     rng.uniform(0.01, 0.03) * n)
    body = image > image.mean()
    target = np.quantile(image[body], 0.9) * rng.uniform(0.95, 1.1) if body.any() else 1.0
    blurred = ndimage.gaussian_filter(image, rng.uniform(2.0, 6.0) * n / 128)
    fill = 0.3 * blurred + 0.7 * target + rng.uniform(0.01, 0.03) * smooth_noise(image.shape, n / 32, rng)
    alpha = region * rng.uniform(0.75, 1.0)
    return np.clip(np.maximum(image, (1 - alpha) * image + alpha * fill), 0, 1).astype(np.float32)


def draw_disease(image: np.ndarray, mask: np.ndarray, rng: np.random.Generator,
                 kinds: tuple[str, ...] = KINDS) -> np.ndarray:
    """`image` ((s, s) in [0, 1], the network's input) with one of `kinds` of disease on one side of
    `mask`. All but `hemithorax` change it only inside the mask grown by two pixels: the resized mask
    leaves a partial-volume rim of dark lung just outside it, which would otherwise outline a white lung
    (a shortcut real disease lacks); `hemithorax` reaches the image edge, so it outlines nothing."""
    mask = ndimage.binary_dilation(np.asarray(mask, bool), iterations=GROW)
    sides = [s for s in lung_sides(mask) if s.sum() >= 0.01 * mask.size]
    if not sides:
        return image
    index = int(rng.integers(len(sides)))
    field = sides[index]
    on_image_left = bool(np.nonzero(field)[1].mean() < mask.shape[1] / 2)
    kind = kinds[int(rng.integers(len(kinds)))]
    if kind == "hemithorax":
        return hemithorax(image, mask, field, on_image_left, rng)
    if kind == "whiteout":
        opacity = whiteout(field, rng)
    elif kind == "effusion":
        opacity = effusion(field, on_image_left, rng)
    else:
        opacity = consolidation(field, rng)
    opacity = opacity * field
    texture = rng.uniform(0.01, 0.035) * smooth_noise(image.shape, rng.uniform(1.0, 4.0) * image.shape[0] / 128, rng)
    target = surrounding_tissue(image, mask, rng) + texture
    opaque = np.maximum(image, (1 - opacity) * image + opacity * target)
    return np.clip(np.where(mask, opaque, image), 0, 1).astype(np.float32)
