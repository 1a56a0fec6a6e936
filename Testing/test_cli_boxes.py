"""`sslanomaly evaluate --boxes`: localisation against a box file, and how each bad row, image or
box of that file is named rather than scored or dropped."""

import json
from types import SimpleNamespace

import numpy as np
import pytest
import SimpleITK as sitk
from PIL import Image

from conftest import data_dir
from SSLAnomalyLib.cli import main
from SSLAnomalyLib.core.reading.images import ReadError
from SSLAnomalyLib.evaluation.evaluate import evaluate_boxes, read_boxes
from synthetic_inputs import sslanomaly


def test_evaluate_boxes_reports_localisation(default_model, tmp_path):
    tb = data_dir("tbx11k_dev")
    lines = (tb / "boxes.csv").read_text().splitlines()
    (tmp_path / "boxes.csv").write_text("\n".join(lines[:16]) + "\n")
    r = sslanomaly("evaluate", "--model", "default", "--boxes", tmp_path / "boxes.csv", "--images", tb / "images"
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


def test_an_image_whose_boxes_all_lie_outside_it_is_named_not_counted_as_a_miss(default_model, tmp_path):
    """Boxes of another resolution (e.g. the full-size film's) used to count silently as misses."""
    tb = data_dir("tbx11k_dev")
    images = tb / "images" if (tb / "images").is_dir() else tb
    first, second = sorted(images.glob("*.png"))[:2]
    (tmp_path / "boxes.csv").write_text(f"image,x0,y0,x1,y1,label\n{first.name},100,100,300,300,tb\n"
                                        f"{second.name},600,600,900,900,tb\n")
    r = sslanomaly("evaluate", "--model", "default", "--boxes", tmp_path / "boxes.csv", "--images", images,
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
    r = sslanomaly("evaluate", "--model", default_model, "--boxes", tmp_path / "boxes.csv", "--images", images,
            "--json", tmp_path / "b.json", "--quiet")
    assert r.returncode == 0, r.stderr
    result = json.loads((tmp_path / "b.json").read_text())
    assert result["n_images"] == 1 and not result["errors"]
    assert result["random_pointing_baseline"] == round(1400 * 2800 / 5600 ** 2, 4)  # the box's share of the file


def test_boxes_of_an_image_stored_on_its_side_are_in_the_pixels_it_is_shown_in(tmp_path):
    """A JPEG stored turned with EXIF orientation 6 is read upright (core/reading/exif.py), its heatmap on the
    upright grid: its boxes are drawn where a viewer shows the lesion, so they are read on that grid too, as
    the upright file's are (not on the stored grid, where the same numbers lie elsewhere)."""
    images = tmp_path / "images"
    images.mkdir()
    upright = np.full((64, 96), 40, np.uint8)
    upright[8:20, 70:90] = 250  # the lesion, top right as shown
    Image.fromarray(upright).save(images / "upright.png")
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(np.rot90(upright).copy()).save(images / "turned.jpg", quality=100, exif=exif)
    (tmp_path / "boxes.csv").write_text("image,x0,y0,x1,y1\nupright.png,70,8,89,19\nturned.jpg,70,8,89,19\n")
    result = evaluate_boxes(HeatOfPixels(), tmp_path / "boxes.csv", images, progress=False)
    assert result["n_images"] == 2 and not result["errors"]
    assert result["pointing_game"] == 1.0 and result["box_auroc"] > 0.99


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
    r = sslanomaly("evaluate", "--model", "pediatric", "--boxes", tmp_path / "boxes.csv", "--images", images, "--quiet")
    assert r.returncode == 2
    assert f"{images / 'missing.png'}: file does not exist" in r.stderr and f"{images / 'empty.png'}: " in r.stderr
