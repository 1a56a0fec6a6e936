"""Input folders a file system makes hostile: named pipes, sockets and devices among the images, and\nthe results of an earlier run."""

import os
import signal
import socket
from pathlib import Path

import pytest

from SSLAnomalyLib.core.reading.images import ReadError, is_supported, list_inputs, read_radiograph
from SSLAnomalyLib.core.reading.walk import RESULT_SUFFIXES
from SSLAnomalyLib.core.results.export_owner import EXPORT_SUFFIXES
from SSLAnomalyLib.core.results.outputs import LUNGS_SUFFIX, SUFFIXES


@pytest.fixture
def deadline():
    """Fail, not hang, where a call blocks (a named pipe opened for reading waits for a writer)."""
    def expire(*_):
        raise RuntimeError("blocked for 10 s")
    old = signal.signal(signal.SIGALRM, expire)
    signal.alarm(10)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, old)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no named pipes on this OS")
def test_pipes_sockets_and_devices_are_never_opened(tmp_path, deadline):
    """A link without a suffix to a named pipe, in a folder, hung the walk (its DICOM preamble was read);
    a pipe, a socket or /dev/zero named as an input was refused as "file is empty"."""
    os.mkfifo(tmp_path / "pipe")
    (tmp_path / "link").symlink_to(tmp_path / "pipe")
    (tmp_path / "pipe.png").symlink_to(tmp_path / "pipe")
    with socket.socket(socket.AF_UNIX) as s:
        s.bind(str(tmp_path / "sock.dcm"))
        assert list_inputs([tmp_path]) == [tmp_path / "pipe.png"]
        for path, kind in ((tmp_path / "pipe.png", "a named pipe (FIFO)"), (tmp_path / "link", "a named pipe (FIFO)"),
                           (tmp_path / "sock.dcm", "a socket"), ("/dev/zero", "a character device")):
            with pytest.raises(ReadError, match=f"is {kind.replace('(', '.').replace(')', '.')}, not an image file"):
                read_radiograph(path)


def test_this_tools_results_in_an_input_folder_are_not_inputs(tmp_path):
    """`detect in/a.png --out in/out` (files named: no output inside an input folder) left overlays and
    heatmaps that the next `detect in`, or `calibrate --normals in`, scored as radiographs; so did a Slicer
    export kept beside its images. A result named on the command line is still read (and judged)."""
    (tmp_path / "out").mkdir()
    (tmp_path / "a.png").write_bytes(b"")
    results = [tmp_path / "out" / f"a{suffix}" for suffix in RESULT_SUFFIXES]
    for path in results + [tmp_path / "out" / "a.findings.json", tmp_path / "b.OVERLAY.PNG"]:
        path.write_bytes(b"")
    assert list_inputs([tmp_path]) == [tmp_path / "a.png"]
    assert list_inputs([results[0]]) == [results[0]]


def test_every_image_a_result_is_written_as_is_passed_over():
    """RESULT_SUFFIXES is kept beside the walk (reading does not import results): every suffix of an image
    file a batch or an export writes must be in it."""
    images = {s for s in (*SUFFIXES, LUNGS_SUFFIX, *EXPORT_SUFFIXES.values()) if is_supported(Path(f"x{s}"))}
    assert images == set(RESULT_SUFFIXES)


def test_hidden_folders_are_not_walked(tmp_path):
    """Hidden files were passed over but hidden folders walked: the images a user deleted on a USB stick
    (.Trash-1000/files, macOS's .Trashes) were scored and listed in the worklist, or trained on as normals."""
    for folder in (".Trash-1000/files", ".Trashes/501"):
        (tmp_path / folder).mkdir(parents=True)
        (tmp_path / folder / "deleted.png").write_bytes(b"")
    (tmp_path / "__MACOSX").mkdir()  # a macOS zip's resource forks: hidden files in a folder that is not
    (tmp_path / "__MACOSX" / "._a.png").write_bytes(b"\x00\x05\x16\x07")
    (tmp_path / "a.png").write_bytes(b"")
    assert list_inputs([tmp_path]) == [tmp_path / "a.png"]
    assert list_inputs([tmp_path / ".Trashes"]) == [tmp_path / ".Trashes" / "501" / "deleted.png"]  # named: walked


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no named pipes on this OS")
def test_a_pack_or_box_file_that_is_a_pipe_is_refused_unread(tmp_path, deadline):
    """`train --normals p.npz.xz` and `evaluate --boxes` on a named pipe waited for ever (and on /dev/zero
    read until the memory ran out: not tried here, where a regression would take the machine's memory)."""
    from SSLAnomalyLib.evaluation.evaluate import read_boxes
    from SSLAnomalyLib.training.packs import read_pack

    os.mkfifo(tmp_path / "p.npz.xz")
    with pytest.raises(ReadError, match=r"is a named pipe \(FIFO\), not a normals pack"):
        read_pack(tmp_path / "p.npz.xz", 128)
    with pytest.raises(ReadError, match=r"is a named pipe \(FIFO\), not a box file"):
        read_boxes(tmp_path / "p.npz.xz")
