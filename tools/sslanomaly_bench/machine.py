"""What a benchmark ran on and what else was running, recorded beside every figure."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from pathlib import Path


def machine() -> dict:
    """What the figures were measured on, and what else was running (load, busiest processes)."""
    import torch

    info = {"platform": platform.platform(), "python": sys.version.split()[0], "torch": torch.__version__,
            "logical_cpus": os.cpu_count(), "usable_cpus": len(os.sched_getaffinity(0)),
            "torch_threads": torch.get_num_threads(), "cuda": torch.cuda.is_available(),
            "niceness": os.nice(0)}  # above 0: the benchmark ran below other processes' priority
    cpuinfo, meminfo = Path("/proc/cpuinfo"), Path("/proc/meminfo")
    if cpuinfo.exists():
        names = [ln.split(":", 1)[1].strip() for ln in cpuinfo.read_text().splitlines() if ln.startswith("model name")]
        info["cpu"] = names[0] if names else platform.processor()
    if meminfo.exists():
        info["memory_gb"] = round(int(meminfo.read_text().split()[1]) / 2**20, 1)
    if info["cuda"]:
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def load_now() -> dict:
    """Load averages and the busiest other processes, as `uptime` and `ps` show them."""
    out = {"loadavg_1_5_15": [round(v, 2) for v in os.getloadavg()]}
    try:
        ps = subprocess.run(["ps", "-eo", "pid,ppid,pcpu,rss,args", "--sort=-pcpu"], capture_output=True,
                            text=True, timeout=10).stdout.splitlines()[1:]
        own = str(os.getpid())
        rows = [line.split(None, 2) for line in ps]
        out["busiest"] = [" ".join(rest.split())[:140] for pid, ppid, rest in rows
                          if own not in (pid, ppid) and not rest.startswith("0.0 ")][:5]
    except (OSError, subprocess.SubprocessError):
        out["busiest"] = []
    return out
