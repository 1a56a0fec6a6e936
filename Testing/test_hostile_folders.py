"""Input folders a file system makes hostile: named pipes, sockets and devices among the images."""

import os
import signal
import socket

import pytest

from SSLAnomalyLib.core.reading.images import ReadError, list_inputs, read_radiograph


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
