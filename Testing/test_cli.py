"""The interface contract, called exactly as written, on real full-resolution radiographs."""

import json
import shutil
import signal
import subprocess
from types import SimpleNamespace

import numpy as np
import pytest
import SimpleITK as sitk
from PIL import Image

from conftest import REPO, data_dir
from SSLAnomalyLib.cli import main
from SSLAnomalyLib.core.model.scoring import SidesRule
from SSLAnomalyLib.core.reading.images import ReadError
from SSLAnomalyLib.evaluation.evaluate import evaluate_boxes, read_boxes

SSLANOMALY = str(REPO / ".venv" / "bin" / "sslanomaly")


def run(*args):
    return subprocess.run([SSLANOMALY, *map(str, args)], capture_output=True, text=True, cwd=REPO)


def test_detect_writes_three_files_per_image_and_reports_unreadable(default_model, tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    for f in sorted(data_dir("kermany_fullres", "pneumonia").iterdir())[:2] + \
            sorted(data_dir("kermany_fullres", "normal").iterdir())[:1]:
        shutil.copy(f, src / f.name)
    (src / "corrupt.jpeg").write_bytes(b"\xff\xd8\xff not really a jpeg")
    out = tmp_path / "out"
    rule = SidesRule.from_dict(json.loads((default_model / "manifest.json").read_text())["scoring"])
    r = run("detect", "--model", "default", "--out", out, src)
    assert r.returncode != 0
    assert "corrupt.jpeg" in r.stderr
    assert "corrupt.jpeg" in (out / "failures.log").read_text()
    for f in src.glob("*.jpeg"):
        if f.name == "corrupt.jpeg":
            continue
        name = f.stem
        result = json.loads((out / f"{name}.findings.json").read_text())
        assert set(result) >= {"input", "score", "threshold", "abnormal", "percentile", "model", "findings"}
        assert 0 <= result["percentile"] <= 100
        assert result["abnormal"] == (result["score"] > result["threshold"])
        parts = result["score_components"]
        assert set(parts) == {"pooled", "patch", "sides"}
        texture = (parts["pooled"] + parts["patch"]) / 2  # the score: their mean, or sides less the offset where higher
        sides = parts["sides"] - rule.offset if rule.gate is None or parts["sides"] > rule.gate else texture
        assert abs(max(texture, sides) - result["score"]) < 1e-5
        cols, rows = Image.open(f).size
        heat = sitk.ReadImage(str(out / f"{name}.heatmap.nrrd"))
        assert heat.GetSize() == (cols, rows)
        assert np.isfinite(sitk.GetArrayFromImage(heat)).all()
        assert Image.open(out / f"{name}.overlay.png").mode == "RGB"
        for finding in result["findings"]:
            i0, j0, i1, j1 = finding["bbox_ijk"]
            assert 0 <= i0 <= i1 < cols and 0 <= j0 <= j1 < rows
            assert finding["area_mm2"] > 0 and len(finding["centroid_ras"]) == 3
        scores = [x["score"] for x in result["findings"]]
        assert scores == sorted(scores, reverse=True)


def test_evaluate_beats_the_trivial_baseline_on_a_real_subset(pediatric_model, tmp_path):
    normal = tmp_path / "normal"
    abnormal = tmp_path / "abnormal"
    for src, dst in ((data_dir("kermany", "val", "normal"), normal), (data_dir("kermany", "val", "pneumonia"), abnormal)):
        dst.mkdir()
        for f in sorted(src.iterdir())[::10][:30]:
            (dst / f.name).symlink_to(f)
    r = run("evaluate", "--model", "pediatric", "--normal", normal, "--abnormal", abnormal,
            "--json", tmp_path / "e.json", "--quiet")
    assert r.returncode == 0, r.stderr
    result = json.loads((tmp_path / "e.json").read_text())
    assert result["n_normal"] == 20 and result["n_abnormal"] == 30
    assert result["auroc"] > 0.75  # raw-pixel kNN, the trivial baseline, is about 0.64
    assert set(result) >= {"auroc", "ap", "n_normal", "n_abnormal", "seconds_per_image", "model",
                           "fpr_at_threshold", "tpr_at_threshold"}
    for part in ("pooled", "patch"):  # image-level and patch-level scoring, each alone
        assert 0.5 < result["components"][part]["auroc"] <= 1


def test_evaluate_boxes_reports_localisation(default_model, tmp_path):
    tb = data_dir("tbx11k_dev")
    lines = (tb / "boxes.csv").read_text().splitlines()
    (tmp_path / "boxes.csv").write_text("\n".join(lines[:16]) + "\n")
    r = run("evaluate", "--model", "default", "--boxes", tmp_path / "boxes.csv", "--images", tb / "images"
            if (tb / "images").is_dir() else tb, "--json", tmp_path / "b.json", "--quiet")
    assert r.returncode == 0, r.stderr
    result = json.loads((tmp_path / "b.json").read_text())
    assert 0 <= result["pointing_game"] <= 1 and 0 <= result["box_auroc"] <= 1
    assert result["n_images"] >= 5


class HeatOfPixels:
    """A stand-in detector whose heatmap is the image itself: localisation's bookkeeping, no model."""
    model_id = "stub"

    def detect(self, image):
        return SimpleNamespace(heatmap=SimpleNamespace(pixels=np.asarray(image.pixels, float)))


def test_a_box_file_naming_an_image_outside_the_images_folder_is_refused_row_by_row(tmp_path):
    """'../x.png' or an absolute path in the box file used to read an image outside --images."""
    images, outside = tmp_path / "images", tmp_path / "outside.png"
    images.mkdir()
    for f in (images / "inside.png", outside):
        Image.fromarray(np.arange(64 * 64, dtype=np.uint16).reshape(64, 64) % 251 * 200).save(f)
    (tmp_path / "boxes.csv").write_text(f"image,x0,y0,x1,y1,label\ninside.png,40,40,63,63,x\n"
                                        f"../outside.png,0,0,10,10,x\n{outside},0,0,10,10,x\n")
    result = evaluate_boxes(HeatOfPixels(), tmp_path / "boxes.csv", images, progress=False)
    assert result["n_images"] == 1
    assert len(result["errors"]) == 2
    for name in ("../outside.png", str(outside)):
        assert any(e.startswith(f"{name}: the box file names an image outside {images}") for e in result["errors"])


def test_an_image_named_without_its_extension_is_the_one_image_of_that_name(tmp_path):
    """A box file naming `a` for `a.png` (as many datasets' tables do: RSNA's patientId, VinDr's
    image_id) had every such image left out as 'file does not exist'."""
    images = tmp_path / "images"
    images.mkdir()
    pixels = np.arange(64 * 64, dtype=np.uint16).reshape(64, 64) % 251 * 200
    for name in ("a.PNG", "b.png", "b.tif", "c.d.png"):
        Image.fromarray(pixels).save(images / name)
    (tmp_path / "boxes.csv").write_text("image,x0,y0,x1,y1\na,40,40,63,63\nb,40,40,63,63\nc.d,40,40,63,63\n"
                                        "c,40,40,63,63\na.PNG,0,0,10,10\n")
    result = evaluate_boxes(HeatOfPixels(), tmp_path / "boxes.csv", images, progress=False)
    assert result["n_images"] == 2  # a.PNG (named both ways: one image with both boxes) and c.d.png
    assert result["random_pointing_baseline"] == round((24 * 24 + 11 * 11) / 64 ** 2 / 2 + 24 * 24 / 64 ** 2 / 2, 4)
    assert result["errors"] == [f"{images / 'b'}: no such file, and 2 images have this name with an extension "
                                "(b.png, b.tif): the box file must name one; left out",
                                f"{images / 'c'}: file does not exist"]


def test_a_bad_row_of_a_box_file_is_named_by_its_line_in_the_file(tmp_path):
    """Rows were numbered as the reader gave them, so after a blank line the refusal named the line
    before the bad one."""
    (tmp_path / "boxes.csv").write_text("image,x0,y0,x1,y1\na.png,1,1,9,9\n\nb.png,1,1,9,x\n")
    with pytest.raises(ReadError, match="line 4: box coordinates must be numbers"):
        read_boxes(tmp_path / "boxes.csv")


def test_a_box_file_without_the_columns_says_what_its_header_reads(tmp_path):
    """A header split by ';' (a spreadsheet's export in many locales) or an empty file was refused as
    having 'no column(s) image, x0, ...', which the user can see it has."""
    for text, read in (("image;x0;y0;x1;y1\na.png;1;1;9;9\n", "its header reads 'image;x0;y0;x1;y1'"),
                       ("", "it is empty"), ("Image,X0,Y0,X1,Y1\n", "its header reads 'Image,X0,Y0,X1,Y1'")):
        (tmp_path / "boxes.csv").write_text(text)
        with pytest.raises(ReadError) as refused:
            read_boxes(tmp_path / "boxes.csv")
        assert str(refused.value).endswith("the box file has no column(s) image, x0, y0, x1, y1 "
                                           f"(needs image,x0,y0,x1,y1[,label]; {read})")


def test_a_box_image_without_a_finite_score_is_an_error_of_its_own(tmp_path):
    """evaluate --boxes let a NaN score on one image end the whole evaluation in a traceback, where
    the folders' evaluation and the phantoms name it and go on."""
    from SSLAnomalyLib.core.detection.detector import NonFiniteScore

    class NaNOnBroken(HeatOfPixels):
        def detect(self, image):
            if image.source.endswith("broken.png"):
                raise NonFiniteScore(f"the score of {image.source} is not a finite number")
            return super().detect(image)

    images = tmp_path / "images"
    images.mkdir()
    for name in ("broken.png", "fine.png"):
        Image.fromarray(np.arange(64 * 64, dtype=np.uint16).reshape(64, 64) % 251 * 200).save(images / name)
    (tmp_path / "boxes.csv").write_text("image,x0,y0,x1,y1\nbroken.png,40,40,63,63\nfine.png,40,40,63,63\n")
    result = evaluate_boxes(NaNOnBroken(), tmp_path / "boxes.csv", images, progress=False)
    assert result["n_images"] == 1
    assert result["errors"] == [f"the score of {images / 'broken.png'} is not a finite number"]


def test_evaluate_warns_of_the_same_image_in_both_folders_or_twice_in_one(pediatric_model, tmp_path):
    normal, abnormal = tmp_path / "normal", tmp_path / "abnormal"
    normal.mkdir()
    abnormal.mkdir()
    normals = sorted(data_dir("kermany", "val", "normal").iterdir())[:2]
    pneumonias = sorted(data_dir("kermany", "val", "pneumonia").iterdir())[:2]
    for f in normals + [pneumonias[0]]:
        shutil.copy(f, normal / f.name)
    shutil.copy(normals[0], normal / "copy-of-first.jpeg")
    for f in pneumonias:
        shutil.copy(f, abnormal / f.name)
    r = run("evaluate", "--model", "pediatric", "--normal", normal, "--abnormal", abnormal,
            "--json", tmp_path / "e.json", "--quiet")
    assert r.returncode == 0, r.stderr
    warnings = json.loads((tmp_path / "e.json").read_text())["warnings"]
    assert len(warnings) == 2 and all(f"warning: {w}" in r.stderr for w in warnings)
    both = next(w for w in warnings if "in both the normal and the abnormal folder" in w)
    assert str(normal / pneumonias[0].name) in both and str(abnormal / pneumonias[0].name) in both
    assert any("2 times in the normal folder" in w and "copy-of-first.jpeg" in w for w in warnings)


@pytest.mark.parametrize("spacing", ["1e300", "1e-300"])
def test_a_spacing_no_radiograph_has_is_refused_before_any_work(tmp_path, spacing):
    """--spacing 1e300 used to fail every input with 'Out of range float values are not JSON compliant',
    and --spacing 1e-300 with 'ITK ERROR: Singular matrix. Determinant is 0.' (exit 1)."""
    r = run("detect", "--model", "default", "--out", tmp_path / "out", "--spacing", spacing, tmp_path / "absent.png")
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "--spacing: must be from 0.001 to 10" in r.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("command", ["detect --out OUT IN", "calibrate --normals IN --out OUT", "train --normals IN --out OUT"])
def test_a_false_positive_rate_no_set_of_normals_can_give_is_refused(command, capsys):
    """--fpr 1e-300 was taken: the threshold was the highest normal's, and calibrate's headline said
    '1e-298 %' and 'calibrate on at least' a 300-digit number of normals."""
    with pytest.raises(SystemExit) as refused:
        main([*command.split(), "--fpr", "1e-300"])
    assert refused.value.code == 2 and "--fpr: must be from 0.001 to below 1" in capsys.readouterr().err


def test_an_image_whose_boxes_all_lie_outside_it_is_named_not_counted_as_a_miss(default_model, tmp_path):
    """Boxes of another resolution (e.g. the full-size film's) used to count silently as misses."""
    tb = data_dir("tbx11k_dev")
    images = tb / "images" if (tb / "images").is_dir() else tb
    first, second = sorted(images.glob("*.png"))[:2]
    (tmp_path / "boxes.csv").write_text(f"image,x0,y0,x1,y1,label\n{first.name},100,100,300,300,tb\n"
                                        f"{second.name},600,600,900,900,tb\n")
    r = run("evaluate", "--model", "default", "--boxes", tmp_path / "boxes.csv", "--images", images,
            "--json", tmp_path / "b.json", "--quiet")
    assert r.returncode == 0, r.stderr
    result = json.loads((tmp_path / "b.json").read_text())
    assert result["n_images"] == 1
    assert len(result["errors"]) == 1 and second.name in result["errors"][0]
    assert "none of its 1 box(es) lies inside the image (512 x 512 pixels)" in result["errors"][0]


def test_an_image_with_one_box_wholly_outside_it_is_named_not_scored_on_the_rest(tmp_path):
    """A box lying wholly outside its image (of another resolution, or another image's) was dropped
    unsaid where the image had another box inside, and the image scored on that one."""
    images = tmp_path / "images"
    images.mkdir()
    for name in ("a.png", "b.png"):
        Image.fromarray(np.arange(64 * 64, dtype=np.uint16).reshape(64, 64) % 251 * 200).save(images / name)
    (tmp_path / "boxes.csv").write_text("image,x0,y0,x1,y1\na.png,40,40,63,63\na.png,100,10,120,30\n"
                                        "b.png,40,40,63,63\nb.png,50,-20,90,5\n")  # b's second box: partly inside
    result = evaluate_boxes(HeatOfPixels(), tmp_path / "boxes.csv", images, progress=False)
    assert result["n_images"] == 1
    assert result["errors"] == [f"{images / 'a.png'}: 1 of its 2 boxes lie wholly outside the image "
                                "(64 x 64 pixels); left out"]


def test_a_volume_named_in_a_box_file_is_named_not_scored_on_its_first_slice(tmp_path):
    """A volume (a multi-frame DICOM, a 3D NRRD) had its 2D boxes laid on its first slice, unsaid."""
    images = tmp_path / "images"
    images.mkdir()
    slice_ = np.arange(64 * 64, dtype=np.uint16).reshape(64, 64) % 251 * 200
    Image.fromarray(slice_).save(images / "flat.png")
    volume = sitk.GetImageFromArray(np.stack([slice_, slice_[::-1]]).astype(np.int16))
    sitk.WriteImage(volume, str(images / "volume.nrrd"))
    (tmp_path / "boxes.csv").write_text("image,x0,y0,x1,y1\nflat.png,40,40,63,63\nvolume.nrrd,40,40,63,63\n")
    result = evaluate_boxes(HeatOfPixels(), tmp_path / "boxes.csv", images, progress=False)
    assert result["n_images"] == 1
    assert result["errors"] == [f"{images / 'volume.nrrd'}: a volume of 2 slices: boxes are placed on 2D radiographs; "
                                "left out"]


def test_an_empty_out_is_refused_by_the_parser_not_taken_for_the_current_folder(tmp_path, capsys, monkeypatch):
    """`--out ""` (an unset variable in quotes) used to write results or a model into the current folder."""
    monkeypatch.chdir(tmp_path)
    for command in (["detect", "x.png"], ["train", "--normals", "n"], ["train-anatomy", "--images", "i", "--masks", "m"],
                    ["calibrate", "--normals", "n"], ["merge", "--stats", "s"], ["sample"]):
        with pytest.raises(SystemExit) as stopped:
            main([*command, "--out", ""])
        assert stopped.value.code == 2
        assert "argument --out: must name a folder, not an empty string" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())


def test_an_empty_phantom_list_is_named_as_empty_with_the_kinds(tmp_path, capsys):
    """`--phantoms ""` used to be taken for no --phantoms, and said evaluate needs --abnormal."""
    with pytest.raises(SystemExit):
        main(["evaluate", "--phantoms", "", "--normal", str(tmp_path), "--json", str(tmp_path / "p.json")])
    assert capsys.readouterr().err.startswith("error: --phantoms: the list of phantom kind(s) is empty; choose "
                                              "from all, whiteout, effusion")


def test_a_usage_error_found_after_parsing_exits_2_like_argparse(tmp_path):
    """Options that contradict each other used to exit 1, the status of a batch with a failed input."""
    for args in (["evaluate", "--phantoms", "all", "--normal", tmp_path, "--abnormal", tmp_path],  # before a model loads
                 ["train", "--normals", tmp_path, "--out", tmp_path / "m", "--acquisition-directions", "4"],
                 ["train", "--normals", tmp_path, "--out", tmp_path / "m", "--patch-layers", "layer9"]):
        r = run(*args)
        assert r.returncode == 2 and r.stderr.startswith("error: --") and "Traceback" not in r.stderr, r.stderr


def test_sample_from_a_folder_that_is_not_there_is_refused_not_replaced(tmp_path, capsys):
    """`sample --data MISSING` (or a folder of no images) silently gave the shared data's samples instead."""
    (tmp_path / "empty").mkdir()
    for data, reason in ((tmp_path / "missing", "no such folder"), (tmp_path / "empty", "no images found in the folder")):
        assert main(["sample", "--out", str(tmp_path / "s"), "--data", str(data)]) == 2
        assert capsys.readouterr().err.strip() == f"error: {data}: {reason}"


def test_boxes_on_an_image_read_reduced_are_placed_on_its_reduced_grid(default_model, tmp_path):
    """An image over 5000 pixels a side is read in blocks (core/reading/shrink.py), but its boxes, in
    the file's pixels, were laid on the reduced grid as they were: a box on the right half of a
    5600-pixel image lay beyond the 2800-pixel grid and the image was left out. Boxes now mark the
    blocks their pixels fall in."""
    from synthetic_inputs import radiograph, write_png

    images = tmp_path / "images"
    images.mkdir()
    write_png(images / "huge.png", radiograph(4, rows=5600, cols=5600))
    (tmp_path / "boxes.csv").write_text("image,x0,y0,x1,y1,label\nhuge.png,2800,1400,4199,4199,mass\n")
    r = run("evaluate", "--model", default_model, "--boxes", tmp_path / "boxes.csv", "--images", images,
            "--json", tmp_path / "b.json", "--quiet")
    assert r.returncode == 0, r.stderr
    result = json.loads((tmp_path / "b.json").read_text())
    assert result["n_images"] == 1 and not result["errors"]
    assert result["random_pointing_baseline"] == round(1400 * 2800 / 5600 ** 2, 4)  # the box's share of the file


def test_spacing_given_to_an_image_read_reduced_is_the_files_pixel(default_model, tmp_path):
    """--spacing 0.2 on a very wide PNG, read in 2x2 blocks, became the spacing of the blocks: the
    heatmap covered half the image in mm (0.2 per block, its origin 0.5 mm in), and every centroid and
    area was half and a quarter of the truth. A block is now 0.4 mm, its centre 0.1 mm in: positions and
    areas are the file's own at 0.2 mm, as they are at the 1.0 mm assumed without --spacing."""
    upright = Image.open(sorted(data_dir("tbx11k_dev", "images").iterdir())[0]).convert("L")
    images = tmp_path / "in"
    images.mkdir()
    upright.resize((5200, 400)).save(images / "wide.png")
    docs = {}
    for spacing in (None, 0.2):
        out = tmp_path / f"out{spacing}"
        extra = ["--spacing", str(spacing)] if spacing else []
        assert main(["detect", "--model", str(default_model), "--out", str(out), "--fpr", "0.5", "--quiet", *extra,
                     str(images / "wide.png")]) == 0
        docs[spacing] = json.loads((out / "wide.findings.json").read_text())
        heat = sitk.ReadImage(str(out / "wide.heatmap.nrrd"))
        mm = spacing or 1.0
        assert heat.GetSize() == (2600, 200)
        assert heat.GetSpacing() == pytest.approx((2 * mm, 2 * mm)) and heat.GetOrigin() == pytest.approx((mm / 2, mm / 2))
    assumed, given = docs[None]["findings"], docs[0.2]["findings"]
    assert assumed and [f["bbox_ijk"] for f in given] == [f["bbox_ijk"] for f in assumed]
    for f, f1 in zip(given, assumed):
        assert f["centroid_ras"] == pytest.approx([0.2 * v for v in f1["centroid_ras"]], abs=2e-3)
        assert f["area_mm2"] == pytest.approx(0.04 * f1["area_mm2"], abs=0.01)


def test_an_output_evaluate_cannot_write_is_refused_before_any_scoring(tmp_path):
    """`--json` naming a folder failed only once every image was scored, losing the figures, and
    `--scores-csv` naming the `--json` file had the scores overwritten by the figures."""
    from synthetic_inputs import normals_folder

    normals, taken = normals_folder(tmp_path / "normal", [1]), tmp_path / "results"
    taken.mkdir()
    r = run("evaluate", "--model", "pediatric", "--normal", normals, "--abnormal", normals, "--json", taken, "--quiet")
    assert r.returncode == 2 and r.stderr.strip() == f"error: {taken}: is a folder: name a file to write"
    r = run("evaluate", "--model", "pediatric", "--normal", normals, "--abnormal", normals, "--quiet",
            "--json", tmp_path / "r.json", "--scores-csv", tmp_path / "." / "r.json")
    assert r.returncode == 2 and "--json and --scores-csv name the same file" in r.stderr
    assert not (tmp_path / "r.json").exists()


def test_options_a_box_evaluation_does_not_read_are_refused_not_dropped(tmp_path, capsys):
    """--boxes with --scores-csv, --perturb, --normal or --phantoms measured localisation alone and
    dropped the rest unsaid (no scores CSV was written), and --images without --boxes was ignored."""
    boxes, scores = tmp_path / "boxes.csv", tmp_path / "scores.csv"  # never read: refused before
    for args, said in (
            (["--boxes", boxes, "--images", tmp_path, "--scores-csv", scores, "--perturb", "fov"],
             "error: --boxes measures localisation on --images alone and does not read --perturb, --scores-csv"),
            (["--boxes", boxes, "--images", tmp_path, "--normal", tmp_path, "--phantoms", "all"],
             "error: --boxes measures localisation on --images alone and does not read --normal, --phantoms"),
            (["--images", tmp_path, "--normal", tmp_path, "--abnormal", tmp_path],
             "error: --images names the folder of the images in --boxes CSV, and there is no --boxes")):
        with pytest.raises(SystemExit) as refused:
            main(["evaluate", "--model", "default", "--quiet", *map(str, args)])
        assert refused.value.code == 2 and capsys.readouterr().err.startswith(said)
    assert not scores.exists()


def test_a_json_naming_the_box_file_is_refused_not_written_over_it(default_model, tmp_path, capsys):
    """`--boxes b.csv --json ./b.csv` replaced the user's boxes with the figures."""
    image = sorted((data_dir("tbx11k_dev") / "images").glob("*.png"))[0]
    (tmp_path / image.name).symlink_to(image)
    boxes, rows = tmp_path / "boxes.csv", f"image,x0,y0,x1,y1\n{image.name},100,100,300,300\n"
    boxes.write_text(rows)
    with pytest.raises(SystemExit) as refused:
        main(["evaluate", "--model", "default", "--quiet", "--boxes", str(boxes), "--images", str(tmp_path),
              "--json", str(tmp_path / "." / "boxes.csv")])
    assert refused.value.code == 2
    assert capsys.readouterr().err.startswith("error: --json names the --boxes file: the figures would overwrite")
    assert boxes.read_text() == rows


def test_evaluate_names_each_files_reason_when_none_could_be_scored(tmp_path):
    """"none of the images named in the box file could be read" said neither which nor why."""
    images = tmp_path / "images"
    images.mkdir()
    (images / "empty.png").write_bytes(b"")
    (tmp_path / "boxes.csv").write_text("image,x0,y0,x1,y1\nmissing.png,1,1,9,9\nempty.png,1,1,9,9\n")
    r = run("evaluate", "--model", "pediatric", "--boxes", tmp_path / "boxes.csv", "--images", images, "--quiet")
    assert r.returncode == 2
    assert f"{images / 'missing.png'}: file does not exist" in r.stderr and f"{images / 'empty.png'}: " in r.stderr


def test_ctrl_c_in_evaluate_exits_130_without_advising_a_resume_it_does_not_have():
    """The interruption message of detect ("rerun with --resume") was printed by every subcommand."""
    folder = data_dir("kermany", "val", "normal")
    proc = subprocess.Popen([SSLANOMALY, "evaluate", "--model", "pediatric", "--normal", str(folder), "--abnormal",
                             str(data_dir("kermany", "val", "pneumonia"))], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=REPO,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    assert proc.stderr.read(1)  # the progress bar: scoring has started, past the imports
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130 and "interrupted" in err and "--resume" not in err and "Traceback" not in err, err
