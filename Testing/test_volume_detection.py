"""A volume is scored 32 slices at a time (memory stays flat however many slices it has): every
slice gets the score, heatmap and findings it gets alone, whatever chunk it falls in, and a
prefetched first chunk changes nothing."""

import numpy as np
import pytest
from PIL import Image

from conftest import data_dir
from SSLAnomalyLib.core.detection.detector import AnomalyDetector
from SSLAnomalyLib.core.model.scoring import SCORE_CHUNK
from SSLAnomalyLib.core.reading.image import Radiograph


def test_a_volume_longer_than_a_chunk_scores_each_slice_as_it_scores_alone(small_model):
    detector = AnomalyDetector.load(small_model)
    files = sorted(data_dir("kermany", "val", "pneumonia").iterdir())[:6] + \
        sorted(data_dir("kermany", "val", "normal").iterdir())[:4]
    frames = [np.asarray(Image.open(f).convert("L").resize((160, 128)), np.float32) for f in files]
    frames.append(frames[0][::-1])  # an upside-down slice
    alone_frames = [detector.detect(Radiograph(f[None], spacing=(0.5, 0.5, 2.0))).score for f in frames]
    highest = frames.pop(int(np.argmax(alone_frames)))
    n = SCORE_CHUNK + 8
    pixels = np.stack([frames[k % len(frames)] for k in range(n)])
    pixels[SCORE_CHUNK + 3] = highest  # the highest-scoring slice only in the second chunk
    volume = Radiograph(pixels, spacing=(0.5, 0.5, 2.0), is_2d=False)
    result = detector.detect(volume, lungs=True)
    alone = [detector.detect(Radiograph(pixels[k:k + 1], spacing=(0.5, 0.5, 2.0))) for k in range(n)]
    np.testing.assert_allclose(result.slice_scores, [a.score for a in alone], rtol=1e-4, atol=1e-5)
    top = int(np.argmax(result.slice_scores))
    assert top >= SCORE_CHUNK and result.score == max(result.slice_scores)
    assert result.components == pytest.approx(alone[top].components, rel=1e-4) and result.abnormal == alone[top].abnormal
    for k in (0, SCORE_CHUNK - 1, SCORE_CHUNK, top, n - 1):
        np.testing.assert_allclose(result.heatmap.pixels[k], alone[k].heatmap.pixels[0], rtol=1e-4, atol=1e-5)
        assert sum(f.slice_index == k for f in result.findings) == len(alone[k].findings)
    assert result.lungs.pixels.shape == pixels.shape and result.lungs.pixels[top].any()
    ahead = detector.detect(volume, detector.prepare_ahead(volume))
    assert ahead.slice_scores == result.slice_scores


@pytest.mark.parametrize("flip, direction", [((0,), (1, 0, 0, 0, -1, 0, 0, 0, 1)),   # rows bottom-up (dcm2niix)
                                             ((1,), (-1, 0, 0, 0, 1, 0, 0, 0, 1))])  # columns right-to-left
def test_a_file_stored_against_its_display_is_scored_as_a_viewer_shows_it(pediatric_model, flip, direction):
    """A NIfTI/NRRD whose direction flips its stored rows or columns is shown upright by every viewer;
    it was scored as stored (a normal stored bottom-up scored 13 against -0.8, ABNORMAL). Its score,
    and its heatmap and findings on the file's own grid, are now the upright image's, flipped back."""
    detector = AnomalyDetector.load(pediatric_model)
    upright = np.asarray(Image.open(sorted(data_dir("kermany", "val", "normal").iterdir())[0]).convert("L"), np.float32)
    shown = detector.detect(Radiograph(upright[None]), lungs=True)
    stored = detector.detect(Radiograph(np.flip(upright, flip)[None], direction=np.reshape(direction, (3, 3))),
                             lungs=True)
    assert abs(stored.score - shown.score) < 1e-4 and stored.abnormal == shown.abnormal
    np.testing.assert_allclose(stored.heatmap.pixels[0], np.flip(shown.heatmap.pixels[0], flip), rtol=1e-4, atol=1e-5)
    assert np.array_equal(stored.lungs.pixels[0], np.flip(shown.lungs.pixels[0], flip))
    rows, cols = upright.shape
    for a, b in zip(stored.findings, shown.findings):
        i0, j0, i1, j1 = b.bbox_ijk
        assert a.bbox_ijk == ([i0, rows - 1 - j1, i1, rows - 1 - j0] if flip == (0,) else [cols - 1 - i1, j0, cols - 1 - i0, j1])


def test_a_blank_slice_of_a_volume_is_not_scored_and_a_volume_of_blank_slices_is_refused(tmp_path):
    """Two normal chests and a black slice (padding, an empty frame): the black slice scored 10.2, far
    beyond every calibration normal, made the volume ABNORMAL and put a finding and the overlay on black."""
    import json

    import SimpleITK as sitk

    from SSLAnomalyLib.cli import main
    from SSLAnomalyLib.core.files.errors import ReadError
    from SSLAnomalyLib.core.reading.images import read_radiograph

    normals = [np.asarray(Image.open(f).convert("L").resize((512, 512)), np.uint8)
               for f in sorted(data_dir("nih", "val", "normal").iterdir())[:2]]
    sitk.WriteImage(sitk.GetImageFromArray(np.stack(normals + [np.zeros_like(normals[0])])), str(tmp_path / "v.nrrd"))
    out = tmp_path / "out"
    assert main(["detect", "--model", "default", "--quiet", "--out", str(out), str(tmp_path / "v.nrrd")]) == 0
    found = json.loads((out / "v.findings.json").read_text())
    alone = [AnomalyDetector.load("default").detect(Radiograph(n[None].astype(np.float32))) for n in normals]
    assert found["score"] == pytest.approx(max(a.score for a in alone), abs=1e-5) and not found["abnormal"]
    assert not [f for f in found["findings"] if f["slice_index"] == 2]
    assert "1 of its 3 slices are blank and not scored (slice_index 2)" in found["warnings"]
    assert not sitk.GetArrayFromImage(sitk.ReadImage(str(out / "v.heatmap.nrrd")))[2].any()
    sitk.WriteImage(sitk.GetImageFromArray(np.stack([np.zeros((64, 64), np.uint8), np.full((64, 64), 255, np.uint8)])),
                    str(tmp_path / "blank.nrrd"))
    with pytest.raises(ReadError, match="every one of its 2 slices is blank"):
        read_radiograph(tmp_path / "blank.nrrd")
