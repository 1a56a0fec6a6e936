"""A run refused for too few readable normals names each normal it could not read, with the reason:
`calibrate` on 19 readable normals and 2 broken files said only "19 distinct readable normal
radiograph(s); calibration needs at least 20", and train and reference-stats likewise, so the site
could not tell which of its files to fix."""

import shutil

from SSLAnomalyLib.cli import main
from synthetic_inputs import normals_folder


def with_broken(folder, n_good):
    normals_folder(folder, range(n_good))
    (folder / "truncated.png").write_bytes((folder / "normal_000.png").read_bytes()[:300])
    (folder / "text.png").write_text("not an image")
    shutil.copy(folder / "normal_001.png", folder / "z_copy.png")
    return folder


def refusal(capsys, argv):
    assert main(argv) == 2
    return capsys.readouterr().err


def names_each_left_out(err, folder):
    assert f"left out: {folder / 'truncated.png'}: cannot decode" in err
    assert f"left out: {folder / 'text.png'}: cannot decode" in err
    assert f"left out: {folder / 'z_copy.png'}: the same image as {folder / 'normal_001.png'}" in err


def test_calibrate_refused_names_the_normals_it_could_not_read(tmp_path, capsys):
    folder = with_broken(tmp_path / "normals", 19)
    err = refusal(capsys, ["calibrate", "--model", "default", "--normals", str(folder), "--out", str(tmp_path / "m"),
                           "--quiet"])
    assert "19 distinct readable normal radiograph(s)" in err
    names_each_left_out(err, folder)


def test_train_refused_names_the_normals_it_could_not_read(tmp_path, capsys):
    folder = with_broken(tmp_path / "normals", 9)  # 12 files: enough by count; 9 readable leave 7 to train on
    err = refusal(capsys, ["train", "--normals", str(folder), "--out", str(tmp_path / "m"), "--minutes", "1",
                           "--max-steps", "1", "--size", "64", "--device", "cpu", "--quiet"])
    assert f"error: {folder}: only 7 usable training images" in err  # the folder, not a list's repr
    names_each_left_out(err, folder)


def test_reference_stats_refused_names_the_normals_it_could_not_read(tmp_path, capsys):
    folder = with_broken(tmp_path / "normals", 19)
    err = refusal(capsys, ["reference-stats", "--model", "default", "--normals", str(folder),
                           "--out", str(tmp_path / "site.stats"), "--quiet"])
    assert "19 readable normals" in err
    names_each_left_out(err, folder)


def test_calibrate_refuses_when_the_normals_set_aside_leave_too_few(tmp_path, capsys):
    """The 20 first nih/train normals hold one far out of the others (00001470_003.png, set aside by
    Tukey's fence): the thresholds were set on 19, below the minimum calibrate states."""
    from conftest import data_dir, link_subset

    folder = link_subset(data_dir("nih", "train", "normal"), tmp_path / "normals", 20)
    err = refusal(capsys, ["calibrate", "--model", "default", "--normals", str(folder), "--out", str(tmp_path / "m"),
                           "--quiet"])
    assert f"{folder}: 20 distinct readable normal radiograph(s), 1 set aside as scoring far beyond the others " \
           "(00001470_003.png: likely abnormal, review them), leave 19; calibration needs at least 20" in err
    assert not (tmp_path / "m").exists()
