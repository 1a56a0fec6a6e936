"""The encoder: a MONAI ResNet trained from scratch, and the feature maps the scoring reads from it.

MONAI is imported when a network is built, not when this module is, so commands that never build
one (`--help`, reading, `sample`) do not pay for MONAI's import of all its submodules."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F

STAGES = ("layer1", "layer2", "layer3", "layer4")  # the ResNet's four stages, finest first
# What the image-level embedding is pooled over: the whole model input, or the input cropped to its lung
# fields' box (`preprocess.lung_framed`), which leaves out what an acquisition puts around the lungs.
IMAGE, LUNGS = "image", "lungs"
POOLED_VIEWS = (IMAGE, LUNGS)


@dataclass(frozen=True)
class EncoderConfig:
    """Everything needed to rebuild the network; stored in the model manifest."""

    widths: tuple[int, ...] = (32, 64, 128, 256)
    layers: tuple[int, ...] = (2, 2, 2, 2)
    input_size: int = 128
    patch_layers: tuple[str, ...] = ("layer2", "layer3")  # feed the heatmap
    pooled_layers: tuple[str, ...] = ("layer3", "layer4")  # feed the image-level density score
    pooled_views: tuple[str, ...] = (IMAGE,)  # what they are pooled over (POOLED_VIEWS), joined in this order

    def __post_init__(self):
        for name, allowed in (("patch_layers", STAGES), ("pooled_layers", STAGES), ("pooled_views", POOLED_VIEWS)):
            chosen = getattr(self, name)
            if not chosen or set(chosen) - set(allowed) or len(set(chosen)) < len(chosen):
                raise ValueError(f"{name} must name one or more of {', '.join(allowed)} once each, not {list(chosen)}")

    def to_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, d: dict) -> "EncoderConfig":
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})


def build_encoder(config: EncoderConfig, num_classes: int = 2) -> torch.nn.Module:
    """MONAI ResNet (basic blocks) for one-channel 2D input, with a small classification head for the pretext."""
    from monai.networks.nets import ResNet

    return ResNet(block="basic", layers=list(config.layers), block_inplanes=list(config.widths),
                  spatial_dims=2, n_input_channels=1, num_classes=num_classes)


def feature_maps(net: torch.nn.Module, x: torch.Tensor, needed: tuple[str, ...] = STAGES) -> dict[str, torch.Tensor]:
    """Run the stem and the stages up to the deepest of `needed`, returning each stage's output by
    name (a scorer that reads layer1 and layer2 of a pass need not run layer3 and layer4)."""
    h = net.maxpool(net.act(net.bn1(net.conv1(x))))
    out = {}
    for name in STAGES[:max(STAGES.index(n) for n in needed) + 1]:
        h = getattr(net, name)(h)
        out[name] = h
    return out


def patch_features(maps: dict[str, torch.Tensor], layers: tuple[str, ...]) -> torch.Tensor:
    """Concatenate the named stages at the resolution of the finest one, 3x3-averaged (PatchCore's
    local neighbourhood aggregation): (batch, channels, h, w)."""
    size = max((maps[n].shape[-2:] for n in layers), key=lambda s: s[0])
    parts = [F.interpolate(maps[n], size=size, mode="bilinear", align_corners=False)
             if maps[n].shape[-2:] != size else maps[n] for n in layers]
    return F.avg_pool2d(torch.cat(parts, 1), 3, stride=1, padding=1)


def pooled_features(maps: dict[str, torch.Tensor], layers: tuple[str, ...]) -> torch.Tensor:
    """Global-average-pooled, L2-normalised embedding per image: (batch, channels)."""
    v = torch.cat([maps[n].mean(dim=(-2, -1)) for n in layers], 1)
    return F.normalize(v, dim=1)


def joined_views(embeddings: list[torch.Tensor]) -> torch.Tensor:
    """One L2-normalised embedding of several views' (each already normalised, so each weighs the
    same); a single view's is returned as it is (models of one view score exactly as before)."""
    return embeddings[0] if len(embeddings) == 1 else F.normalize(torch.cat(embeddings, 1), dim=1)


def to_batch(images01: list[np.ndarray] | np.ndarray) -> torch.Tensor:
    """[0, 1] square images -> (batch, 1, n, n) tensor centred for the network."""
    arr = np.asarray(images01, dtype=np.float32)
    return torch.from_numpy((arr - 0.5) / 0.25)[:, None]
