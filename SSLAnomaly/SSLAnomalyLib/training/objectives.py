"""The self-supervised objectives the encoder can learn "normal" with, alone or as a weighted sum.

Each objective is a torch Module that owns its heads (the encoder is shared) and its parameters in
one frozen dataclass. `batch` builds its inputs from a draw of augmented normals (numpy, seeded by
the trainer's Generator); `loss` runs the shared encoder on them. Every one of them leaves the same
encoder behind, so scoring, reference and calibration do not depend on which was used.

- `anatpaste`, `opacity`: synthetic anomalies inside the lungs (synthetic_anomalies.py); image-level normal vs
  synthetic, plus which layer3 cells were altered.
- `contrastive`: two acquisition-augmented views of one normal are pulled together and apart from
  the other normals (SimCLR's NT-Xent, MONAI's `ContrastiveLoss`), so the features ignore exposure
  and field of view.
- `mae`: a share of square patches is blanked and a light decoder on layer3 redraws them (masked
  autoencoding; a ratio of 0.4 suits radiographs better than ImageNet's 0.75).
- `relpos`: which of the 8 neighbours of a centre patch another patch is (Doersch et al. 2015),
  with a gap and jitter so that edge continuity gives no shortcut.
- `jigsaw`: which of a fixed set of permutations shuffled a 3x3 grid of tiles (Noroozi and Favaro
  2016); each tile is encoded alone, so only the anatomy in it tells where it belongs.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F

from SSLAnomalyLib.core.model.encoder import EncoderConfig, feature_maps, to_batch
from SSLAnomalyLib.core.model.reconstruction import BLANK, MaskedPatches, patch_decoder, redraw
from SSLAnomalyLib.training.defaults import DEFAULT_PRETEXT, OBJECTIVE_NAMES
from SSLAnomalyLib.training.synthetic_anomalies import PretextConfig, synthesise


def _dict(cfg) -> dict:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(cfg).items()}


def _embed(encoder, x: torch.Tensor) -> torch.Tensor:
    """Global-average-pooled last stage: (batch, widths[3])."""
    return feature_maps(encoder, x)["layer4"].mean(dim=(-2, -1))


class Objective(torch.nn.Module):
    """One self-supervised task; subclasses set `name`, `Params`, their heads, `batch` and `loss`."""

    name = ""
    Params = None

    def __init__(self, encoder_cfg: EncoderConfig, params=None):
        super().__init__()
        self.params = params if params is not None else self.default_params()

    @classmethod
    def default_params(cls):
        return cls.Params()

    def batch(self, images: np.ndarray, lungs: np.ndarray, rng: np.random.Generator, augment) -> dict:
        raise NotImplementedError

    def loss(self, encoder: torch.nn.Module, batch: dict, device) -> torch.Tensor:
        raise NotImplementedError


class Synthetic(Objective):
    """Normal vs synthetic anomaly (half the batch each), image level and per layer3 cell."""

    Params = PretextConfig

    @classmethod
    def default_params(cls):
        return PretextConfig(kinds=(cls.name,))

    def __init__(self, encoder_cfg, params=None):
        super().__init__(encoder_cfg, params)
        self.classify = torch.nn.Linear(encoder_cfg.widths[3], 2)
        self.dense = torch.nn.Conv2d(encoder_cfg.widths[2], 1, 1)

    def batch(self, images, lungs, rng, augment):
        xs, masks = [], []
        for k, (image, lung) in enumerate(zip(images, lungs)):
            x = augment(image, rng)
            x, m = synthesise(x, lung, self.params, rng) if k % 2 else (x, np.zeros_like(x))
            xs.append(x); masks.append(m)
        return {"x": to_batch(xs), "label": torch.arange(len(xs)) % 2,
                "altered": torch.from_numpy(np.asarray(masks, np.float32))[:, None]}

    def loss(self, encoder, batch, device):
        maps = feature_maps(encoder, batch["x"].to(device))
        logits = self.classify(maps["layer4"].mean(dim=(-2, -1)))
        dense = self.dense(maps["layer3"])[:, 0]
        cells = F.adaptive_avg_pool2d(batch["altered"].to(device), dense.shape[-2:])[:, 0]
        return (F.cross_entropy(logits.float(), batch["label"].to(device))
                + self.params.dense_weight * F.binary_cross_entropy_with_logits(dense.float(), (cells > 0.05).float()))


class AnatPaste(Synthetic):
    name = "anatpaste"


class Opacity(Synthetic):
    name = "opacity"


@dataclass(frozen=True)
class ContrastiveParams:
    temperature: float = 0.5      # NT-Xent temperature (SimCLR's default for small batches)
    projection_dim: int = 64      # the loss is taken on a projection, so the encoder keeps more


class Contrastive(Objective):
    name = "contrastive"
    Params = ContrastiveParams

    def __init__(self, encoder_cfg, params=None):
        super().__init__(encoder_cfg, params)
        w = encoder_cfg.widths[3]
        # batch-normalised projection (SimCLR v2): pooled ResNet features of radiographs are nearly
        # parallel at first, which leaves NT-Xent at its chance value log(2B - 1) without it
        self.project = torch.nn.Sequential(torch.nn.Linear(w, w), torch.nn.BatchNorm1d(w), torch.nn.ReLU(),
                                           torch.nn.Linear(w, self.params.projection_dim))
        from monai.losses import ContrastiveLoss

        self.criterion = ContrastiveLoss(temperature=self.params.temperature)

    def batch(self, images, lungs, rng, augment):
        return {"view1": to_batch([augment(x, rng) for x in images]), "view2": to_batch([augment(x, rng) for x in images])}

    def loss(self, encoder, batch, device):
        z1 = self.project(_embed(encoder, batch["view1"].to(device)))
        z2 = self.project(_embed(encoder, batch["view2"].to(device)))
        return self.criterion(z1.float(), z2.float())


MAE = "mae"
MaeParams = MaskedPatches  # the objective's parameters are how scoring blanks patches too


def mae_mask(n: int, params: MaeParams, rng: np.random.Generator) -> np.ndarray:
    """A boolean (n, n) mask of exactly round(mask_ratio * patches) blanked square patches."""
    p = params.patch_side(n)
    grid = -(-n // p)
    chosen = rng.permutation(grid * grid)[:int(round(params.mask_ratio * grid * grid))]
    cells = np.zeros(grid * grid, bool)
    cells[chosen] = True
    return np.kron(cells.reshape(grid, grid), np.ones((p, p), bool))[:n, :n]


class Mae(Objective):
    """Masked patches are set to the network's zero (the image mean) and redrawn from layer3 by a
    light decoder (core/model/reconstruction.py), which the model folder keeps for the
    `reconstruction` score component."""

    name = MAE
    Params = MaeParams

    def __init__(self, encoder_cfg, params=None):
        super().__init__(encoder_cfg, params)
        self.decode = patch_decoder(encoder_cfg)

    def batch(self, images, lungs, rng, augment):
        originals = np.stack([augment(x, rng) for x in images])
        masks = np.stack([mae_mask(originals.shape[-1], self.params, rng) for _ in originals])
        return {"masked": to_batch(np.where(masks, BLANK, originals)), "target": to_batch(originals),
                "mask": torch.from_numpy(masks)[:, None]}

    def loss(self, encoder, batch, device):
        target, mask = batch["target"].to(device), batch["mask"].to(device)
        drawn = redraw(encoder, self.decode, batch["masked"].to(device))
        return ((drawn.float() - target) ** 2)[mask].mean()


NEIGHBOURS = [(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1) if (dy, dx) != (0, 0)]


@dataclass(frozen=True)
class RelposParams:
    patch_fraction: float = 0.25   # patch side as a fraction of the image side
    gap_fraction: float = 0.05     # gap between neighbouring patches
    jitter_fraction: float = 0.02  # each patch moves independently by up to this much


def relpos_pair(image: np.ndarray, params: RelposParams, rng: np.random.Generator):
    """(centre patch, neighbour patch, label): label k means the neighbour sits at NEIGHBOURS[k]."""
    n = image.shape[0]
    p = max(1, int(round(params.patch_fraction * n)))
    gap, jitter = int(round(params.gap_fraction * n)), int(round(params.jitter_fraction * n))
    step = p + gap
    low, high = step + jitter, n - p - step - jitter
    cy, cx = rng.integers(low, high + 1, size=2)
    label = int(rng.integers(len(NEIGHBOURS)))
    dy, dx = NEIGHBOURS[label]
    jy, jx = rng.integers(-jitter, jitter + 1, size=2)
    ny, nx = cy + dy * step + jy, cx + dx * step + jx
    return image[cy:cy + p, cx:cx + p], image[ny:ny + p, nx:nx + p], label


class Relpos(Objective):
    name = "relpos"
    Params = RelposParams

    def __init__(self, encoder_cfg, params=None):
        super().__init__(encoder_cfg, params)
        w = encoder_cfg.widths[3]
        self.classify = torch.nn.Sequential(torch.nn.Linear(2 * w, w), torch.nn.ReLU(), torch.nn.Linear(w, len(NEIGHBOURS)))

    def batch(self, images, lungs, rng, augment):
        centres, neighbours, labels = zip(*(relpos_pair(augment(x, rng), self.params, rng) for x in images))
        return {"centre": to_batch(centres), "neighbour": to_batch(neighbours), "label": torch.tensor(labels)}

    def loss(self, encoder, batch, device):
        pair = torch.cat([_embed(encoder, batch["centre"].to(device)), _embed(encoder, batch["neighbour"].to(device))], 1)
        return F.cross_entropy(self.classify(pair).float(), batch["label"].to(device))


@dataclass(frozen=True)
class JigsawParams:
    grid: int = 3                  # tiles per side
    tile_fraction: float = 0.85    # tile side as a fraction of its cell (the rest is gap and jitter)
    permutations: int = 24         # size of the fixed permutation set, the identity first
    permutation_seed: int = 0


def jigsaw_permutations(params: JigsawParams) -> np.ndarray:
    """(permutations, grid*grid) distinct permutations from a fixed seed; row 0 is the identity."""
    k = params.grid * params.grid
    rng = np.random.default_rng(params.permutation_seed)
    chosen = [tuple(range(k))]
    while len(chosen) < params.permutations:
        p = tuple(int(i) for i in rng.permutation(k))
        if p not in chosen:
            chosen.append(p)
    return np.asarray(chosen)


def jigsaw_tiles(image: np.ndarray, permutation: np.ndarray, params: JigsawParams,
                 rng: np.random.Generator) -> np.ndarray:
    """(grid*grid, t, t): tile j of the result is the image's cell permutation[j] (row-major), each
    tile cut at a random offset inside its cell."""
    cell = image.shape[0] // params.grid
    t = max(1, int(params.tile_fraction * cell))
    tiles = []
    for j in range(params.grid * params.grid):
        r, c = divmod(j, params.grid)
        oy, ox = rng.integers(0, cell - t + 1, size=2)
        tiles.append(image[r * cell + oy:r * cell + oy + t, c * cell + ox:c * cell + ox + t])
    return np.stack(tiles)[permutation]


class Jigsaw(Objective):
    name = "jigsaw"
    Params = JigsawParams

    def __init__(self, encoder_cfg, params=None):
        super().__init__(encoder_cfg, params)
        self.register_buffer("perms", torch.from_numpy(jigsaw_permutations(self.params)), persistent=False)
        w, k = encoder_cfg.widths[3], self.params.grid ** 2
        self.classify = torch.nn.Sequential(torch.nn.Linear(k * w, 2 * w), torch.nn.ReLU(),
                                            torch.nn.Linear(2 * w, self.params.permutations))

    def batch(self, images, lungs, rng, augment):
        perms = self.perms.numpy()
        labels = rng.integers(len(perms), size=len(images))
        tiles = [jigsaw_tiles(augment(x, rng), perms[label], self.params, rng) for x, label in zip(images, labels)]
        return {"tiles": to_batch(np.concatenate(tiles)), "label": torch.from_numpy(labels)}

    def loss(self, encoder, batch, device):
        labels = batch["label"].to(device)
        codes = _embed(encoder, batch["tiles"].to(device)).reshape(len(labels), -1)
        return F.cross_entropy(self.classify(codes).float(), labels)


OBJECTIVES = {o.name: o for o in (AnatPaste, Opacity, Contrastive, Mae, Relpos, Jigsaw)}
assert tuple(OBJECTIVES) == OBJECTIVE_NAMES, "training/defaults.py names the objectives the command line offers"


@dataclass(frozen=True)
class Pretext:
    """What the encoder is trained with: (objective, weight) pairs whose losses are summed."""

    terms: tuple[tuple[str, float], ...] = ((DEFAULT_PRETEXT, 1.0),)

    @classmethod
    def parse(cls, text: str) -> "Pretext":
        """'contrastive:0.5,anatpaste' -> contrastive weighted 0.5 plus anatpaste weighted 1."""
        terms = []
        for part in (p.strip() for p in text.split(",")):
            name, _, weight = part.partition(":")
            if name not in OBJECTIVES:
                raise ValueError(f"unknown objective {name!r}; choose from {', '.join(OBJECTIVES)}")
            try:
                w = float(weight) if weight else 1.0
            except ValueError:
                raise ValueError(f"weight of {name!r} is not a number: {weight!r}") from None
            if not np.isfinite(w) or w <= 0:
                raise ValueError(f"weight of {name!r} must be a positive finite number, not {weight}")
            if name in (t[0] for t in terms):
                raise ValueError(f"objective {name!r} is named twice")
            terms.append((name, w))
        return cls(tuple(terms))

    @property
    def label(self) -> str:
        return "+".join(name for name, _ in self.terms)

    def build(self, encoder_cfg: EncoderConfig) -> torch.nn.ModuleDict:
        return torch.nn.ModuleDict({name: OBJECTIVES[name](encoder_cfg) for name, _ in self.terms})

    def weights(self) -> dict[str, float]:
        return dict(self.terms)

    def to_dict(self) -> dict:
        """The manifest's `pretext`: every objective's weight and parameters."""
        return {"loss": "sum of weight x objective loss",
                "objectives": [{"name": name, "weight": w, "params": _dict(OBJECTIVES[name].default_params())}
                               for name, w in self.terms]}

    @classmethod
    def from_dict(cls, d: dict) -> "Pretext":
        """From a manifest; models from before the objectives (`{"kinds": [...]}`) read as those
        synthetic kinds, each weighted 1."""
        if "objectives" in d:
            return cls(tuple((o["name"], float(o["weight"])) for o in d["objectives"]))
        return cls(tuple((k, 1.0) for k in d["kinds"]))
