"""The command line's refusals of options no run can use: exit 2 with the option named, before any work."""

import os
import subprocess

import pytest

from SSLAnomalyLib.cli import main
from synthetic_inputs import SSLANOMALY, sslanomaly


@pytest.mark.parametrize("command", ["detect --out OUT IN", "calibrate --normals IN --out OUT", "train --normals IN --out OUT"])
def test_a_false_positive_rate_no_set_of_normals_can_give_is_refused(command, capsys):
    """--fpr 1e-300 was taken: the threshold was the highest normal's, and calibrate's headline said
    '1e-298 %' and 'calibrate on at least' a 300-digit number of normals."""
    with pytest.raises(SystemExit) as refused:
        main([*command.split(), "--fpr", "1e-300"])
    assert refused.value.code == 2 and "--fpr: must be from 0.001 to below 1" in capsys.readouterr().err


@pytest.mark.parametrize("command, size, needs", [
    ("train --normals IN --out OUT", "0", "from 32 to 1024 pixels"),
    ("train --normals IN --out OUT", "20", "from 32 to 1024 pixels"),
    ("train-anatomy --images IN --masks M --out OUT", "-8", "a multiple of 16 from 32 to 1024 pixels"),
    ("train-anatomy --images IN --masks M --out OUT", "40", "a multiple of 16 from 32 to 1024 pixels")])
def test_an_input_size_no_network_or_model_folder_can_take_is_refused(command, size, needs, capsys):
    """--size 0 was a traceback once every image had been read; train --size 20 wrote a model that its
    own check refused after the whole training; train-anatomy --size 40 (not a multiple of the U-Net's
    16) a traceback at the first step."""
    with pytest.raises(SystemExit) as refused:
        main([*command.split(), f"--size={size}"])
    assert refused.value.code == 2 and f"--size: must be {needs}, not {size}" in capsys.readouterr().err


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
        r = sslanomaly(*args)
        assert r.returncode == 2 and r.stderr.startswith("error: --") and "Traceback" not in r.stderr, r.stderr


def test_sample_from_a_folder_that_is_not_there_is_refused_not_replaced(tmp_path, capsys):
    """`sample --data MISSING` (or a folder of no images) silently gave the shared data's samples instead."""
    (tmp_path / "empty").mkdir()
    for data, reason in ((tmp_path / "missing", "no such folder"), (tmp_path / "empty", "no images found in the folder")):
        assert main(["sample", "--out", str(tmp_path / "s"), "--data", str(data)]) == 2
        assert capsys.readouterr().err.strip() == f"error: {data}: {reason}"


@pytest.mark.parametrize("unbuffered", [True, False])
def test_a_reader_that_closes_the_output_early_ends_the_command_quietly(unbuffered):
    """`sslanomaly models | head` ended with "error: [Errno 32] Broken pipe" (exit 2), or, where stdout is
    buffered, with Python's "Exception ignored ... BrokenPipeError" (exit 120): the reader's doing, no
    error of the command's. It now ends as a command ended by SIGPIPE does: 141, nothing on stderr."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"} | ({"PYTHONUNBUFFERED": "1"} if unbuffered else {})
    read, write = os.pipe()
    os.close(read)  # the reader is gone before the first line
    try:
        r = subprocess.run([str(SSLANOMALY), "models"], stdout=write, stderr=subprocess.PIPE, text=True, env=env,
                           timeout=300)
    finally:
        os.close(write)
    assert (r.returncode, r.stderr) == (141, "")
