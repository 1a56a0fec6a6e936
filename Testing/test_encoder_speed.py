"""The plain-torch encoder is MONAI's ResNet (so existing model folders load and training starts from
the same weights), and the detection path imports neither MONAI nor scikit-learn (about 2.7 s of
start-up on the 2-core machine)."""

from __future__ import annotations

import subprocess
import sys

import torch

from SSLAnomalyLib.encoder import EncoderConfig, build_encoder


def test_encoder_matches_monai_resnet_weights_init_and_output():
    from monai.networks.nets import ResNet

    config = EncoderConfig()
    torch.manual_seed(7)
    monai_net = ResNet(block="basic", layers=list(config.layers), block_inplanes=list(config.widths),
                       spatial_dims=2, n_input_channels=1, num_classes=2)
    torch.manual_seed(7)
    net = build_encoder(config)
    theirs, ours = monai_net.state_dict(), net.state_dict()
    assert list(theirs) == list(ours)
    assert all(torch.equal(theirs[k], ours[k]) for k in theirs)
    x = torch.randn(2, 1, config.input_size, config.input_size)
    for mode in (False, True):
        monai_net.train(mode), net.train(mode)
        assert torch.allclose(monai_net(x), net(x), atol=1e-5)


def test_detection_imports_neither_monai_nor_sklearn():
    code = ("import sys, SSLAnomalyLib.cli, SSLAnomalyLib.detector, SSLAnomalyLib.outputs; "
            "print(sorted(m for m in ('monai', 'sklearn') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
