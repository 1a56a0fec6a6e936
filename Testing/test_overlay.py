"""The overlay reads at a glance: nothing is coloured below the pixel threshold (a normal stays grey),
heat brightens with the score in hot colours, a colour bar marks the threshold, labels stay outside
their boxes and inside the picture, and the percentile is never "100.0th"."""

from types import SimpleNamespace

import numpy as np

from SSLAnomalyLib.core.detection.regions import DEFAULT_LABEL, DIFFUSE_LABEL, Finding
from SSLAnomalyLib.core.results.overlay import (HOT_TOP, MAX_SIDE, MIN_SIDE, label_position, percentile_text,
                                                ramp_colours, render_overlay)

THRESHOLD = 10.0


def result(findings=(), abnormal=False, percentile=50.0):
    return SimpleNamespace(pixel_threshold=THRESHOLD, findings=list(findings), abnormal=abnormal, score=1.0,
                           threshold=2.0, percentile=percentile)


def chest(rows=600, cols=500):
    yy, xx = np.mgrid[0:rows, 0:cols]
    return (0.2 + 0.5 * xx / cols + 0.4 * (np.abs(xx - cols / 2) < cols / 10) + 0.001 * (yy % 7)).astype(np.float32)


def luminance(rgb):
    return rgb @ np.array([0.299, 0.587, 0.114])


def colour_spread(picture):
    a = np.asarray(picture, np.int16)
    return a.max(axis=2) - a.min(axis=2)


def test_heat_below_the_threshold_draws_nothing():
    image = chest()
    heat = np.full(image.shape, 0.99 * THRESHOLD, np.float32)
    spread = colour_spread(render_overlay(image, heat, result()))
    rows, cols = spread.shape
    assert spread[rows // 6:-rows // 4, :].max() == 0  # grey everywhere but the banner and the colour bar


def test_heat_above_the_threshold_is_hot_and_brightens_with_the_score():
    image = chest()
    heat = np.zeros(image.shape, np.float32)
    heat[200:300, 60:160] = 1.1 * THRESHOLD
    heat[350:450, 60:160] = HOT_TOP * THRESHOLD
    a = np.asarray(render_overlay(image, heat, result()), np.float32)
    grey = np.asarray(render_overlay(image, np.zeros_like(heat), result()), np.float32)
    warm, hot = a[250, 110], a[400, 110]
    assert warm[0] > warm[1] > warm[2] and warm[0] > grey[250, 110, 0] + 40  # red-orange, not purple
    assert luminance(hot) > luminance(warm) >= 0.95 * luminance(grey[250, 110])  # never darker than lung
    assert luminance(hot) > luminance(grey[400, 110]) + 60
    assert np.all(np.diff(luminance(ramp_colours(64))) > 0)  # the ramp only ever brightens


def test_colour_bar_marks_the_threshold_in_the_lower_right():
    picture = render_overlay(chest(), np.zeros((600, 500), np.float32), result())
    corner = np.asarray(picture)[-picture.height // 3:, -picture.width // 4:].reshape(-1, 3).astype(int)
    reddish = (corner[:, 0] > 150) & (corner[:, 2] < 60)
    whitish = corner.min(axis=1) > 230
    assert reddish.sum() > 20 and whitish.sum() > 20


def test_labels_stay_outside_their_box_and_inside_the_picture():
    size = (600, 500)  # rows, cols
    for box in [(10, 200, 60, 260), (440, 300, 499, 360), (200, 0, 300, 40), (0, 540, 499, 599)]:
        x, y = label_position(box, (90, 20), size, top=30)
        assert 0 <= x and x + 90 <= size[1] and 30 <= y and y + 20 <= size[0]
        inside = box[0] <= x <= box[2] and box[1] < y < box[3] - 20
        assert not inside or box[3] - box[1] > 0.9 * size[0]  # only a box filling the height holds its label


def test_percentile_is_capped_and_the_picture_bounded():
    assert percentile_text(100.0) == ">99.9th" and percentile_text(0.0) == "<0.1th"
    assert percentile_text(97.54) == "97.5th"
    big = np.zeros((3000, 2400), np.float32)
    finding = Finding(1, "anomaly", 12.0, [2300, 100, 2399, 300], [0, 0, 0], 10.0)
    picture = render_overlay(big + 0.5, big, result([finding], abnormal=True, percentile=100.0))
    assert max(picture.size) == MAX_SIDE


def test_lung_outline_only_when_asked():
    image = chest()
    lungs = np.zeros(image.shape, bool)
    lungs[100:500, 80:220] = True
    heat = np.zeros(image.shape, np.float32)
    plain = colour_spread(render_overlay(image, heat, result()))
    outlined = colour_spread(render_overlay(image, heat, result(), lungs=lungs))
    assert plain[100:500, 60:240].max() == 0 and outlined[100:500, 60:240].max() > 50


def test_a_tiny_or_strip_shaped_image_still_shows_itself_its_score_and_its_bar():
    """A 16 x 16 image was drawn 16 x 16 and a 5000 x 75 strip 15 pixels wide: the banner and colour
    bar covered the whole picture. Small images are enlarged, and the picture is never narrower than
    MIN_SIDE, so that the score and colour bar fit beside the image."""
    tiny = render_overlay(chest(16, 16), np.zeros((16, 16), np.float32), result())
    assert tiny.size == (MIN_SIDE, MIN_SIDE)
    a = np.asarray(tiny, np.int16)
    grey = (colour_spread(tiny) < 3) & (a.max(axis=2) > 40)  # the radiograph, not the dark panels
    assert grey.mean() > 0.5
    strip = render_overlay(chest(5000, 75), np.zeros((5000, 75), np.float32), result())
    assert max(strip.size) == MAX_SIDE and min(strip.size) >= MIN_SIDE


def test_a_box_names_its_finding_label():
    """A box was labelled "#1 24.65" whatever its finding: a 'diffuse anomaly' (the lung fields) or an
    'anomaly (image within normal range)' read in the picture as a plain focal finding, though the JSON,
    worklist and Slicer named it. The label is now drawn beside the id and score."""
    image, heat = chest(), np.zeros((600, 500), np.float32)

    def drawn(label):
        finding = Finding(1, label, 12.0, [100, 200, 300, 400], [0, 0, 0], 10.0)
        return np.asarray(render_overlay(image, heat, result([finding], abnormal=True)), np.int16)

    def backing(picture):  # columns of the label's dark band above the box
        return (picture[150:200].max(axis=2) == 0).any(axis=0).sum()

    plain, diffuse = drawn(DEFAULT_LABEL), drawn(DIFFUSE_LABEL)
    assert np.abs(plain - diffuse).max() > 100
    assert backing(diffuse) > backing(plain) > 0
