"""Scoring model inputs by their distance from normal in the encoder's feature space.

Components per image, each standardised by its mean and spread on held-out training normals:
- `pooled`: Mahalanobis distance of the pooled embedding (image-level density), pooled over the whole
  input, over the input framed by its lung fields (models fitted with `pooled_views` lungs), or both;
- `patch`: mean of the heatmap over the lung fields (patch-level distance), which is also the map
  the radiologist sees, so the score and the picture agree. The mean over the whole lung beat the
  top-10 % mean on the dev split (docs/model.md): pneumonia in children is often diffuse;
- `reconstruction` (models trained with the `mae` objective): how badly MAE's decoder redraws
  blanked patches of the lung fields (`reconstruction.py`);
- `sides` (models fitted from round 7 on): how far apart the two lung fields' aerated densities are
  (`field_density.py`): a white-out, a large effusion or a pneumothorax, which texture features can miss.
The image score is the mean of `pooled`, `patch` and, where scored, `reconstruction` (the texture
score), or `sides` less the
model's offset where that is higher (`SidesRule`): models fitted from round 8 on count `sides` only
beyond `SIDES_FROM` deviations, which a normal's imbalance rarely reaches, so the texture score of
almost every normal is left as it was while a one-sided departure decides on its own; older models
(offset 2, no gate) are scored exactly as they were fitted. Where `sides` is beyond `SIDES_FROM`,
the field that departs takes the heat of a normal peak as many deviations beyond the offset, so the
picture points where the score says.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from SSLAnomalyLib.core.model.acquisition import AcquisitionDirections
from SSLAnomalyLib.core.model.device import place
from SSLAnomalyLib.core.model.encoder import (IMAGE, EncoderConfig, feature_maps, joined_views, patch_features,
                                              pooled_features, to_batch)
from SSLAnomalyLib.core.model.field_density import SideDensity, side_density, side_heat
from SSLAnomalyLib.core.model.heatmap import model_grid_map
from SSLAnomalyLib.core.model.preprocess import lung_framed
from SSLAnomalyLib.core.model.reconstruction import RECONSTRUCTION, Reconstruction
from SSLAnomalyLib.core.model.reference import NormalReference

COMPONENTS = ("pooled", "patch")  # the texture score: their mean (every model), with RECONSTRUCTION where scored
SIDES = "sides"                   # the one-sided density component (models fitted with it)
FIELDS = ("field_left", "field_right")  # standardised, not scored: which lung field departs (with "peak": by how much)
SIDES_OFFSET = 2.0  # the offset of the models before round 8, and `train`'s default
SIDES_FROM = 2.0    # `sides` deviations beyond which an imbalance counts (heat; score from round 8 on)
SCORE_CHUNK = 32  # model inputs scored together (a volume's slices, a folder's normals)


@dataclass(frozen=True)
class SidesRule:
    """How `sides` enters the image score: max(texture, sides - offset), where `sides` is beyond
    `gate` deviations (at any value where gate is None: the models before round 8). Written into the
    manifest's scoring section as `sides_offset` and `sides_from`."""

    offset: float = SIDES_OFFSET
    gate: float | None = None

    @classmethod
    def fitted(cls, offset: float) -> "SidesRule":
        """The rule a model fitted now gets: its offset, counted beyond `SIDES_FROM`."""
        return cls(float(offset), SIDES_FROM)

    @classmethod
    def from_dict(cls, scoring: dict) -> "SidesRule":
        offset, gate = scoring.get("sides_offset"), scoring.get("sides_from")
        return cls(SIDES_OFFSET if offset is None else float(offset), None if gate is None else float(gate))

    def to_dict(self) -> dict:
        return {"sides_offset": self.offset, "sides_from": self.gate}

    def term(self, sides: np.ndarray) -> np.ndarray:
        """What standardised `sides` values bring to the image score (-inf: nothing)."""
        raised = np.asarray(sides, float) - self.offset
        return raised if self.gate is None else np.where(np.asarray(sides) > self.gate, raised, -np.inf)


@dataclass
class BatchScores:
    components: dict[str, np.ndarray]  # raw component scores, (n,) each
    grid_maps: np.ndarray              # (n, size, size) heatmaps on the model grid
    peaks: np.ndarray                  # (n,) in-lung maximum of each grid map
    lungs: np.ndarray                  # (n, size, size) the lung fields the maps were scored in
    densities: list[SideDensity]       # each input's lung-field densities
    standardised: dict[str, np.ndarray] | None = None  # z-score of each component, once standardisation is known
    sides: SidesRule = SidesRule()     # the scorer's: how `sides` enters the image score

    @property
    def score(self) -> np.ndarray | None:
        """(n,) image scores, once standardisation is known."""
        return None if self.standardised is None else image_score(self.standardised, self.sides)


class NotFittedError(RuntimeError):
    """A scorer asked to score before it has a normal reference and standardisation."""


class Scorer:
    """An encoder and what normal looks like through it, fitted on normals only:
    `Scorer(net, config).fit(reference normals, held-out normals)` learns `reference` and
    `component_stats`; a model folder gives them back ready-made (the detector passes them in).
    `sides` (a SidesRule) is a choice of the model, not learned: how far `sides` must depart to decide.
    With `reconstruction` (the decoder of an encoder trained with `mae`), that component is scored too.
    With `acquisition`, its directions are projected out of every patch feature (`acquisition.py`), in
    the reference as in what is scored."""

    def __init__(self, net: torch.nn.Module, config: EncoderConfig, device: torch.device | str = "cpu",
                 reference: NormalReference | None = None, component_stats: dict[str, list[float]] | None = None,
                 sides: SidesRule = SidesRule(), reconstruction: Reconstruction | None = None,
                 acquisition: AcquisitionDirections | None = None):
        self.net = place(net, device).eval()
        self.config, self.device = config, torch.device(device)
        self.reference, self.component_stats = reference, component_stats
        self.sides = sides
        self.reconstruction = None if reconstruction is None else reconstruction.to(self.device)
        self.acquisition = acquisition
        self.held_out_scores = None  # after `fit`: the held-out normals' scores, standardised

    def fit(self, reference_images01: np.ndarray, reference_lungs: np.ndarray, held_out_images01: np.ndarray,
            held_out_lungs: np.ndarray, standardise_positions: bool = False) -> "Scorer":
        """The normal reference from `reference_images01`; each component's mean and spread on the
        held-out normals (and with `standardise_positions`, each patch position's normal distance)."""
        pooled, patches = self.features(reference_images01, reference_lungs)
        self.reference = NormalReference().fit(pooled, patches.numpy())
        held_pooled, held_patches = self.features(held_out_images01, held_out_lungs)
        if standardise_positions:
            self.reference.fit_positions(held_patches.numpy())
        raw = self._score_features(held_pooled, held_patches, held_out_lungs, held_out_images01.shape[-1],
                                   held_out_images01)
        return self.standardise_on(raw.components, raw)

    def standardise_on(self, components: dict[str, np.ndarray], scores: "BatchScores | None" = None) -> "Scorer":
        """Set the standardisation from normals' raw components (a site's normals, in site calibration)."""
        self.component_stats = component_stats(components)
        if scores is not None:
            self.finish(scores)
            self.held_out_scores = scores
        return self

    @torch.no_grad()
    def features(self, images01: np.ndarray, lungs: np.ndarray, batch_size: int = 32) -> tuple[np.ndarray, torch.Tensor]:
        """Pooled embeddings (n, d) and patch features (n, c, h, w) of [0, 1] model inputs and their
        lung fields; the embedding joins the config's `pooled_views` (the `lungs` view is the input
        framed by its lung fields: one more pass of the encoder); each pass runs only as deep as the
        stages read from it. The patch features are without the model's acquisition directions."""
        pooled, patches = [], []
        layers = self.config.pooled_layers
        whole_input_needs = self.config.patch_layers + (layers if IMAGE in self.config.pooled_views else ())
        for i in range(0, len(images01), batch_size):
            x, lung = images01[i:i + batch_size], lungs[i:i + batch_size]
            maps = feature_maps(self.net, to_batch(x).to(self.device), whole_input_needs)
            encoded = [maps if view == IMAGE else self._framed_maps(x, lung) for view in self.config.pooled_views]
            pooled.append(joined_views([pooled_features(m, layers) for m in encoded]).float().cpu())
            patch = patch_features(maps, self.config.patch_layers).float()
            patches.append((patch if self.acquisition is None else self.acquisition.apply(patch)).cpu())
        return torch.cat(pooled).numpy(), torch.cat(patches)

    def _framed_maps(self, images01: np.ndarray, lungs: np.ndarray) -> dict[str, torch.Tensor]:
        """The encoder's maps of the inputs framed by their lung fields, to the deepest pooled stage."""
        framed = np.stack([lung_framed(x, lung) for x, lung in zip(images01, lungs)])
        return feature_maps(self.net, to_batch(framed).to(self.device), self.config.pooled_layers)

    def score(self, images01: np.ndarray, lungs: np.ndarray) -> BatchScores:
        """Scores of [0, 1] model inputs, `SCORE_CHUNK` at a time: the patch distances of a chunk
        (nine neighbours per position) are the largest arrays, so memory stays flat however many
        slices a volume has."""
        if self.reference is None or self.component_stats is None:
            raise NotFittedError("this Scorer has no normal reference yet: call fit() on normals, or load a model folder")
        chunks = [self._score_features(*self.features(images01[i:i + SCORE_CHUNK], lungs[i:i + SCORE_CHUNK]),
                                       lungs[i:i + SCORE_CHUNK],
                                       images01.shape[-1], images01[i:i + SCORE_CHUNK])
                  for i in range(0, len(images01), SCORE_CHUNK)]
        result = BatchScores({c: np.concatenate([b.components[c] for b in chunks]) for c in chunks[0].components},
                             np.concatenate([b.grid_maps for b in chunks]), np.concatenate([b.peaks for b in chunks]),
                             np.concatenate([b.lungs for b in chunks]), [d for b in chunks for d in b.densities])
        return self.finish(result)

    def _score_features(self, pooled, patches, lungs, size: int, images01: np.ndarray) -> BatchScores:
        """Raw components, texture maps and their in-lung peaks of one chunk of encoded inputs."""
        coarse = self.reference.patch_map(patches).numpy()
        grid = np.stack([model_grid_map(m, size, lung) for m, lung in zip(coarse, lungs)])
        densities = [side_density(x, lung) for x, lung in zip(images01, lungs)]
        values = [in_lung(g, lung) for g, lung in zip(grid, lungs)]
        peaks = np.array([v.max() for v in values])
        components = {"pooled": self.reference.pooled_score(pooled),
                      "patch": np.array([v.mean() for v in values]),
                      SIDES: np.array([d.difference for d in densities]),
                      "field_left": np.array([d.left for d in densities]),
                      "field_right": np.array([d.right for d in densities]), "peak": peaks}
        if self.reconstruction is not None:
            errors = self.reconstruction.error_maps(self.net, images01, self.device)
            components[RECONSTRUCTION] = np.array([in_lung(e, lung).mean() for e, lung in zip(errors, lungs)])
        return BatchScores(components, grid, peaks, np.asarray(lungs, bool), densities)

    @property
    def scored_components(self) -> tuple[str, ...]:
        """The components this scorer's image score is made of (`reconstruction` and `sides` only
        where they were fitted)."""
        fitted = self.component_stats or {}
        return COMPONENTS + tuple(c for c in (RECONSTRUCTION, SIDES) if c in fitted)

    def finish(self, scores: BatchScores) -> BatchScores:
        """Standardise raw scores and, where the two lung fields' densities are further apart than
        `SIDES_FROM` deviations, give the departing field the heat a normal image's peak would
        have at as many deviations beyond the model's offset (the normals' peak mean, plus one peak
        spread per deviation), so the heatmap maximum and a finding land on it as the score says."""
        scores.standardised = self.standardise(scores.components)
        scores.sides = self.sides
        if SIDES not in self.scored_components:
            return scores
        z = self._z(scores.components, FIELDS)
        peak_mean, peak_spread = self.component_stats["peak"]
        for i, d in enumerate(scores.densities):
            excess = scores.standardised[SIDES][i] - self.sides.offset
            if scores.standardised[SIDES][i] > SIDES_FROM and excess > 0:
                heat = side_heat(d, z["field_left"][i], z["field_right"][i], peak_mean + excess * peak_spread)
                scores.grid_maps[i] = np.maximum(scores.grid_maps[i], heat)
                scores.peaks[i] = in_lung(scores.grid_maps[i], scores.lungs[i]).max()
        return scores

    def standardise(self, components: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Each scored component as a z-score against the held-out training normals."""
        return self._z(components, self.scored_components)

    def _z(self, components: dict[str, np.ndarray], names) -> dict[str, np.ndarray]:
        return {c: (components[c] - self.component_stats[c][0]) / self.component_stats[c][1] for c in names}

    def combine(self, components: dict[str, np.ndarray]) -> np.ndarray:
        """The image score of raw components."""
        return image_score(self.standardise(components), self.sides)


def in_lung(grid_map: np.ndarray, lung: np.ndarray) -> np.ndarray:
    """The map's values inside the lung fields (everywhere when there are none)."""
    return grid_map[lung] if lung.any() else grid_map.ravel()


def image_score(standardised: dict[str, np.ndarray], sides: SidesRule = SidesRule()) -> np.ndarray:
    """The image score: the mean of the texture components, or what `sides` brings where higher."""
    texture = np.mean([standardised[c] for c in COMPONENTS + (RECONSTRUCTION,) if c in standardised], axis=0)
    return np.maximum(texture, sides.term(standardised[SIDES])) if SIDES in standardised else texture


def component_stats(components: dict[str, np.ndarray]) -> dict[str, list[float]]:
    """Mean and standard deviation of each component on held-out normals."""
    return {c: [float(np.mean(v)), float(np.std(v) + 1e-8)] for c, v in components.items()}
