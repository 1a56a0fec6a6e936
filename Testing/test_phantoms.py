"""Phantoms are seeded, land inside the lung field they name and change nothing outside their region;
`evaluate --phantoms` reports every kind and size in strict JSON, and on real normals a large mass is
both flagged more than the unaltered normals and pointed at."""

import json
import subprocess

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from conftest import REPO, data_dir, link_subset

SSLANOMALY = str(REPO / ".venv" / "bin" / "sslanomaly")


def strict_json(text: str) -> dict:
    def refuse(name):
        raise ValueError(f"not strict JSON: {name}")
    return json.loads(text, parse_constant=refuse)


@pytest.fixture(scope="module")
def chest():
    """A generated radiograph in [0, 1] and its two lung ellipses (core/reading/sample.py draws them there)."""
    from SSLAnomalyLib.core.reading.sample import synthetic_radiograph

    rows, cols = 512, 448
    image = synthetic_radiograph(rows, cols, seed=3).astype(np.float32) / 255
    yy, xx = np.mgrid[0:rows, 0:cols] / np.array([rows, cols])[:, None, None]
    right = ((xx - 0.32) / 0.15) ** 2 + ((yy - 0.48) / 0.3) ** 2 < 1   # the patient's right: image left
    left = ((xx - 0.68) / 0.15) ** 2 + ((yy - 0.48) / 0.3) ** 2 < 1
    return image, {"right": right, "left": left}


def every_phantom():
    from SSLAnomalyLib.evaluation.phantoms import SIZES

    return [(k, s) for k, sizes in SIZES.items() for s in sizes]


@pytest.mark.parametrize("kind,size", every_phantom())
def test_phantom_is_seeded_placed_as_named_and_changes_only_its_region(chest, kind, size):
    from SSLAnomalyLib.evaluation.phantoms import GROW, draw_phantom

    image, fields = chest
    lungs = fields["right"] | fields["left"]
    a, b, c = (draw_phantom(kind, size, image, lungs, np.random.default_rng(s)) for s in (7, 7, 8))
    assert np.array_equal(a.image, b.image) and np.array_equal(a.region_mask, b.region_mask) and a.side == b.side
    assert not np.array_equal(a.image, c.image)
    region = a.region_mask
    assert np.array_equal(a.image[~region], image[~region])
    change = a.image[region] - image[region]
    if kind == "pneumothorax":
        assert change.min() < -0.02 and change.max() > 0.03  # a lucent rim and a bright pleural line
    else:
        assert change.min() >= 0 and change.max() > 0.03    # an opacity only brightens
    if kind == "cardiomegaly":
        assert a.side == "centre"
        centre = np.nonzero(region)[1].mean()
        assert np.nonzero(fields["right"])[1].mean() < centre < np.nonzero(fields["left"])[1].mean()
        heart_rows = [r for r in range(image.shape[0]) if region[r].any() and lungs[r].any()]
        thorax = max(np.flatnonzero(lungs[r])[-1] - np.flatnonzero(lungs[r])[0] for r in heart_rows)
        heart = max(np.flatnonzero(region[r])[-1] - np.flatnonzero(region[r])[0] for r in heart_rows)
        assert heart / thorax > 0.58
    else:
        assert a.side in ("right", "left")
        grown = ndimage.binary_dilation(fields[a.side], iterations=GROW + 1)
        assert not (region & ~grown).any(), f"{kind} {size} drawn outside the {a.side} lung field"


def test_sizes_grow_as_named(chest):
    from SSLAnomalyLib.evaluation.phantoms import draw_phantom

    image, fields = chest
    lungs = fields["right"] | fields["left"]

    def area(kind, size):
        return draw_phantom(kind, size, image, lungs, np.random.default_rng(0)).region_mask.sum()

    round_areas = [area("nodule", s) for s in ("8mm", "15mm", "25mm")] + [area("mass", s) for s in ("30mm", "60mm")]
    assert all(np.diff(round_areas) > 0), round_areas
    assert area("effusion", "small") < area("effusion", "large")
    assert area("pneumothorax", "small") < area("pneumothorax", "large")
    assert area("whiteout", "hemithorax") > 0.8 * min(fields["right"].sum(), fields["left"].sum())


@pytest.fixture(scope="module")
def generated_normals(tmp_path_factory):
    from SSLAnomalyLib.core.reading.sample import synthetic_radiograph

    folder = tmp_path_factory.mktemp("generated")
    for seed in range(3):
        Image.fromarray(synthetic_radiograph(384, 336, seed=seed)).save(folder / f"SYNTHETIC_{seed}.png")
    return folder


def test_evaluate_phantoms_reports_every_kind_and_size(small_model, generated_normals, tmp_path):
    from SSLAnomalyLib.evaluation.phantoms import HELD_OUT_KINDS, SIZES

    out = tmp_path / "phantoms.json"
    r = subprocess.run([SSLANOMALY, "evaluate", "--model", small_model, "--phantoms", "all", "--normal",
                        generated_normals, "--json", out, "--seed", "1", "--quiet"], capture_output=True, text=True, cwd=REPO)
    assert r.returncode == 0, r.stderr
    result = strict_json(out.read_text())
    assert result["n_normal"] == 3 and result["seed"] == 1 and result["held_out_kinds"] == list(HELD_OUT_KINDS)
    assert {k: set(v) for k, v in result["kinds"].items()} == {k: set(v) for k, v in SIZES.items()}
    for kind, sizes in result["kinds"].items():
        for size, f in sizes.items():
            assert f["n"] == 3, (kind, size, result["errors"])
            assert 0 <= f["auroc"] <= 1 and 0 <= f["tpr_at_threshold"] <= 1 and 0 <= f["pointing_game"] <= 1
            assert f["fpr_at_threshold"] == result["fpr_at_threshold"]
            assert 0 < f["random_pointing_baseline"] < 0.5 and 0 <= f["abnormal_without_finding"] <= 3
    assert result["seconds_per_image"] > 0 and "--phantoms" in result["command"]
    assert "only 3 normal image(s)" in result["warnings"][0] and "warning: only 3 normal" in r.stderr  # not precise


def test_a_kind_or_family_named_twice_is_scored_once(pediatric_model, generated_normals, tmp_path):
    """`--phantoms nodule,nodule` drew and counted every nodule twice (n 6 on 3 normals), and
    `--perturb noise,noise` wrote each perturbed score twice: a name given twice now counts once."""
    import csv

    out = tmp_path / "phantoms.json"
    r = subprocess.run([SSLANOMALY, "evaluate", "--model", pediatric_model, "--phantoms", "nodule, nodule",
                        "--normal", generated_normals, "--json", out, "--quiet"], capture_output=True, text=True, cwd=REPO)
    assert r.returncode == 0, r.stderr
    assert {s: f["n"] for s, f in strict_json(out.read_text())["kinds"]["nodule"].items()} == \
        {"8mm": 3, "15mm": 3, "25mm": 3}
    scores = tmp_path / "scores.csv"
    r = subprocess.run([SSLANOMALY, "evaluate", "--model", pediatric_model, "--perturb", "noise,noise", "--normal",
                        generated_normals, "--abnormal", generated_normals, "--scores-csv", scores, "--quiet"],
                       capture_output=True, text=True, cwd=REPO)
    assert r.returncode == 0, r.stderr
    assert sum(row["condition"] == "noise" for row in csv.DictReader(scores.open())) == 6  # 3 normal + 3 abnormal


def test_the_same_normal_twice_is_warned_of(pediatric_model, generated_normals, tmp_path):
    """A copy of a normal was counted as another normal (two negatives, two phantoms) unsaid, where
    evaluate on two folders warns of it."""
    import shutil

    normals = tmp_path / "normal"
    shutil.copytree(generated_normals, normals)
    first = sorted(normals.iterdir())[0]
    shutil.copy(first, normals / "copy.png")
    out = tmp_path / "phantoms.json"
    r = subprocess.run([SSLANOMALY, "evaluate", "--model", pediatric_model, "--phantoms", "whiteout", "--normal",
                        normals, "--json", out, "--quiet"], capture_output=True, text=True, cwd=REPO)
    assert r.returncode == 0, r.stderr
    warning = strict_json(out.read_text())["warnings"][0]
    assert warning.startswith("the same image is 2 times in the normal folder (")
    assert str(normals / "copy.png") in warning and str(first) in warning and f"warning: {warning}" in r.stderr


def test_evaluate_phantoms_refuses_what_it_cannot_do(generated_normals):
    def run(*options):
        return subprocess.run([SSLANOMALY, "evaluate", "--model", "pediatric", *options],
                              capture_output=True, text=True, cwd=REPO)

    unknown = run("--phantoms", "nodule,tumour", "--normal", generated_normals)
    assert unknown.returncode != 0 and "tumour" in unknown.stderr
    assert run("--phantoms", "all").returncode != 0  # no --normal
    both = run("--phantoms", "all", "--normal", generated_normals, "--abnormal", generated_normals)
    assert both.returncode != 0 and "--abnormal" in both.stderr


def test_a_large_mass_on_real_normals_is_flagged_and_pointed_at(default_model, tmp_path):
    from SSLAnomalyLib.core.detection.detector import AnomalyDetector
    from SSLAnomalyLib.core.reading.images import list_inputs, read_radiograph
    from SSLAnomalyLib.evaluation.phantom_evaluation import evaluate_phantoms, phantom_seed
    from SSLAnomalyLib.evaluation.phantoms import GROW, draw_phantom

    normals = link_subset(data_dir("rsna", "val", "normal"), tmp_path / "normal", 10)
    detector = AnomalyDetector.load(default_model, device="cpu")
    result = evaluate_phantoms(detector, normals, ["mass"], seed=0, progress=False)
    assert result["n_normal"] == 10 and not result["errors"]
    large = result["kinds"]["mass"]["60mm"]
    assert large["auroc"] > 0.75 and large["tpr_at_threshold"] > result["fpr_at_threshold"]
    assert large["pointing_game"] >= 0.5 > 5 * large["random_pointing_baseline"]
    for i, f in enumerate(list_inputs([normals])[:3]):  # placed inside the product's own lung fields
        image = read_radiograph(f)
        lungs = detector.prepare(image)[0].fields.on_grid(*image.shape[1:]).astype(bool)
        x = image.pixels[0] - image.pixels[0].min()
        phantom = draw_phantom("mass", "60mm", x / x.max(), lungs, phantom_seed(0, "mass", "60mm", i))
        assert not (phantom.region_mask & ~ndimage.binary_dilation(lungs, iterations=GROW + 1)).any()
