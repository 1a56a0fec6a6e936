"""A normal-only signal for choosing among training checkpoints.

The feature-distance scoring (the one detection uses) must separate held-out training normals from
the same images carrying a clearly visible synthetic opacity. Only normal images are involved; the
opacities are drawn once from a fixed seed so every checkpoint faces the same test. They are larger
and denser than the training pastes (`CHECK_OPACITIES`): faint ones moved no score, even of a
trained encoder, so the signal stayed at chance and could not tell checkpoints apart. Half of the
normals are seen through a random acquisition change (`training.augment`: field of view, exposure,
contrast): a checkpoint that calls a zoomed or darker normal abnormal loses signal, so the kept
encoder is the one that holds up on radiographs taken otherwise, still judged on normals only.
A run that draws foreign objects on its training views (`--foreign-objects P`) draws them on the
same share of these shifted normals: a checkpoint that calls an electrode or a lead abnormal loses
signal too, so the signal rewards what that run is teaching (and the starting encoder of a
fine-tune, a candidate as well, is judged by the same test).
It chooses among the checkpoints of one run only: across encoders it measured the pretext's own kind of
opacity and ranked three pediatric encoders the reverse of dev and held-out data (docs/model.md, round
18), so whether a run beat its start is for the bundling rule's checks to say, never this signal.
"""

from __future__ import annotations

import numpy as np
import torch
from sklearn.metrics import roc_auc_score

from SSLAnomalyLib.core.anatomy.lung_network import bundled_segmenter
from SSLAnomalyLib.core.model.encoder import EncoderConfig
from SSLAnomalyLib.core.model.scoring import Scorer
from SSLAnomalyLib.training.synthetic_anomalies import PretextConfig, opacity
from SSLAnomalyLib.training.trainer import augment

MAX_REFERENCE_IMAGES = 300
CHECK_OPACITIES = PretextConfig(kinds=("opacity",), area_range=(0.10, 0.30), haze_strength=(0.35, 0.6))


class SyntheticCheck:
    def __init__(self, config: EncoderConfig, train, held_out, seed: int, device, objects: float = 0.0):
        rng = np.random.default_rng([seed, 7])
        idx = rng.permutation(len(train.images01))[:MAX_REFERENCE_IMAGES]
        self.config, self.device = config, device
        self.reference_images, self.reference_lungs = train.images01[idx], train.lungs[idx]
        shifted = np.stack([augment(x, rng, objects) for x in held_out.images01])
        self.normals = np.concatenate([held_out.images01, shifted])
        self.lungs = np.concatenate([held_out.lungs, bundled_segmenter().masks(shifted)])
        self.anomalous = np.stack([opacity(x, m if m.any() else np.ones_like(m), CHECK_OPACITIES, rng)[0]
                                   for x, m in zip(self.normals, self.lungs)])

    def __call__(self, net: torch.nn.Module) -> float:
        was_training = net.training
        scorer = Scorer(net, self.config, device=self.device).fit(self.reference_images, self.reference_lungs,
                                                                   self.normals, self.lungs)
        s_normal = scorer.held_out_scores.score
        s_anomalous = scorer.score(self.anomalous, self.lungs).score
        net.train(was_training)
        y = np.r_[np.zeros(len(s_normal)), np.ones(len(s_anomalous))]
        return float(roc_auc_score(y, np.r_[s_normal, s_anomalous]))
