"""docs/benchmarks.md from the results of `sslanomaly-bench` (and the same results as JSON beside
it): every figure in the file comes from the run whose command and machine it names."""

from __future__ import annotations

import json
from pathlib import Path

from SSLAnomalyLib.core.files.atomic import atomic_write_text

SECTIONS = {
    "model_load": "Model load (in process: verify hashes, read safetensors, build the encoder)",
    "stages": "One detection, by stage (in process, seconds per image, median)",
    "batch": "Batch: whole `sslanomaly detect` processes",
    "start_imports": "Start-up: import time of `sslanomaly detect` by package (seconds)",
    "long_batch": "Long batch: resident memory over many images",
    "training": "Training throughput (CPU)",
    "slicer_logic": "The same detection through the Slicer module's Logic (headless slicer-core)",
    "gpu": "GPU",
    "scale": "Scale: the refit (`train --minutes 0`) on 1x, 4x and 16x the normals",
    "dask": "Scale-out: the batch on Dask (two local worker processes)",
    "hostile_inputs": "Hostile inputs: peak memory of `sslanomaly detect` on small files that promise many pixels",
    "unreadable": "Unreadable inputs: one batch of thousands of files that all fail",
}

NOTES = {
    "stages": (
        "Stage times are the cumulative time of the function doing each stage, read with cProfile around the "
        "real code path (`core/batch/case.process_case`, what a batch runs per case, its steps one after another: "
        "the input file's identity for --resume, read, prepare, detect, write); "
        "`total_unprofiled` is the same path timed without the profiler. `preprocess` includes `lung_mask` (the lung U-Net and its post-processing); `lungs_full_res` is the lung fields on the input's grid (only with `--lungs`). "
        "`score` is the scorer's own share after `encode`: patch distances to the normal reference, the "
        "model-grid heatmap and the image score. `heatmap_full_res` stretches the map onto the input's full "
        "pixel grid; `render_overlay` and `write_png` make the overlay picture; `write_json` includes fsync."),
    "batch": (
        "`start_and_load_s`: `sslanomaly detect` on an empty folder (the process starts, loads and verifies "
        "the model, then finds no input). Marginal seconds per radiograph = (time on all images - time on 1) / "
        "(images - 1): reading and preparing the next input on one thread, scoring on the main thread and "
        "writing the results (heatmap, overlay, findings JSON) on two more overlap. "
        "`marginal_cpu_s_per_image` is the same difference in CPU seconds (all threads, the process's rusage): "
        "it is inflated far less than wall time by other jobs, and on two idle cores the marginal wall time is "
        "at least half of it. Peak RSS is the kernel's "
        "high-water mark of each detect process's own memory (VmHWM), the largest over all runs. "
        "`output_mb_per_image` is the size of everything the batch wrote (heatmaps as gzip uint8 NRRD, "
        "overlays, findings JSONs, index, worklist) per image. The best of the repeats is kept; every run is "
        "in the JSON."),
    "long_batch": (
        "Inputs are symbolic links cycling through the radiographs; finished cases' heatmaps and overlays are "
        "deleted as the batch goes so the disk does not fill. RSS is sampled every second; RSS growth = the "
        "largest sample over the last fifth of the cases minus the largest between 5 % and 20 % of them "
        "(maxima, since the radiographs differ in size and each window spans several cycles of them)."),
    "start_imports": (
        "From `python -X importtime -m SSLAnomalyLib.cli detect ...` on an empty folder: every module's own "
        "import time, charged to the first package outside SSLAnomalyLib on its import chain (what MONAI "
        "imports of SciPy is MONAI's), largest first; `total_s` is all imports."),
    "training": (
        "Trainer steps (augmentation, synthetic anomalies, forward and backward, SGD) at the model's input "
        "size and torch's default threads, timed by the Trainer's own clock (set-up and checkpoints left out)."),
    "dask": (
        "`detect_on_dask` on a LocalCluster of two worker processes with one thread each, started by the "
        "benchmark; `seconds` counts from the cluster being up to the last result, so it includes each "
        "worker loading the model on its first task."),
    "scale": (
        "Each row is one whole `sslanomaly train --start-from MODEL --minutes 0` process (the refit: the "
        "streaming normal reference on every normal and 5-fold cross-fitted thresholds) on a folder of n "
        "symbolic links to kermany/train/normal, cycling through its images when n is larger "
        "(`distinct_images`: duplicates change neither memory nor time); `peak_rss_mb` is that process's "
        "own rusage maximum. `detect_s` is the fastest of 4 in-process detections with the refitted model."),
    "hostile_inputs": (
        "Written by `tools/sslanomaly_bench/hostile.py` into a temporary folder (never committed), each scored "
        "by its own `sslanomaly detect` process; peak RSS is that process's own high-water mark (VmHWM; the "
        "rusage maximum also counted the benchmark's own memory at the start of the command). Volumes are scored "
        "32 slices at a time; the input and its heatmap are held whole, hence the volume pixel limit "
        "(`core/reading/read_limits.py`)."),
    "unreadable": (
        "Empty `.png` files, each refused with its reason; the whole process, start and model load included. "
        "Each failure is appended to failures.log as it happens (it was rewritten and synced whole after each "
        "failure: 74 s for 5,000 files)."),
    "slicer_logic": (
        "`SSLAnomalyLogic` from SSLAnomaly.py under the headless harness (real MRML scene, volume and storage "
        "nodes): `loadVolume`, `detect` (which converts the volume node, runs the core detector and shows "
        "heatmap, findings and table in the scene; its parts by cProfile) and `exportCase` in its default "
        "formats. Median over the images after one warm-up. Torch threads are those `sslanomaly detect` uses, "
        "which the Logic sets too when it loads a detector (`limit_cpu_threads`: every core but one)."),
}

COMPLEXITY = """\
**Complexity.** The normal reference is fixed-size whatever the number of normals n: one mean per
feature-map position (c x h x w), one shared patch precision matrix (c x c), and one pooled Gaussian
(d, d x d), plus the lung prior (s x s). Scoring an image costs O(c^2 h w + d^2) after encoding and
never looks at the training images, so detection time and model size are O(1) in n. The refit is
O(n) in time, and what it keeps in memory is O(1) in n (`core/model/reference_stats.py`,
`training/crossfit.py`): each normal is read and encoded once, in batches of 32, its features written
to a temporary file (c h w floats, about 0.8 MB each at the default size: disk, not memory) and read
back batch by batch for the residual pass and the out-of-fold scoring; what is kept in memory is
float64 sums (d x d, c x c and c x h x w per fold) and a few numbers per normal for the thresholds.

**The process's peak still rises with n**, by some 0.1 to 0.5 MB per normal
(2026-12-08, `OMP_NUM_THREADS=1 sslanomaly-bench --sections scale --scale-normals 50`: 1081 MB on 50
normals, 1244 MB on 200, 1337 MB on 800; the same refit on rsna/train/normal with `--start-from
adult`: 1118 MB on 100, 1260 MB on 400, and 1.45 GB on 800 in an earlier audit): glibc's malloc, not kept state. Each
batch allocates and frees arrays of 26 MB and more (32 normals' patch features, their residuals and
float64 copies); once such a block, freed, has raised glibc's dynamic mmap threshold, the next ones
come from the heap, whose freed holes are reused only in part, so the heap's free space grows with
the number of batches. Measured with `mallinfo2` at each phase of the refit (100 and 400 rsna
normals): the heap in use is the same for both (187 MB after encoding, 225 MB after the residual
pass, 503 MB after the out-of-fold components), its free space is not (248 MB against 382 MB after
the residual pass). With the threshold fixed, which turns the dynamic one off
(`MALLOC_MMAP_THRESHOLD_=131072 sslanomaly train ...`), the peak is flat: 990 MB on 50 of these
normals and 994 MB on 800 (100 and 400 rsna normals: 989 and 991 MB); set it where a refit on many
normals must fit a memory limit (its time under this machine's load: 181 s against 138 s for 800
normals, 82 s against 99 s for 400 rsna normals).
"""

SCALE_OUT = """\
## Scale-out beyond one machine

**Batch scoring on Dask.** `SSLAnomalyLib.core.batch.dask_driver.detect_on_dask(client, inputs, out_dir,
model=...)` runs the batch on any Dask cluster (`pip install -e '.[distributed]'`): a
`LocalCluster` on one machine, or `dask-scheduler` plus `dask-worker` processes on many (or
dask-jobqueue on a Slurm/PBS cluster, dask-kubernetes on Kubernetes). Only the cases (file
paths and names) go to the workers and only a row per case comes back; each worker process loads
the detector once and writes the same files as `sslanomaly detect` (the same per-case code), so
inputs and the output folder must be on storage every worker sees (NFS, a shared volume, or an
object-store mount), under the same path. A worker that does not see the output folder (the one
holding the driver's lock) or the model folder stops the batch before its first case, and one that
does not see an input fails that case: the error (`NotShared`) names the path and the worker's host,
after the worker has listed the folder and looked again three times over 2.5 s (an NFS client may take
a file it looked up while absent as absent for up to a minute; listing its folder revalidates it),
and no results are written to a disk of the worker's own. The driver keeps the batch's books with the command line's runner
(`core/batch/runner.py`): the folder's lock, `--resume`, failures.log, batch_index.json, the drift check
and worklist.csv. At most four tasks per worker thread are queued at a
time, so the scheduler's memory stays flat over a batch of any length; a worker that dies has its
tasks rescheduled by Dask. Give each worker process `threads_per_worker=1` and as many torch
threads as its cores (one worker per GPU on GPU nodes). `Testing/test_dask_batch.py` runs it on a
`LocalCluster` with two worker processes and `Testing/test_batch_runners.py` checks that its files,
log, index and worklist match `sslanomaly detect` and the Slicer Logic's, and that it resumes alike.

**Training on several GPUs (`torchrun`).** `torchrun --standalone --nproc_per_node=G -m
SSLAnomalyLib.cli train ...` trains one recipe in G processes (`training/distributed.py`: nccl on GPUs,
each process on its own, gloo on CPUs): every step's batch of 32 normals is drawn alike on every
process and shared between them, and DistributedDataParallel averages their gradients, so the
learning rate and model are those of one process. The first process alone writes the checkpoints,
judges them, fits the reference and writes the model folder; the others wait and leave. The same
command resumes it, with any number of processes (README, "Train on several GPUs").
`Testing/test_distributed.py` runs it with two CPU processes; the nccl path has not run on GPUs yet.
"""


def _value(v) -> str:
    if isinstance(v, float):
        return f"{v:g}"
    if isinstance(v, (list, dict)):
        return "`" + json.dumps(v) + "`"
    return str(v)


def _table(d: dict, skip=("rss_samples", "samples_columns", "rows", "all_seconds", "all_seconds")) -> list[str]:
    lines = ["| measure | value |", "| --- | --- |"]
    lines += [f"| {k} | {_value(v)} |" for k, v in d.items() if k not in skip and not isinstance(v, dict)]
    return lines


def _section(name: str, d, carried: dict | None = None) -> list[str]:
    out = [f"## {SECTIONS[name]}", ""]
    if carried:
        out += [f"*Not measured by this run: carried over from `{carried['command']}`, started {carried['started']}.*",
                ""]
    if not isinstance(d, dict):
        return out + ["not measured", ""]
    if "skipped" in d or "error" in d:
        return out + [f"**{'Skipped' if 'skipped' in d else 'Failed'}:** {d.get('skipped') or d.get('error')}", ""]
    if name == "hostile_inputs":
        out += ["| input | what it is | exit | seconds | peak RSS MB | what the command said |", "|" + " --- |" * 6]
        out += [f"| `{r['input']}` | {r['what']} | {r['returncode']} | {r['seconds']} | {r['peak_rss_mb']} | "
                f"{r['said']} |" for r in d["rows"]]
        return out + ["", NOTES[name], ""]
    if name == "scale":
        keys = list(d["rows"][0])
        out += ["| " + " | ".join(keys) + " |", "|" + " --- |" * len(keys)]
        out += ["| " + " | ".join(_value(row[k]) for k in keys) + " |" for row in d["rows"]]
        out += ["", NOTES[name], "", COMPLEXITY]
        return out
    out += _table(d)
    if name == "gpu" and "detect_processes" in d:
        out += ["", "Whole detect processes on the GPU:", ""] + _table(d["detect_processes"])
    if name == "long_batch":
        samples = d["rss_samples"]
        shown = samples[::max(1, len(samples) // 20)]
        shown += samples[-1:] if samples and shown[-1] is not samples[-1] else []
        out += ["", "| seconds | cases done | RSS MB |", "| --- | --- | --- |"]
        out += [f"| {s[0]} | {s[1]} | {s[2]} |" for s in shown]
    if name in NOTES:
        out += ["", NOTES[name]]
    return out + [""]


def render(results: dict) -> str:
    m = results["machine"]
    carried = results.get("carried_over")  # sections kept from the report this run replaced (--sections)
    lines = [
        "# Benchmarks", "",
        "Generated by `sslanomaly-bench`; do not edit by hand. Every figure below was measured by this command,",
        "run from the repository root" + (", except those of the sections marked as carried over from an earlier run"
                                          if carried else "") + ":", "", f"    {results['command']}", "",
        f"Started {results['started']}, took {results['bench_seconds']} s. Model: `{results['model']}`. "
        f"Parameters: {_value(results['parameters'])}.", "",
        "## Machine", ""] + _table(m) + [
        "",
        f"Load while measuring (1/5/15-minute load averages, as `uptime` shows): before "
        f"{results['load_before']['loadavg_1_5_15']}, after {results['load_after']['loadavg_1_5_15']}. "
        "The machine may be shared: a load above its usable CPUs means other jobs ran alongside, and every "
        "time below is then an upper bound of what the machine gives alone (CPU-bound work slows in proportion)."]
    for when in ("before", "after"):
        lines += ["", f"Busiest other processes {'at the start' if when == 'before' else 'at the end'} "
                      "(ps: % CPU over the process's life, resident KB, command):", ""]
        lines += [f"- `{p}`" for p in results[f"load_{when}"]["busiest"]] or ["- none"]
    lines += ["", "## Targets (CPU, whole `sslanomaly detect` processes on 1000-2900 px radiographs)", "",
              "| target | measured | limit | met |", "| --- | --- | --- | --- |"]
    lines += [f"| {t['target']} | {_value(t['measured'])} | {t['limit']} | "
              f"{'n/a' if t['met'] is None else 'yes' if t['met'] else 'NO'} |" for t in results["targets"]]
    lines.append("")
    for name in SECTIONS:
        if name in results:  # all of them, unless --sections chose some
            lines += _section(name, results[name], results.get("carried_over", {}).get(name))
    lines.append(SCALE_OUT)
    return "\n".join(lines)


def write_report(results: dict, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path.with_suffix(".json"), json.dumps(results, indent=1))
    atomic_write_text(path, render(results))
