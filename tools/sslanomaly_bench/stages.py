"""The measurements of `sslanomaly-bench`: speed, memory and scale of detection and training, measured on the real
full-resolution radiographs and recorded, with the machine and the exact command, in
docs/benchmarks.md and a JSON beside it, so that every figure quoted can be regenerated.

Whole-process figures come from `sslanomaly detect` run as a subprocess (processes.py: wall time,
and the process's own peak resident memory). The split of one detection into stages comes from
cProfile around the real code path (cumulative time of the functions that do each stage), so the
benchmark never re-implements the pipeline it measures.
"""

from __future__ import annotations

import contextlib
import cProfile
import inspect
import json
import pstats
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from sslanomaly_bench.processes import detect_command, run_process

TARGETS = {"marginal_s": 0.06, "start_s": 3.0, "peak_rss_mb": 2048, "growth_mb": 64, "outputs_gb_per_1000": 1.5}
QUICK = dict(images=3, long=0, repeats=1, scale_normals=12, scale_factors=(1, 2), train_steps=1, train_batch=4,
             slicer_images=1, hostile_slices=(64, 64), unreadable=50)  # hostile: two score chunks each, not the full size
FULL = dict(train_batch=32, slicer_images=4, scale_factors=(1, 4, 16), hostile_slices=(1000, 240), unreadable=5000)


def model_load(model: str, repeats: int = 3) -> dict:
    from SSLAnomalyLib.core.detection.detector import AnomalyDetector
    from SSLAnomalyLib.core.model_files.model_folder import WEIGHTS, resolve

    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        AnomalyDetector.load(model, device="cpu")
        times.append(time.perf_counter() - t0)
    return {"seconds": round(min(times), 3), "all_seconds": [round(t, 3) for t in times],
            "weights_mb": round((resolve(model) / WEIGHTS).stat().st_size / 2**20, 2)}


def _stage_functions() -> dict:
    """Each stage of one detection, as the function that does it (cumulative time is read)."""
    from SSLAnomalyLib.core.anatomy.lung_network import LungFields, LungSegmenter
    from SSLAnomalyLib.core.batch.resume import FileIdentity
    from SSLAnomalyLib.core.detection.detector import AnomalyDetector
    from SSLAnomalyLib.core.detection.regions import find_regions
    from SSLAnomalyLib.core.files.atomic import atomic_write_text
    from SSLAnomalyLib.core.model.heatmap import to_input_grid
    from SSLAnomalyLib.core.model.scoring import Scorer
    from SSLAnomalyLib.core.reading.images import read_radiograph, write_image
    from SSLAnomalyLib.core.results.outputs import write_picture
    from SSLAnomalyLib.core.results.overlay import render_overlay

    return {"file_identity": FileIdentity.of, "read": read_radiograph, "preprocess": AnomalyDetector.prepare,
            "lung_mask": LungSegmenter.fields,
            "lungs_full_res": LungFields.on_grid,
            "encode": Scorer.features, "score": Scorer.score, "heatmap_full_res": to_input_grid,
            "findings": find_regions, "write_nrrd": write_image, "render_overlay": render_overlay,
            "write_png": write_picture, "write_json": atomic_write_text}


@contextlib.contextmanager
def detect_threads():
    """Torch threads as `sslanomaly detect` sets them, for in-process detection figures."""
    import torch

    from SSLAnomalyLib.core.detection.detector import detection_threads as threads

    before = torch.get_num_threads()
    torch.set_num_threads(threads())
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _cumulative(profile: cProfile.Profile, functions: dict) -> dict[str, float]:
    """Seconds spent inside each named function (callees included) during a profile."""
    stats = pstats.Stats(profile).stats
    code = {name: inspect.unwrap(f).__code__ for name, f in functions.items()}  # a decorator's wrapper is shared
    keys = {name: (c.co_filename, c.co_firstlineno, c.co_name) for name, c in code.items()}
    return {name: stats[key][3] if key in stats else 0.0 for name, key in keys.items()}


def stages(model: str, files: list[Path], out: Path) -> dict:
    """Per-image seconds of each stage (median over the images), after one warm-up image."""
    import torch
    from PIL import Image

    from SSLAnomalyLib.core.batch.case import process_case
    from SSLAnomalyLib.core.batch.options import BatchOptions
    from SSLAnomalyLib.core.batch.runner import file_cases
    from SSLAnomalyLib.core.detection.detector import AnomalyDetector

    detector = AnomalyDetector.load(model, device="cpu")
    functions = _stage_functions()
    cases = dict(zip(files, file_cases(files)))

    def one(path, profile=None):
        if profile:
            profile.enable()
        row = process_case(cases[path], detector, out, BatchOptions())  # the batch's own code, one stage after another
        if profile:
            profile.disable()
        if row.error:
            raise RuntimeError(f"{path}: {row.error}")

    per = {name: [] for name in functions}
    totals, sizes = [], []
    with detect_threads():
        threads_used = torch.get_num_threads()
        one(files[0])
        for path in files:
            t0 = time.perf_counter()
            one(path)
            totals.append(time.perf_counter() - t0)
            sizes.append(Image.open(path).size)
            profile = cProfile.Profile()
            one(path, profile)
            for name, seconds in _cumulative(profile, functions).items():
                per[name].append(seconds)
    per["score"] = [s - e for s, e in zip(per["score"], per["encode"])]  # score's own share
    result = {name: round(statistics.median(v), 4) for name, v in per.items()}
    result["total_unprofiled"] = round(statistics.median(totals), 4)
    result["n_images"] = len(files)
    result["torch_threads"] = threads_used
    result["pixels"] = [int(min(r * c for r, c in sizes)), int(max(r * c for r, c in sizes))]
    return result


def batch(model: str, files: list[Path], work: Path, repeats: int, device: str = "cpu") -> dict:
    """Whole `sslanomaly detect` processes: empty input (start + model load), 1 image and all."""
    cmd = detect_command()
    empty = work / "empty"
    empty.mkdir(exist_ok=True)
    runs = {"start": [], "one": [], "all": []}
    output_bytes = 0
    for r in range(repeats):
        for kind, inputs in (("start", [empty]), ("one", files[:1]), ("all", files)):
            out = work / f"out-{device}-{kind}"
            runs[kind].append(run_process(cmd + ["detect", "--model", model, "--out", str(out), "--quiet",
                                                 "--device", device] + [str(p) for p in inputs]))
            if kind == "all":
                output_bytes = sum(p.stat().st_size for p in out.iterdir())
            shutil.rmtree(out, ignore_errors=True)
    best = {k: min(v, key=lambda x: x["seconds"]) for k, v in runs.items()}
    for kind, run in best.items():
        expected = 2 if kind == "start" else 0  # an empty folder: model loaded, then "no input images"
        if run["returncode"] != expected:
            raise RuntimeError(f"detect ({kind}) exited {run['returncode']}: {run['stderr_tail']}")
    n = len(files)
    return {"n_images": n, "repeats": repeats,
            "start_and_load_s": best["start"]["seconds"], "one_image_s": best["one"]["seconds"],
            "all_images_s": best["all"]["seconds"],
            "marginal_s_per_image": round((best["all"]["seconds"] - best["one"]["seconds"]) / max(1, n - 1), 3),
            "marginal_cpu_s_per_image": round((best["all"]["cpu_seconds"] - best["one"]["cpu_seconds"]) / max(1, n - 1),
                                              3),
            "peak_rss_mb": max(r["peak_rss_mb"] for v in runs.values() for r in v),
            "output_mb_per_image": round(output_bytes / n / 2**20, 3),
            "outputs_gb_per_1000_images": round(output_bytes / n * 1000 / 2**30, 3),
            "all_seconds": {k: [r["seconds"] for r in v] for k, v in runs.items()},
            "command": f"sslanomaly detect --model MODEL --out OUT --quiet --device {device} INPUTS"}


def start_imports(model: str, work: Path, top: int = 8) -> dict:
    """Where the start-up of `sslanomaly detect` goes: `python -X importtime` of the start run
    (empty input), each module's own import time charged to the first package outside
    SSLAnomalyLib that pulled it in (so what MONAI imports of SciPy counts as MONAI's)."""
    empty = work / "empty"
    empty.mkdir(exist_ok=True)
    cmd = [sys.executable, "-X", "importtime", "-m", "SSLAnomalyLib.cli", "detect", "--model", model,
           "--out", str(work / "out-imports"), "--quiet", "--device", "cpu", str(empty)]
    err = subprocess.run(cmd, capture_output=True, text=True).stderr
    by_package: dict[str, float] = {}
    chain: list[str] = []
    for line in reversed(err.splitlines()):  # importtime prints children first: reversed, parents lead
        if not line.startswith("import time:") or line.count("|") != 2:
            continue
        own, _, field = line[len("import time:"):].split("|")
        if not own.strip().isdigit():
            continue
        depth = (len(field) - len(field.lstrip()) - 1) // 2
        chain = chain[:depth] + [field.strip().split(".")[0]]
        owner = next((root for root in chain if root != "SSLAnomalyLib"), "SSLAnomalyLib")
        by_package[owner] = by_package.get(owner, 0.0) + int(own) / 1e6
    ranked = sorted(by_package.items(), key=lambda kv: -kv[1])
    return {"total_s": round(sum(by_package.values()), 3),
            **{name: round(sec, 3) for name, sec in ranked[:top]}}


def long_batch(model: str, files: list[Path], n: int, work: Path) -> dict:
    """`sslanomaly detect` over n inputs made by cycling the radiographs (symbolic links), with
    resident memory sampled every second against the number of cases finished."""
    folder = work / "long-in"
    folder.mkdir()
    for i in range(n):
        src = files[i % len(files)]
        (folder / f"{i:05d}_{src.name}").symlink_to(src.resolve())
    out = work / "long-out"
    run = run_process(detect_command() + ["detect", "--model", model, "--out", str(out), "--quiet", "--device",
                                          "cpu", str(folder)], watch_out=out)
    if run["returncode"] != 0:
        raise RuntimeError(f"detect exited {run['returncode']}: {run['stderr_tail']}")
    samples = [s for s in run["samples"] if s[2] is not None]
    early = [s[2] for s in samples if 0.05 * n <= s[1] <= 0.2 * n]
    late = [s[2] for s in samples if s[1] >= 0.8 * n]
    growth = round(max(late) - max(early), 1) if early and late else None  # maxima: images differ in size
    return {"n_images": n, "seconds": run["seconds"], "seconds_per_image": round(run["seconds"] / n, 3),
            "peak_rss_mb": run["peak_rss_mb"], "rss_growth_mb": growth,
            "rss_samples": samples, "samples_columns": ["seconds", "cases done", "RSS MB"]}


def training(model: str, normals_dir: Path, steps: int, batch_size: int, work: Path) -> dict:
    """CPU images per second of Trainer steps (augmentation, synthetic anomalies, forward, backward
    and update), from the Trainer's own clock, which leaves out set-up and checkpoints."""
    from SSLAnomalyLib.core.detection.detector import AnomalyDetector
    from SSLAnomalyLib.training.fitting import load_normals
    from SSLAnomalyLib.training.objectives import Pretext
    from SSLAnomalyLib.training.trainer import TrainConfig, Trainer

    detector = AnomalyDetector.load(model, device="cpu")
    normals = load_normals(_linked(normals_dir, work / "train-normals", 2 * batch_size), detector.input_size,
                           progress=False)
    recorded = detector.manifest.section("pretext")
    pretext = Pretext.from_dict(recorded) if recorded else Pretext()
    cfg = TrainConfig(minutes=600, batch_size=batch_size, eval_every=10**9, max_steps=steps)
    trainer = Trainer(detector.scorer.config, pretext, cfg, work / "train", device="cpu")
    trainer.fit(normals.images01, normals.lungs, progress=False)
    step_s = trainer.state()["seconds"] / steps
    return {"steps": steps, "batch_size": batch_size, "seconds_per_step": round(step_s, 3),
            "images_per_second": round(batch_size / step_s, 2), "device": "cpu"}


def _linked(src: Path, dst: Path, n: int) -> Path:
    """A folder of symbolic links to the first n images of `src` (nothing copied)."""
    available = sorted(p for p in src.iterdir() if p.is_file())
    if len(available) < n:
        raise RuntimeError(f"{src} has {len(available)} images; {n} are needed")
    dst.mkdir()
    for p in available[:n]:
        (dst / p.name).symlink_to(p.resolve())
    return dst


def slicer_logic(model: str, files: list[Path]) -> dict:
    """The Slicer module's Logic on the headless slicer-core scene, in a child process (VTK state
    stays out of this one): load volume, detect (core share and scene display) and export."""
    harness = Path(__file__).resolve().parents[2] / "Testing" / "slicer_harness.py"
    if not harness.exists():
        return {"skipped": f"the module harness {harness} is not there (a source checkout is needed)"}
    code = ("import json, sys; sys.path.insert(0, sys.argv[1]); from sslanomaly_bench.stages import slicer_child; "
            "print(json.dumps(slicer_child(sys.argv[2], sys.argv[3:])))")
    proc = subprocess.run([sys.executable, "-c", code, str(harness.parent), model] + [str(f) for f in files],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        return {"skipped": "not usable: " + " ".join(proc.stderr.strip().splitlines()[-1:])}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def slicer_child(model: str, files: list[str]) -> dict:
    import torch
    from slicer_harness import load_module_file

    from SSLAnomalyLib.core.detection.detector import AnomalyDetector
    from SSLAnomalyLib.mrml.case import remove_case, show_detection
    from SSLAnomalyLib.mrml.volumes import volume_node_to_radiograph

    module = load_module_file()
    logic = module.SSLAnomalyLogic()
    functions = {"to_radiograph": volume_node_to_radiograph, "core_detect": AnomalyDetector.detect,
                 "show_in_scene": show_detection}
    rows = []
    with tempfile.TemporaryDirectory() as out, detect_threads():
        threads = torch.get_num_threads()
        for i, path in enumerate([files[0]] + list(files)):  # the first is a warm-up
            t0 = time.perf_counter()
            volume = logic.loadVolume(path)
            t1 = time.perf_counter()
            profile = cProfile.Profile()
            profile.enable()
            logic.detect(volume, model=model, device="cpu")
            profile.disable()
            t2 = time.perf_counter()
            logic.exportCase(volume, Path(out) / str(i))
            t3 = time.perf_counter()
            remove_case(volume)
            rows.append({"load_volume": t1 - t0, "detect_total": t2 - t1, "export_default_formats": t3 - t2,
                         **_cumulative(profile, functions)})
    rows = rows[1:]
    medians = {k: round(statistics.median(r[k] for r in rows), 4) for k in rows[0]}
    return {"n_images": len(rows), "torch_threads": threads, **medians}


def gpu(model: str, files: list[Path], work: Path) -> dict:
    """On a CUDA device: encode + score throughput in batches, and whole detect processes."""
    import torch

    if not torch.cuda.is_available():
        return {"skipped": "no CUDA device here (torch.cuda.is_available() is False)"}
    from SSLAnomalyLib.core.detection.detector import AnomalyDetector
    from SSLAnomalyLib.core.reading.images import read_radiograph

    detector = AnomalyDetector.load(model, device="cuda")
    prepared = [detector.prepare(read_radiograph(p))[0] for p in files]
    out = {"device": torch.cuda.get_device_name(0)}
    for size in (1, 64, 256):
        x = np.stack([prepared[i % len(prepared)].image01 for i in range(size)])
        lungs = np.stack([prepared[i % len(prepared)].lung for i in range(size)])
        detector.scorer.score(x, lungs)
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        for _ in range(3):
            detector.scorer.score(x, lungs)
        torch.cuda.synchronize()
        out[f"encode_score_per_s_batch{size}"] = round(3 * size / (time.perf_counter() - t0), 1)
    out["detect_processes"] = batch(model, files, work, repeats=1, device="cuda")
    return out


def dask_section(model: str, files: list[Path], work: Path) -> dict:
    """The batch on a Dask LocalCluster of two worker processes (scale-out on one machine)."""
    try:
        from distributed import Client, LocalCluster
    except ImportError:
        return {"skipped": "dask.distributed is not installed (pip install -e '.[distributed]')"}
    from SSLAnomalyLib.core.batch.dask_driver import detect_on_dask

    t0 = time.perf_counter()
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster, \
            Client(cluster) as client:
        t1 = time.perf_counter()
        report = detect_on_dask(client, files, work / "dask-out", model=model, device="cpu")
    t2 = time.perf_counter()
    return {"workers": 2, "n_images": len(files), "cluster_start_s": round(t1 - t0, 2),
            "seconds": round(t2 - t1, 2), "seconds_per_image": round((t2 - t1) / len(files), 3),
            "failed": len(report.failures)}


def unreadable(model: str, work: Path, n: int) -> dict:
    """One `sslanomaly detect` process over `n` unreadable files (empty PNGs): every one a failure,
    reported and logged as it happens, at a cost per failure that must not grow with the batch."""
    folder = work / "unreadable"
    folder.mkdir()
    for i in range(n):
        (folder / f"{i:05d}.png").write_bytes(b"")
    out = work / "unreadable-out"
    r = run_process(detect_command() + ["detect", "--model", model, "--out", str(out), "--quiet", str(folder)])
    logged = len((out / "failures.log").read_text().splitlines()) if (out / "failures.log").exists() else 0
    return {"n_files": n, "seconds": r["seconds"], "returncode": r["returncode"], "failures_logged": logged,
            "peak_rss_mb": r["peak_rss_mb"]}
