"""Acquisition perturbations are seeded and change a real radiograph as their names say, on its own
grid; `evaluate --perturb` reports each family's figures at the model's threshold and a scores CSV."""

import csv
import json
import subprocess

import numpy as np
import pytest

from conftest import REPO, data_dir

SSLANOMALY = str(REPO / ".venv" / "bin" / "sslanomaly")


@pytest.fixture(scope="module")
def radiograph():
    from SSLAnomalyLib.core.reading.images import read_radiograph

    return read_radiograph(sorted(data_dir("kermany_fullres", "normal").iterdir())[0])


def high_frequency(x):
    return float(np.abs(np.diff(np.asarray(x, np.float64), axis=1)).mean())


def test_every_family_is_seeded_and_keeps_the_grid(radiograph):
    from SSLAnomalyLib.evaluation.perturbations import NAMES, perturb

    for family in NAMES:
        a, b, c = perturb(radiograph, family, 1), perturb(radiograph, family, 1), perturb(radiograph, family, 2)
        assert a.shape == radiograph.shape and a.spacing == radiograph.spacing
        assert np.array_equal(a.pixels, b.pixels), family
        assert not np.array_equal(a.pixels, c.pixels), family
        assert not np.array_equal(a.pixels, radiograph.pixels), family


def test_families_change_what_they_name(radiograph):
    from SSLAnomalyLib.evaluation.perturbations import perturb

    x = radiograph.pixels[0].astype(np.float32)
    lowres, blur, noise = (perturb(radiograph, f, 0).pixels[0] for f in ("lowres", "blur", "noise"))
    assert high_frequency(lowres) < high_frequency(x) and high_frequency(blur) < high_frequency(x)
    assert high_frequency(noise) > high_frequency(x)
    gamma = perturb(radiograph, "gamma", 0).pixels[0]
    order = np.argsort(x.ravel()[::997])
    assert np.all(np.diff(gamma.ravel()[::997][order]) >= -1e-3)  # a monotonic intensity mapping
    markers = perturb(radiograph, "markers", 0).pixels[0]
    bright = x.max() - 1
    assert (markers >= bright).sum() > (x >= bright).sum()  # burned-in white
    moved = [np.corrcoef(perturb(radiograph, "fov", s).pixels[0].ravel(), x.ravel())[0, 1] for s in range(4)]
    assert min(moved) < 0.97  # the anatomy moved: a zoom of up to 25 % in or 20 % out
    jpeg = perturb(radiograph, "jpeg", 0).pixels[0]
    assert 0.98 < np.corrcoef(jpeg.ravel(), x.ravel())[0, 1] < 1


def test_evaluate_perturb_reports_each_family_at_the_models_threshold(pediatric_model, tmp_path):
    normal, abnormal = tmp_path / "normal", tmp_path / "abnormal"
    for src, dst in ((data_dir("kermany", "val", "normal"), normal), (data_dir("kermany", "val", "pneumonia"), abnormal)):
        dst.mkdir()
        for f in sorted(src.iterdir())[::20][:10]:
            (dst / f.name).symlink_to(f)
    r = subprocess.run([SSLANOMALY, "evaluate", "--model", "pediatric", "--normal", normal, "--abnormal", abnormal,
                        "--perturb", "gamma,markers", "--scores-csv", tmp_path / "s.csv", "--json", tmp_path / "e.json",
                        "--quiet"], capture_output=True, text=True, cwd=REPO)
    assert r.returncode == 0, r.stderr
    result = json.loads((tmp_path / "e.json").read_text())
    assert set(result["perturbations"]) == {"gamma", "markers"}
    assert all((f["n_normal"], f["n_abnormal"]) == (10, 10) for f in result["perturbations"].values())
    for figures in [result, *result["perturbations"].values()]:
        assert 0 <= figures["fpr_at_threshold"] <= 1 and 0 <= figures["tpr_at_threshold"] <= 1
        assert 0 <= figures["auroc"] <= 1
    rows = list(csv.DictReader(open(tmp_path / "s.csv")))
    assert len(rows) == 3 * 20 and {r["condition"] for r in rows} == {"clean", "gamma", "markers"}
    clean = [r for r in rows if r["condition"] == "clean" and r["label"] == "normal"]
    assert np.isclose(np.mean([int(r["abnormal"]) for r in clean]), result["fpr_at_threshold"])
    for r in rows:  # every component the score is made of is in the CSV (the pediatric model: offset 2)
        texture = (float(r["pooled"]) + float(r["patch"])) / 2
        assert abs(max(texture, float(r["sides"]) - 2) - float(r["score"])) < 1e-5
    bad = subprocess.run([SSLANOMALY, "evaluate", "--model", "pediatric", "--normal", normal, "--abnormal", abnormal,
                          "--perturb", "sepia"], capture_output=True, text=True, cwd=REPO)
    assert bad.returncode != 0 and "sepia" in bad.stderr


def test_box_files_are_validated_and_boxes_clipped_to_the_image(tmp_path):
    import pytest

    from SSLAnomalyLib.core.reading.images import ReadError
    from SSLAnomalyLib.evaluation.evaluate import box_mask, read_boxes

    mask = box_mask((10, 20), [(-5, -5, 3, 2)])  # partly outside: the inside part only
    assert mask[:3, :4].all() and mask.sum() == 12
    assert not box_mask((10, 20), [(30, 30, 40, 40)]).any()  # wholly outside: nothing
    for text, reason in [("image,x0,y0\na.png,1,2\n", "no column"), ("image,x0,y0,x1,y1\na.png,1,2,x,4\n", "line 2"),
                         ("image,x0,y0,x1,y1\na.png,5,2,1,4\n", "x0 <= x1"), ("image,x0,y0,x1,y1\n", "no boxes"),
                         ("image,x0,y0,x1,y1\na.png,nan,2,3,4\n", "finite")]:
        (tmp_path / "boxes.csv").write_text(text)
        with pytest.raises(ReadError, match=reason):
            read_boxes(tmp_path / "boxes.csv")


def test_a_box_file_as_a_spreadsheet_writes_it_is_read_and_one_image_named_two_ways_is_one(tmp_path):
    """A byte-order mark (Excel's "CSV UTF-8") was refused as 'no column image' under a header that
    has it, ', ' between fields as 'no column x0', and `./a.png` beside `a.png` made two images with
    some of the boxes each (each scored, pointed and counted on its own)."""
    from SSLAnomalyLib.evaluation.evaluate import read_boxes

    path = tmp_path / "boxes.csv"
    path.write_text("image, x0, y0, x1, y1, label\na.png, 1, 2, 3, 4, tb\n./a.png, 5, 6, 7, 8, tb\n b.png ,1,1,2,2,tb\n",
                    encoding="utf-8-sig")
    assert read_boxes(path) == {"a.png": [(1, 2, 3, 4), (5, 6, 7, 8)], "b.png": [(1, 1, 2, 2)]}
