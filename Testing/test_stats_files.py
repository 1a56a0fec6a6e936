"""A site's stats file (`reference-stats`) as it lies on disk: the next write of it removes what a
write killed outright left beside it, and nothing else; it gets the usual file mode, as models do."""

import os
import stat
import subprocess
import sys

from SSLAnomalyLib.core.model.reference_stats import ReferenceStats
from SSLAnomalyLib.training.federated import SiteStats


def site() -> SiteStats:
    return SiteStats(ReferenceStats.zeros(4, (2, 2, 3)), "m", "abc", "own", "lungs")


def test_the_next_write_of_a_stats_file_removes_what_a_killed_write_left(tmp_path):
    """reference-stats killed (SIGKILL) as it wrote left `.a.stats.tmp<pid>-<token>`, a few MB that no
    later run removed."""
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True).stdout.strip()
    killed = tmp_path / f".a.stats.tmp{dead}-0123abcd"
    others = [tmp_path / ".a.stats.tmp1-89abcdef",  # pid 1 is always running: a live write's
              tmp_path / f".b.png.tmp{dead}-0123abcd",  # another file's, in the user's folder
              tmp_path / f".sslanomaly-staging-{dead}-0123abcd", tmp_path / ".a.stats.tmp"]
    for p in (killed, *others[:2], others[3]):
        p.write_bytes(b"half")
    others[2].mkdir()
    site().save(tmp_path / "a.stats")
    assert not killed.exists() and all(p.exists() for p in others)
    assert (tmp_path / "a.stats").is_file()


def test_a_stats_file_gets_the_usual_mode_as_a_model_does(tmp_path):
    """Stats files were 0600 (safetensors' file writer), model files 0644: an accident, not a choice.
    A stats file holds the kind of sums a model's reference does; the site's umask decides for both."""
    before = os.umask(0o022)
    try:
        path = site().save(tmp_path / "a.stats")
    finally:
        os.umask(before)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
