"""`sslanomaly evaluate` on folders of normals and abnormals, as written: its figures on real images,
its warnings, the outputs it refuses before scoring, and Ctrl-C."""

import json
import shutil
import signal
import subprocess

from conftest import REPO, data_dir
from synthetic_inputs import SSLANOMALY, sslanomaly


def test_evaluate_beats_the_trivial_baseline_on_a_real_subset(pediatric_model, tmp_path):
    normal = tmp_path / "normal"
    abnormal = tmp_path / "abnormal"
    for src, dst in ((data_dir("kermany", "val", "normal"), normal), (data_dir("kermany", "val", "pneumonia"), abnormal)):
        dst.mkdir()
        for f in sorted(src.iterdir())[::10][:30]:
            (dst / f.name).symlink_to(f)
    r = sslanomaly("evaluate", "--model", "pediatric", "--normal", normal, "--abnormal", abnormal,
            "--json", tmp_path / "e.json", "--quiet")
    assert r.returncode == 0, r.stderr
    result = json.loads((tmp_path / "e.json").read_text())
    assert result["n_normal"] == 20 and result["n_abnormal"] == 30
    assert result["auroc"] > 0.75  # raw-pixel kNN, the trivial baseline, is about 0.64
    assert result["warnings"] == []  # 20 of each are not too few
    assert set(result) >= {"auroc", "ap", "n_normal", "n_abnormal", "seconds_per_image", "model",
                           "fpr_at_threshold", "tpr_at_threshold"}
    for part in ("pooled", "patch"):  # image-level and patch-level scoring, each alone
        assert 0.5 < result["components"][part]["auroc"] <= 1


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
    r = sslanomaly("evaluate", "--model", "pediatric", "--normal", normal, "--abnormal", abnormal,
            "--json", tmp_path / "e.json", "--quiet")
    assert r.returncode == 0, r.stderr
    warnings = [w for w in json.loads((tmp_path / "e.json").read_text())["warnings"] if "the same image" in w]
    assert len(warnings) == 2 and all(f"warning: {w}" in r.stderr for w in warnings)
    both = next(w for w in warnings if "in both the normal and the abnormal folder" in w)
    assert str(normal / pneumonias[0].name) in both and str(abnormal / pneumonias[0].name) in both
    assert any("2 times in the normal folder" in w and "copy-of-first.jpeg" in w for w in warnings)


def test_evaluate_on_a_handful_of_images_says_its_figures_are_coarse(pediatric_model, tmp_path):
    """Before: one normal and two pneumonias gave "auroc": 1.0 and "fpr_at_threshold": 0.0 with no word,
    where `--phantoms` on the same normal said its figures were coarse."""
    normal, abnormal = tmp_path / "normal", tmp_path / "abnormal"
    for src, dst, n in ((data_dir("kermany", "val", "normal"), normal, 1),
                        (data_dir("kermany", "val", "pneumonia"), abnormal, 2)):
        dst.mkdir()
        for f in sorted(src.iterdir())[:n]:
            (dst / f.name).symlink_to(f)
    r = sslanomaly("evaluate", "--model", "pediatric", "--normal", normal, "--abnormal", abnormal,
                   "--json", tmp_path / "e.json", "--quiet")
    assert r.returncode == 0, r.stderr
    warnings = json.loads((tmp_path / "e.json").read_text())["warnings"]
    assert [w.split(":")[0] for w in warnings] == ["only 1 normal image(s)", "only 2 abnormal image(s)"]
    assert "moves by 100 points per image" in warnings[0] and "give --abnormal at least 20" in warnings[1]
    assert all(f"warning: {w}" in r.stderr for w in warnings)


def test_evaluate_names_each_unreadable_image_on_stderr_and_carries_on(pediatric_model, tmp_path):
    """An image left out was named only in the JSON's "errors": on the terminal the figures came with no
    word of it. Each is now printed on stderr as detect prints its failures; the exit status stays 0."""
    normal, abnormal = tmp_path / "normal", tmp_path / "abnormal"
    for src, dst in ((data_dir("kermany", "val", "normal"), normal), (data_dir("kermany", "val", "pneumonia"), abnormal)):
        dst.mkdir()
        (dst / sorted(src.iterdir())[0].name).symlink_to(sorted(src.iterdir())[0])
        (dst / "broken.png").write_bytes(b"not an image")
    r = sslanomaly("evaluate", "--model", "pediatric", "--normal", normal, "--abnormal", abnormal,
                   "--json", tmp_path / "e.json", "--quiet")
    errors = json.loads((tmp_path / "e.json").read_text())["errors"]
    assert r.returncode == 0 and len(errors) == 2
    assert [line for line in r.stderr.splitlines() if line.startswith("error:")] == [f"error: {e}" for e in errors]
    assert all(f"{folder / 'broken.png'}: cannot decode" in r.stderr for folder in (normal, abnormal))


def test_an_output_evaluate_cannot_write_is_refused_before_any_scoring(tmp_path):
    """`--json` naming a folder failed only once every image was scored, losing the figures, and
    `--scores-csv` naming the `--json` file had the scores overwritten by the figures."""
    from synthetic_inputs import normals_folder

    normals, taken = normals_folder(tmp_path / "normal", [1]), tmp_path / "results"
    taken.mkdir()
    r = sslanomaly("evaluate", "--model", "pediatric", "--normal", normals, "--abnormal", normals, "--json", taken, "--quiet")
    assert r.returncode == 2 and r.stderr.strip() == f"error: {taken}: is a folder: name a file to write"
    r = sslanomaly("evaluate", "--model", "pediatric", "--normal", normals, "--abnormal", normals, "--quiet",
            "--json", tmp_path / "r.json", "--scores-csv", tmp_path / "." / "r.json")
    assert r.returncode == 2 and "--json and --scores-csv name the same file" in r.stderr
    assert not (tmp_path / "r.json").exists()


def test_an_output_named_like_an_image_in_a_folder_evaluate_reads_is_refused(tmp_path):
    """`--json` naming one of the --normal radiographs was written over it, once scored: the image lost."""
    from synthetic_inputs import normals_folder

    normals = normals_folder(tmp_path / "normal", [1, 2])
    image = normals / "normal_001.png"
    before = image.read_bytes()
    for option, target in (("--json", image), ("--scores-csv", normals / "sub" / "new.dcm")):
        r = sslanomaly("evaluate", "--model", "pediatric", "--normal", normals, "--abnormal", normals, "--quiet",
                       option, target)
        assert r.returncode == 2 and f"{target} is named like an image in a folder evaluate reads" in r.stderr, r.stderr
    assert image.read_bytes() == before and not (normals / "sub" / "new.dcm").exists()


def test_a_full_disk_keeps_the_earlier_scores_csv_and_names_it(tmp_path, monkeypatch):
    """--scores-csv was written in place: a full disk left it empty (an earlier run's scores lost) and the
    error, "[Errno 28] No space left on device", named no file."""
    import errno
    import os

    import pytest
    from SSLAnomalyLib.core.files.errors import PathError
    from SSLAnomalyLib.evaluation import evaluate

    class FullDisk:
        def __init__(self, f):
            pass

        def writerow(self, row):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    scores = tmp_path / "s.csv"
    scores.write_text("earlier scores\n")
    monkeypatch.setattr(evaluate.csv, "writer", FullDisk)
    with pytest.raises(PathError, match=f"^{scores}: cannot be written: No space left on device$"):
        evaluate.write_scores_csv(scores, [])
    assert scores.read_text() == "earlier scores\n" and os.listdir(tmp_path) == ["s.csv"]


def test_ctrl_c_in_evaluate_exits_130_without_advising_a_resume_it_does_not_have():
    """The interruption message of detect ("rerun with --resume") was printed by every subcommand."""
    folder = data_dir("kermany", "val", "normal")
    proc = subprocess.Popen([str(SSLANOMALY), "evaluate", "--model", "pediatric", "--normal", str(folder), "--abnormal",
                             str(data_dir("kermany", "val", "pneumonia"))], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=REPO,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    assert proc.stderr.read(1)  # the progress bar: scoring has started, past the imports
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130 and "interrupted" in err and "--resume" not in err and "Traceback" not in err, err


def test_the_scores_csv_writes_a_file_that_starts_like_a_formula_as_text(tmp_path):
    """`--normal @n --abnormal =a` wrote the file cells '@n/x.png' and '=a/y.png' as they were, which a
    spreadsheet runs as formulas, where the findings CSV and the worklist write such text with an apostrophe."""
    import csv

    from SSLAnomalyLib.evaluation.evaluate import write_scores_csv

    row = {"score": -0.5, "percentile": 12.0, "abnormal": False, "pooled": -1.25, "patch": 0.5}
    write_scores_csv(tmp_path / "s.csv", [("clean", "normal", {**row, "file": "@n/x.png"}),
                                         ("clean", "abnormal", {**row, "file": "=a/y.png"})])
    with open(tmp_path / "s.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert [r["file"] for r in rows] == ["'@n/x.png", "'=a/y.png"]
    assert [(r["score"], r["pooled"]) for r in rows] == [("-0.500000", "-1.250000")] * 2  # numbers stay numbers
