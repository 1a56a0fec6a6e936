"""Whole `sslanomaly detect` processes as the benchmark runs them: wall time, exit status, what
they said, and their peak resident memory.

The peak is the kernel's high-water mark of the command's own memory (`VmHWM` of /proc/<pid>/status,
read every 20 ms while it runs; the rusage maximum only where there is no /proc). Its rusage maximum
is not used: on Linux it also counts the memory the benchmark itself held when it started the
command, so that every command run after a large section reported the benchmark's size instead of
its own (the hostile inputs' table once showed 500 MB for a file refused before decoding).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def detect_command() -> list[str]:
    """The installed `sslanomaly` next to this Python, else the same entry point through -m."""
    script = Path(sys.executable).with_name("sslanomaly")
    return [str(script)] if script.exists() else [sys.executable, "-m", "SSLAnomalyLib.cli"]


def run_process(cmd: list[str], watch_out: Path | None = None, sample_s: float = 1.0) -> dict:
    """Wall time, CPU time (all its threads), exit status and peak RSS (the process's own high-water
    mark, module docstring) of a command; with `watch_out`, RSS sampled along the way against the
    number of finished cases, whose bulky files are deleted as they complete so that a long batch
    does not fill the disk."""
    with tempfile.TemporaryFile() as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err)
        samples, next_sample, peak_mb = [], t0, None
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            now = time.perf_counter()
            if pid:
                break
            peak_mb = max(filter(None, (peak_mb, _status_mb(proc.pid, "VmHWM:"))), default=None)
            if watch_out is not None and now >= next_sample:
                samples.append([round(now - t0, 1), _finished(watch_out), _status_mb(proc.pid, "VmRSS:")])
                next_sample = now + sample_s
            time.sleep(0.02)
        proc.returncode = os.waitstatus_to_exitcode(status)
        err.seek(0)
        tail = err.read().decode(errors="replace").strip().splitlines()[-3:]
    peak_mb = peak_mb if peak_mb is not None else round(usage.ru_maxrss / 1024, 1)  # no /proc: rusage
    return {"seconds": round(now - t0, 3), "cpu_seconds": round(usage.ru_utime + usage.ru_stime, 3),
            "returncode": proc.returncode, "peak_rss_mb": peak_mb, "samples": samples, "stderr_tail": tail}


def _finished(out: Path) -> int:
    done = list(out.glob("*.findings.json"))
    for f in done:
        name = f.name[: -len(".findings.json")]
        for suffix in (".heatmap.nrrd", ".overlay.png"):
            (out / f"{name}{suffix}").unlink(missing_ok=True)
    return len(done)


def _status_mb(pid: int, field: str) -> float | None:
    """A memory figure of /proc/<pid>/status (VmRSS: now, VmHWM: the peak so far), in MB."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return None
