"""MAE's reconstruction error as a score component (`reconstruction`).

An encoder trained with the `mae` objective (training/objectives.py) learned to redraw blanked
patches of normal radiographs from their surroundings; it redraws what normal anatomy would put
there, so a patch it redraws badly departs from normal. The decoder that did the redrawing is kept
in the model folder (`decoder.*` in model.safetensors) and scoring blanks the image in a few fixed,
disjoint patch sets that together cover it (`covering_masks`), so every pixel is redrawn once from
unblanked neighbours; the component is the mean squared error of the redrawn pixels inside the lung
fields, standardised on normals like the other components.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F

from SSLAnomalyLib.core.model.encoder import EncoderConfig, feature_maps, to_batch

RECONSTRUCTION = "reconstruction"
LAYER3_STRIDE = 16  # input pixels per layer3 cell of the ResNet
BLANK = 0.5         # a blanked pixel: the network's zero (the image mean)


@dataclass(frozen=True)
class MaskedPatches:
    """How patches are blanked: in training (`mae`), a random `mask_ratio` of them; in scoring, the
    same patches in ceil(1 / mask_ratio) disjoint sets. Written to the manifest's scoring section."""

    mask_ratio: float = 0.4       # share of patches blanked (MAE for chest X-rays: 0.4 beats 0.75)
    patch_fraction: float = 0.125  # patch side as a fraction of the image side (16 px at 128)

    @property
    def sets(self) -> int:
        """How many disjoint patch sets scoring blanks in turn: ceil(1 / mask_ratio), at least 2."""
        return max(2, math.ceil(1 / self.mask_ratio - 1e-9))

    def patch_side(self, n: int) -> int:
        return max(1, int(round(self.patch_fraction * n)))

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "MaskedPatches":
        return cls(float(d["mask_ratio"]), float(d["patch_fraction"]))


def patch_decoder(encoder_cfg: EncoderConfig) -> torch.nn.Sequential:
    """MAE's light decoder: each layer3 cell (16 px) redraws its own 16 x 16 pixels through a 3x3
    convolution and a per-cell linear map (MAE's patch head)."""
    return torch.nn.Sequential(
        torch.nn.Conv2d(encoder_cfg.widths[2], 128, 3, padding=1), torch.nn.ReLU(),
        torch.nn.Conv2d(128, LAYER3_STRIDE ** 2, 1), torch.nn.PixelShuffle(LAYER3_STRIDE))


def redraw(encoder: torch.nn.Module, decoder: torch.nn.Module, blanked: torch.Tensor) -> torch.Tensor:
    """The decoder's drawing of a (batch, 1, n, n) network input from the encoder's layer3."""
    drawn = decoder(feature_maps(encoder, blanked)["layer3"])
    return F.interpolate(drawn, size=blanked.shape[-2:], mode="bilinear", align_corners=False)


def covering_masks(n: int, params: MaskedPatches) -> np.ndarray:
    """(k, n, n) boolean masks of disjoint patch sets that together cover the image, k = ceil(1 /
    mask_ratio): patch (r, c) is in set (r + (k - 1) c) mod k, so no patch shares its set with a
    patch beside, above or below it and each is redrawn from its four neighbours."""
    k = params.sets
    p = params.patch_side(n)
    grid = -(-n // p)
    r, c = np.indices((grid, grid))
    sets = (r + (k - 1) * c) % k
    return np.stack([np.kron(sets == j, np.ones((p, p), bool))[:n, :n] for j in range(k)])


class Reconstruction:
    """The kept decoder and how scoring blanks patches: `error_maps` gives each input's squared
    redrawing error on the model grid."""

    def __init__(self, decoder: torch.nn.Module, params: MaskedPatches):
        self.decoder, self.params = decoder.eval(), params

    @classmethod
    def from_state(cls, state: dict[str, torch.Tensor], params: MaskedPatches,
                   encoder_cfg: EncoderConfig) -> "Reconstruction":
        decoder = patch_decoder(encoder_cfg)
        decoder.load_state_dict(state)
        return cls(decoder, params)

    def state(self) -> dict[str, torch.Tensor]:
        return {k: v.detach().cpu().contiguous() for k, v in self.decoder.state_dict().items()}

    def to(self, device) -> "Reconstruction":
        self.decoder.to(device)
        return self

    @torch.no_grad()
    def error_maps(self, encoder: torch.nn.Module, images01: np.ndarray, device) -> np.ndarray:
        """(n, size, size) squared error of each pixel redrawn while its patch set was blanked."""
        masks = torch.from_numpy(covering_masks(images01.shape[-1], self.params))[:, None].to(device)
        target = to_batch(images01).to(device)
        blank = (BLANK - 0.5) / 0.25  # to_batch's scaling of the blank value
        error = torch.zeros_like(target)
        for mask in masks:
            drawn = redraw(encoder, self.decoder, torch.where(mask, blank, target)).float()
            error += torch.where(mask, (drawn - target) ** 2, 0.0)
        return error[:, 0].cpu().numpy()
