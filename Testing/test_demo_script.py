"""scripts/demo.sh, a new user's first command: what it is given wrong is refused with the path and
the reason, and nothing else is said or written. (The .venv it sets up exists when tests run.)"""

import os
import subprocess

from conftest import REPO, data_dir


def demo(**env):
    return subprocess.run([str(REPO / "scripts" / "demo.sh")], env={**os.environ, **env}, capture_output=True,
                          text=True, timeout=600)


def test_a_sample_folder_refused_ends_the_demo_with_its_reason(tmp_path):
    """SAMPLE_DIR missing or without images: sample's refusal was followed by detect's usage message
    ('the following arguments are required: inputs'), the demo ran on with no input, and OUT was made."""
    (tmp_path / "empty").mkdir()
    for folder, reason in ((tmp_path / "missing", "no such folder"), (tmp_path / "empty", "no images found in the folder")):
        r = demo(SAMPLE_DIR=str(folder), OUT=str(tmp_path / "out"))
        assert (r.returncode, r.stderr) == (2, f"error: {folder}: {reason}\n")
        assert not (tmp_path / "out").exists()


def test_a_sample_folder_holding_the_demos_results_is_refused(tmp_path, capsys):
    """OUT inside SAMPLE_DIR: the second demo took the first one's IM.heatmap.nrrd for a sample and
    scored it as a radiograph (IM.heatmap.findings.json in the worklist). And a SAMPLE_DIR naming a
    file was said to be 'no such folder'."""
    from SSLAnomalyLib.cli import main

    samples = tmp_path / "samples"
    (samples / "out").mkdir(parents=True)
    (samples / "IM.jpeg").symlink_to(sorted(data_dir("kermany", "val", "normal").iterdir())[0])
    (samples / "out" / "IM.heatmap.nrrd").write_bytes(b"NRRD0004\n")
    assert main(["sample", "--out", str(samples / "out" / "sample"), "--data", str(samples)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {samples / 'out' / 'sample'}: the output folder is inside the input folder {samples}")
    assert main(["sample", "--out", str(tmp_path / "out"), "--data", str(samples / "IM.jpeg")]) == 2
    assert capsys.readouterr().err == f"error: {samples / 'IM.jpeg'}: is a file, not a folder\n"
