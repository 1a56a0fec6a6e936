"""What a batch hands a reader: `OUT/worklist.csv`, highest score first and complete (cases an
earlier run finished included), a verdict line per image; `--spacing` for inputs without a pixel
spacing, said once per batch; heatmaps as compressed uint8 codes that keep what a reader sees."""

import csv
import json
import subprocess

import numpy as np
import SimpleITK as sitk
from PIL import Image

from conftest import REPO, data_dir
from messy_corpus import write_dicom
from SSLAnomalyLib.core.results.worklist import write_worklist

SSLANOMALY = str(REPO / ".venv" / "bin" / "sslanomaly")
FPR = "0.9"  # low thresholds: each real radiograph surely has findings whose areas can be compared


def detect(model, out, *inputs, extra=()):
    return subprocess.run([SSLANOMALY, "detect", "--model", str(model), "--out", str(out), "--fpr", FPR, *extra,
                           *map(str, inputs)], capture_output=True, text=True, cwd=REPO, timeout=600)


def worklist(out) -> list[dict]:
    with open(out / "worklist.csv", newline="") as f:
        return list(csv.DictReader(f))


def test_worklist_is_sorted_and_complete_and_each_image_has_a_verdict_line(small_model, tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    files = sorted(data_dir("kermany_fullres", "pneumonia").iterdir())[:2] + \
        sorted(data_dir("kermany_fullres", "normal").iterdir())[:2]
    for f in files:
        (src / f.name).symlink_to(f)
    (src / "broken.png").write_bytes(b"not a png")
    out = tmp_path / "out"
    r = detect(small_model, out, src)
    assert r.returncode == 1
    lines = [line for line in r.stdout.splitlines() if "th pct" in line]
    assert sorted(line.split()[-1] for line in lines) == sorted(str(src / f.name) for f in files)
    assert all(line.split()[0] in ("ABNORMAL", "normal") for line in lines)
    rows = worklist(out)
    assert [row["input"] for row in rows if row["input"].endswith("broken.png")] == []  # failures: failures.log
    assert sorted(row["input"] for row in rows) == sorted(str(src / f.name) for f in files)
    scores = [float(row["score"]) for row in rows]
    assert scores == sorted(scores, reverse=True)
    for row in rows:
        doc = json.loads((out / f"{row['name']}.findings.json").read_text())
        assert float(row["percentile"]) == doc["percentile"] and int(row["n_findings"]) == len(doc["findings"])
        assert row["abnormal"] == str(doc["abnormal"]).lower() and row["verdict"] in ("ABNORMAL", "normal")
        if doc["findings"]:
            top = max(doc["findings"], key=lambda f: f["score"])
            assert float(row["top_finding_score"]) == top["score"] and row["top_finding_label"] == top["label"]
            assert [int(v) for v in row["top_finding_bbox_ijk"].split()] == top["bbox_ijk"]

    for suffix in (".findings.json", ".heatmap.nrrd", ".overlay.png"):  # one case lost: redone, the rest kept
        (out / f"{files[0].stem}{suffix}").unlink()
    r = detect(small_model, out, src, extra=("--resume", "--quiet"))
    assert "(3 already done)" in r.stdout and "th pct" not in r.stdout
    assert [row["input"] for row in worklist(out)] == [row["input"] for row in rows]


def test_worklist_writes_a_name_that_starts_like_a_formula_as_text(tmp_path):
    """A site's file name (or a label) that a spreadsheet would run when the reader opens the worklist (CSV
    injection, OWASP) is prefixed with an apostrophe; a negative score stays a number."""
    document = {"input": "=HYPERLINK(1).png", "score": -0.5, "percentile": 20.0, "abnormal": False, "threshold": 1.0,
                "model": "m", "findings": [{"label": "@SUM(1)", "score": 6.0, "bbox_ijk": [1, 2, 3, 4]}]}
    write_worklist(tmp_path, {"=HYPERLINK(1)": document, "-dash": dict(document, input="-dash.png", score=-1.0)})
    rows = worklist(tmp_path)
    assert [(row["input"], row["name"], row["top_finding_label"]) for row in rows] == [
        ("'=HYPERLINK(1).png", "'=HYPERLINK(1)", "'@SUM(1)"), ("'-dash.png", "'-dash", "'@SUM(1)")]
    assert [float(row["score"]) for row in rows] == [-0.5, -1.0]


def test_spacing_reaches_area_and_geometry_and_is_said_once_per_batch(small_model, tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    jpeg = sorted(data_dir("kermany_fullres", "pneumonia").iterdir())[0]
    for name in ("a.png", "b.png"):
        Image.open(jpeg).convert("L").save(src / name)
    write_dicom(src / "c.dcm", np.asarray(Image.open(jpeg).convert("L"), dtype=np.uint16) * 16,
                        spacing=(0.143, 0.139))
    plain, given = tmp_path / "plain", tmp_path / "given"
    r = detect(small_model, plain, src, extra=("--lungs",))
    assert r.returncode == 0 and r.stderr.count("no pixel spacing") == 1 and "2 input(s)" in r.stderr
    r = detect(small_model, given, src, extra=("--lungs", "--spacing", "0.5"))
    assert r.returncode == 0 and "no pixel spacing" not in r.stderr
    for name in ("a", "b"):
        before, after = (json.loads((d / f"{name}.findings.json").read_text()) for d in (plain, given))
        assert before["findings"] and len(before["findings"]) == len(after["findings"])
        for f0, f1 in zip(before["findings"], after["findings"]):
            assert abs(f1["area_mm2"] - 0.25 * f0["area_mm2"]) <= 0.01 * f0["area_mm2"] + 0.01
        for suffix in (".heatmap.nrrd", ".lungs.nrrd"):
            assert sitk.ReadImage(str(given / f"{name}{suffix}")).GetSpacing() == (0.5, 0.5)
    for d in (plain, given):  # DICOM keeps its own (columns 0.139 mm apart, rows 0.143)
        assert np.allclose(sitk.ReadImage(str(d / "c.heatmap.nrrd")).GetSpacing(), (0.139, 0.143))


def test_heatmap_is_compressed_uint8_with_its_scale_and_keeps_what_a_reader_sees(small_model, tmp_path):
    from SSLAnomalyLib.core.detection.detector import AnomalyDetector
    from SSLAnomalyLib.core.reading.images import read_radiograph
    from SSLAnomalyLib.core.results.outputs import write_case_outputs

    image = read_radiograph(sorted(data_dir("kermany_fullres", "pneumonia").iterdir())[0])
    result = AnomalyDetector.load(small_model, device="cpu").detect(image)
    paths = write_case_outputs(result, image, tmp_path, "case")
    assert b"encoding: gzip" in paths["heatmap"].read_bytes()[:1000]
    written = sitk.ReadImage(str(paths["heatmap"]))
    codes = sitk.GetArrayFromImage(written)
    scale = float(written.GetMetaData("heatmap_scale"))
    heat = result.heatmap.pixels[0]
    assert codes.dtype == np.uint8 and codes.shape == heat.shape
    assert np.abs(codes * scale - heat).max() <= scale / 2 * (1 + 1e-4)  # float32 rounding of the map
    assert heat[np.unravel_index(np.argmax(codes), codes.shape)] >= heat.max() - scale
    assert float(written.GetMetaData("pixel_threshold")) == result.pixel_threshold
    assert paths["heatmap"].stat().st_size < heat.nbytes / 10
