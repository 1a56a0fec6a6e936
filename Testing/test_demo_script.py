"""scripts/demo.sh, a new user's first command: what it is given wrong is refused with the path and
the reason, and nothing else is said or written. (The .venv it sets up exists when tests run.)"""

import os
import subprocess

from conftest import REPO


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
