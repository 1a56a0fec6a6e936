"""The image-level embedding of the lung-framed input (`pooled_views` lungs): what an acquisition puts
around the lungs (a burned-in label, a wider field of view) leaves it as it is."""

import numpy as np
import pytest

from conftest import data_dir
from SSLAnomalyLib.core.anatomy.lung_network import bundled_segmenter
from SSLAnomalyLib.core.model.encoder import EncoderConfig, build_encoder
from SSLAnomalyLib.core.model.preprocess import lung_box, lung_framed, to_model_input
from SSLAnomalyLib.core.model.scoring import Scorer
from SSLAnomalyLib.core.reading.images import read_radiograph

SIZE = 128


def nih_input(k: int = 0) -> np.ndarray:
    return read_radiograph(sorted(data_dir("nih", "train", "normal").iterdir())[k]).pixels[0]


def test_a_label_burned_in_outside_the_lung_box_changes_the_image_view_only():
    x = to_model_input(nih_input(), SIZE)
    lung = bundled_segmenter().masks(x[None])[0]
    r0, _, c0, _ = lung_box(lung)
    assert r0 > 4 and c0 > 4, "the lungs of this radiograph leave a corner free"
    labelled = x.copy()
    labelled[:r0 - 1, :c0 - 1] = 1.0  # a bright burned-in label in the corner, outside the framed box
    assert np.array_equal(lung_framed(labelled, lung), lung_framed(x, lung))
    net = build_encoder(EncoderConfig(input_size=SIZE))
    pooled = {}
    for views in (("image",), ("lungs",), ("image", "lungs")):
        scorer = Scorer(net, EncoderConfig(input_size=SIZE, pooled_views=views))
        a, _ = scorer.features(np.stack([x, labelled]), np.stack([lung, lung]))
        assert np.allclose(np.linalg.norm(a, axis=1), 1.0, atol=1e-5)  # one L2-normalised embedding per image
        pooled[views] = a
    assert np.allclose(pooled[("lungs",)][0], pooled[("lungs",)][1], atol=1e-6)
    assert not np.allclose(pooled[("image",)][0], pooled[("image",)][1], atol=1e-3)
    assert pooled[("image", "lungs")].shape[1] == 2 * pooled[("image",)].shape[1]


def test_a_wider_field_of_view_frames_to_nearly_the_same_lungs():
    """The same radiograph with a quarter of its size added as a dark border on every side (another
    acquisition's field of view): the whole inputs differ, the lung-framed ones nearly agree."""
    pixels = nih_input(1)
    pad = pixels.shape[0] // 4
    wide = np.pad(pixels, pad, constant_values=float(np.percentile(pixels, 2)))
    xs = np.stack([to_model_input(pixels, SIZE), to_model_input(wide, SIZE)])
    lungs = bundled_segmenter().masks(xs)
    assert lungs.all(axis=0).sum() < 0.7 * lungs[0].sum()  # the lungs lie elsewhere in the wider input
    framed = np.stack([lung_framed(x, m) for x, m in zip(xs, lungs)])
    whole_r = np.corrcoef(xs[0].ravel(), xs[1].ravel())[0, 1]
    framed_r = np.corrcoef(framed[0].ravel(), framed[1].ravel())[0, 1]
    assert framed_r > 0.9 and framed_r > whole_r + 0.2, (framed_r, whole_r)


def test_no_lung_field_leaves_the_input_as_it_is():
    x = np.random.default_rng(0).random((SIZE, SIZE), dtype=np.float32)
    assert lung_framed(x, np.zeros_like(x, bool)) is x


def test_an_unknown_view_is_refused():
    with pytest.raises(ValueError, match="pooled_views must name one or more of image, lungs"):
        EncoderConfig(pooled_views=("heart",))


def test_a_model_pooled_over_both_views_trains_reloads_and_detects(small_normals, tmp_path):
    """The option end to end: training (its checkpoint check fits a Scorer on lung fields too), the
    model folder's manifest, and a detection with the reloaded model."""
    from SSLAnomalyLib.cli import main
    from SSLAnomalyLib.core.detection.detector import AnomalyDetector

    train, val = small_normals
    out = tmp_path / "model"
    assert main(["train", "--normals", str(train), "--val-normals", str(val), "--out", str(out), "--minutes", "5",
                 "--max-steps", "2", "--size", "64", "--pooled-views", "image,lungs", "--seed", "0", "--quiet"]) == 0
    detector = AnomalyDetector.load(out, device="cpu")
    assert detector.manifest.encoder.pooled_views == ("image", "lungs")
    assert "the whole image and the image framed by its lung fields, joined" in (out / "MODEL_CARD.md").read_text()
    result = detector.detect(read_radiograph(sorted(data_dir("kermany", "val", "pneumonia").iterdir())[0]))
    assert np.isfinite(result.score)
