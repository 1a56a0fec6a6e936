"""The scale section of `sslanomaly-bench`: the refit (`sslanomaly train --start-from MODEL
--minutes 0`: streaming normal reference and cross-fitted thresholds) as a whole process on n, 4n
and 16n normals, for its wall time and peak resident memory, and detection with each result."""

from __future__ import annotations

import time
from pathlib import Path

from sslanomaly_bench.stages import detect_command, detect_threads, run_process


def linked_normals(src: Path, dst: Path, n: int) -> tuple[Path, int]:
    """A folder of n symbolic links to the images of `src`, cycling through them when n is larger
    (duplicates under other names: memory and time depend on the count, not on the content); and
    how many distinct images it holds."""
    available = sorted(p for p in src.iterdir() if p.is_file())
    dst.mkdir()
    for i in range(n):
        p = available[i % len(available)]
        (dst / f"{i:05d}_{p.name}").symlink_to(p.resolve())
    return dst, min(n, len(available))


def scale(model: str, normals_dir: Path, n: int, files: list[Path], work: Path, factors: tuple[int, ...]) -> dict:
    """Per factor: the refit's wall seconds and peak RSS (rusage of that child process), the model
    file, and the fastest of 4 in-process detections with the refitted model."""
    from SSLAnomalyLib.core.detection.detector import AnomalyDetector
    from SSLAnomalyLib.core.model_files import model_folder
    from SSLAnomalyLib.core.reading.images import read_radiograph

    images = [read_radiograph(p) for p in files[:4]]
    rows = []
    for factor in factors:
        folder, distinct = linked_normals(normals_dir, work / f"normals-{factor}x", factor * n)
        out = work / f"refit-{factor}x"
        run = run_process(detect_command() + ["train", "--normals", str(folder), "--out", str(out), "--minutes", "0",
                                              "--start-from", model, "--device", "cpu", "--quiet"])
        if run["returncode"] != 0:
            raise RuntimeError(f"refit ({factor}x) exited {run['returncode']}: {run['stderr_tail']}")
        detector = AnomalyDetector.load(out, device="cpu")
        times = []
        with detect_threads():
            detector.detect(images[0])
            for image in images:
                t = time.perf_counter()
                detector.detect(image)
                times.append(time.perf_counter() - t)  # the fastest is kept: the least disturbed by load
        rows.append({"factor": factor, "n_normals": factor * n, "distinct_images": distinct,
                     "refit_s": run["seconds"], "s_per_normal": round(run["seconds"] / (factor * n), 3),
                     "peak_rss_mb": run["peak_rss_mb"],
                     "model_file_mb": round((out / model_folder.WEIGHTS).stat().st_size / 2**20, 3),
                     "detect_s": round(min(times), 4),
                     "threshold_normals": detector.calibration.expected_fpr().n})
    return {"rows": rows, "command": "sslanomaly train --normals DIR --out OUT --minutes 0 --start-from MODEL "
                                     "--device cpu --quiet"}
