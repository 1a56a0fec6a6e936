"""The encoder: a ResNet trained from scratch, and the feature maps the scoring reads from it.

The network is MONAI's `ResNet` (basic blocks, shortcut "B", 2D) written out in plain torch: same
layers, same parameter names and the same initialisation draws, so model folders trained with
either load into the other. Importing MONAI itself costs about 2 s (it imports all its submodules),
most of the 3 s a detection process may take to start.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class EncoderConfig:
    """Everything needed to rebuild the network; stored in the model manifest."""

    widths: tuple[int, ...] = (32, 64, 128, 256)
    layers: tuple[int, ...] = (2, 2, 2, 2)
    input_size: int = 128
    patch_layers: tuple[str, ...] = ("layer2", "layer3")  # feed the heatmap
    pooled_layers: tuple[str, ...] = ("layer3", "layer4")  # feed the image-level density score

    def to_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, d: dict) -> "EncoderConfig":
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})


class BasicBlock(nn.Module):
    def __init__(self, in_planes: int, planes: int, stride: int = 1):
        super().__init__()
        downsample = None  # made first, as MONAI does, so that the random initialisation matches
        if stride != 1 or in_planes != planes:
            downsample = nn.Sequential(nn.Conv2d(in_planes, planes, 1, stride=stride), nn.BatchNorm2d(planes))
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.act = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample

    def forward(self, x):
        out = self.bn2(self.conv2(self.act(self.bn1(self.conv1(x)))))
        out += x if self.downsample is None else self.downsample(x)
        return self.act(out)


class ResNet(nn.Module):
    """MONAI's ResNet(block="basic", spatial_dims=2, n_input_channels=1) with its defaults."""

    def __init__(self, layers: tuple[int, ...], widths: tuple[int, ...], num_classes: int):
        super().__init__()
        self.conv1 = nn.Conv2d(1, widths[0], 7, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0])
        self.act = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        in_planes = widths[0]
        for i, (n, planes) in enumerate(zip(layers, widths)):
            blocks = [BasicBlock(in_planes if b == 0 else planes, planes, 2 if i and b == 0 else 1) for b in range(n)]
            setattr(self, f"layer{i + 1}", nn.Sequential(*blocks))
            in_planes = planes
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(widths[-1], num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)
            elif isinstance(m, nn.Linear):
                nn.init.constant_(m.bias, 0)

    def forward(self, x):
        h = feature_maps(self, x)["layer4"]
        return self.fc(torch.flatten(self.avgpool(h), 1))


def build_encoder(config: EncoderConfig, num_classes: int = 2) -> ResNet:
    """ResNet (basic blocks) for one-channel 2D input, with a small classification head for the pretext."""
    return ResNet(tuple(config.layers), tuple(config.widths), num_classes)


def feature_maps(net: ResNet, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """Run the stem and the four stages, returning each stage's output by name."""
    h = net.maxpool(net.act(net.bn1(net.conv1(x))))
    out = {}
    for name in ("layer1", "layer2", "layer3", "layer4"):
        h = getattr(net, name)(h)
        out[name] = h
    return out


def patch_features(maps: dict[str, torch.Tensor], layers: tuple[str, ...]) -> torch.Tensor:
    """Concatenate the named stages at the resolution of the first one, 3x3-averaged (PatchCore's
    local neighbourhood aggregation): (batch, channels, h, w)."""
    size = maps[layers[0]].shape[-2:]
    parts = [F.interpolate(maps[n], size=size, mode="bilinear", align_corners=False)
             if maps[n].shape[-2:] != size else maps[n] for n in layers]
    return F.avg_pool2d(torch.cat(parts, 1), 3, stride=1, padding=1)


def pooled_features(maps: dict[str, torch.Tensor], layers: tuple[str, ...]) -> torch.Tensor:
    """Global-average-pooled, L2-normalised embedding per image: (batch, channels)."""
    v = torch.cat([maps[n].mean(dim=(-2, -1)) for n in layers], 1)
    return F.normalize(v, dim=1)


def to_batch(images01: list[np.ndarray] | np.ndarray) -> torch.Tensor:
    """[0, 1] square images -> (batch, 1, n, n) tensor centred for the network."""
    arr = np.asarray(images01, dtype=np.float32)
    return torch.from_numpy((arr - 0.5) / 0.25)[:, None]
