"""A GPU round in one device call: several recipes trained for both populations, each model folder
fitted and brought back, with training and detection speeds (scripts/device_round.sh).

A lent GPU machine holds no data, no MONAI and no network, is lent for about 15 minutes in all
(start-up included), and at most 8 files of 16 MiB come back from it. So, here:
`pack` writes the training and calibration normals as packs (training/packs.py) small enough to
travel with the working tree; there: `run` trains every recipe as its own `sslanomaly train`
process on the packs, several at a time (one GPU easily serves them; the CPU augmentation is what
limits a run), stops whatever is still running at the deadline, and packs the model folders
(encoders in float16, `--half-weights`, so that eight fit) into tars beside results.json.
`--dry-run` does all of it on a CPU with a few steps, which is how it is tested.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shutil
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import numpy as np

from SSLAnomalyLib.core.files.json_text import dumps

POPULATIONS = {  # name: (training normals, calibration normals, at most this many calibration normals)
    "pediatric": ("kermany/train/normal", "kermany/val/normal", None),
    "adult": ("rsna/train/normal", "rsna/val/normal", 250),  # 250 of 486: the packs must fit in 64 MiB
}
RECIPES = ("anatpaste", "contrastive", "contrastive,anatpaste", "mae")
PLAN = "round.json"
MiB = 1 << 20
MAX_FILES, MAX_FILE, MAX_TOTAL = 8, 16 * MiB, 64 * MiB  # what comes back from $OUT
TAR_LIMIT = 15 * MiB
LOG_LIMIT = 2 * MiB
OTHER_FILES = ("results.json", "round.log", "console.log")  # console.log: scripts/device_round.sh's copy of stderr


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def pack(data: Path, out: Path, size: int, limit: int | None, populations=None, seed: int = 0) -> dict:
    """Write `<population>-train.npz.xz` and `-val.npz.xz` for every population (or those named),
    and round.json."""
    from SSLAnomalyLib.core.reading.images import list_inputs
    from SSLAnomalyLib.training.fitting import load_normals
    from SSLAnomalyLib.training.packs import write_pack

    rng = np.random.default_rng(seed)
    plan = {"size": size, "populations": {}}
    for name in populations or POPULATIONS:
        train_dir, val_dir, val_limit = POPULATIONS[name]
        entry = {}
        for split, folder, most in (("train", train_dir, limit), ("val", val_dir, min(filter(None, (limit, val_limit)), default=None))):
            files = list_inputs([data / folder])
            if most:  # a seeded share, read alone
                files = [files[i] for i in np.sort(rng.permutation(len(files))[:most])]
            normals = load_normals([str(f) for f in files], size, progress=False)
            path = write_pack(out / f"{name}-{split}.npz.xz", normals.images01, normals.lungs, normals.files)
            entry[split] = {"pack": path.name, "n": len(normals.files), "source": folder, "bytes": path.stat().st_size}
            say(f"{path}: {len(normals.files)} normals of {folder}, {path.stat().st_size / MiB:.2f} MiB")
        plan["populations"][name] = entry
    (out / PLAN).write_text(dumps(plan, indent=1))
    return plan


def run_name(population: str, recipe: str) -> str:
    return f"{population}-{recipe.replace(',', '-').replace(':', '_')}"


def train_command(packs: Path, plan: dict, population: str, recipe: str, out: Path, args) -> list[str]:
    entry = plan["populations"][population]
    command = [sys.executable, "-m", "SSLAnomalyLib.cli", "train", "--quiet", "--half-weights",
               "--normals", str(packs / entry["train"]["pack"]), "--val-normals", str(packs / entry["val"]["pack"]),
               "--out", str(out), "--pretext", recipe, "--size", str(plan["size"]), "--seed", str(args.seed),
               "--device", args.device, "--minutes", str(args.minutes)]
    return command + (["--max-steps", str(args.max_steps)] if args.max_steps else [])


def print_plan(runs: list[tuple[str, str]], args, deadline_s: float) -> None:
    waves = math.ceil(len(runs) / args.parallel)
    say(f"plan: {len(runs)} runs ({', '.join(run_name(*r) for r in runs)}), {args.parallel} at a time, each "
        f"{args.minutes:g} min of training steps" + (f" or {args.max_steps} steps" if args.max_steps else "")
        + f" plus its checkpoint checks, reference and calibration: about {waves * args.minutes * 1.3 + 1:.1f} min; "
        f"training speed first ({args.speed_steps} steps of each recipe alone), detection speed and packing last; "
        f"anything still running at {deadline_s / 60:.1f} min is stopped")


def launch(runs, packs: Path, plan: dict, work: Path, args, deadline: float) -> dict:
    """Run every training as its own process, `args.parallel` at a time; stop those still running
    at the deadline. Returns {name: {"status", "wall_s", "log"}}."""
    threads = max(1, (os.cpu_count() or 2) // args.parallel)
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads), PYTHONUNBUFFERED="1")
    pending, running, done = list(runs), {}, {}
    (work / "logs").mkdir(parents=True, exist_ok=True)
    while pending or running:
        while pending and len(running) < args.parallel:
            population, recipe = pending.pop(0)
            name = run_name(population, recipe)
            log = work / "logs" / f"{name}.log"
            command = train_command(packs, plan, population, recipe, work / "models" / name, args)
            running[name] = (subprocess.Popen(command, stdout=log.open("w"), stderr=subprocess.STDOUT, env=env),
                             time.time(), log)
            say(f"started {name}")
        time.sleep(0.5)
        for name, (proc, t0, log) in list(running.items()):
            late = time.time() > deadline
            if late and proc.poll() is None:
                proc.kill()
            if proc.poll() is not None:
                status = "stopped at the deadline" if late and proc.returncode != 0 else (
                    "ok" if proc.returncode == 0 else f"failed (exit {proc.returncode})")
                done[name] = {"status": status, "wall_s": round(time.time() - t0, 1), "log": str(log)}
                del running[name]
                say(f"{name}: {status} after {done[name]['wall_s']} s")
    return done


def run_figures(folder: Path) -> dict:
    """What a finished run's manifest says about its training."""
    from SSLAnomalyLib.core.model_files import model_folder

    manifest = model_folder.load(folder).manifest
    t = manifest.section("training")
    return {"model_id": manifest.model_id, "steps": t["steps"], "step_seconds": t["step_seconds"],
            "steps_per_s": round(t["steps"] / t["step_seconds"], 2) if t["step_seconds"] else None,
            "chosen_step": t["chosen_step"], "selection_signals": t["selection_signals"],
            "threshold": manifest.calibration.threshold, "device": t["device"]}


def training_speed(packs: Path, plan: dict, recipes, args, work: Path) -> dict:
    """Steps per second of each recipe alone on the device (a few warm-up steps first), from the
    Trainer's own clock: augmentation, forward, backward and update; checkpoints left out."""
    from SSLAnomalyLib.core.model.encoder import EncoderConfig
    from SSLAnomalyLib.training.objectives import Pretext
    from SSLAnomalyLib.training.packs import read_pack
    from SSLAnomalyLib.training.trainer import TrainConfig, Trainer

    population = next(iter(plan["populations"]))
    normals = read_pack(packs / plan["populations"][population]["train"]["pack"], plan["size"])
    speeds = {}
    for recipe in recipes:
        figures = {}
        for phase, steps in (("warm-up", min(3, args.speed_steps)), ("timed", args.speed_steps)):
            cfg = TrainConfig(minutes=60, max_steps=steps, eval_every=10 ** 9, seed=args.seed)
            trainer = Trainer(EncoderConfig(input_size=plan["size"]), Pretext.parse(recipe), cfg,
                              work / "speed" / f"{run_name(population, recipe)}-{phase}", device=args.device)
            trainer.fit(normals.images01, normals.lungs, progress=False)
            figures = trainer.state()
        speeds[recipe] = {"steps": figures["step"], "seconds": round(figures["seconds"], 2),
                          "steps_per_s": round(figures["step"] / figures["seconds"], 2),
                          "images_per_s": round(figures["step"] * 32 / figures["seconds"], 1),
                          "device": str(trainer.device), "population": population}
        say(f"training speed {recipe}: {speeds[recipe]['steps_per_s']} steps/s alone")
    shutil.rmtree(work / "speed", ignore_errors=True)
    return speeds


def detection_speed(folder: Path, packs: Path, plan: dict, population: str, args) -> dict:
    """Images per second through the model: `detect` one at a time (score, heatmap and findings on
    128-px inputs) and the batched scoring the reference and calibration use."""
    from SSLAnomalyLib.core.detection.detector import AnomalyDetector
    from SSLAnomalyLib.core.reading.image import Radiograph
    from SSLAnomalyLib.training.packs import read_pack

    normals = read_pack(packs / plan["populations"][population]["val"]["pack"], plan["size"])
    detector = AnomalyDetector.load(folder, device=args.device)
    images = [Radiograph(x) for x in normals.images01[:args.detect_images]]
    detector.detect(images[0])  # warm-up
    t0 = time.time()
    for image in images:
        detector.detect(image)
    one = len(images) / (time.time() - t0)
    batch = normals.images01[:256]
    detector.scorer.score(batch[:8], normals.lungs[:8])
    t0 = time.time()
    detector.scorer.score(batch, normals.lungs[:len(batch)])
    return {"model": folder.name, "detect_images_per_s": round(one, 1),
            "batched_scoring_images_per_s": round(len(batch) / (time.time() - t0), 1), "device": args.device}


def environment() -> dict:
    import torch

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return {"python": platform.python_version(), "torch": torch.__version__, "gpu": gpu, "cpus": os.cpu_count(),
            "platform": platform.platform()}


def bring_back(work: Path, out: Path, results: dict) -> dict:
    """Model folders into tars of at most TAR_LIMIT (one model per tar at least) beside OTHER_FILES:
    at most MAX_FILES files under `out`, each within MAX_FILE, MAX_TOTAL in all.
    Whatever does not fit is named in results["left_out"], never silently dropped."""
    out.mkdir(parents=True, exist_ok=True)
    folders = sorted(p for p in (work / "models").glob("*") if (p / "manifest.json").exists())
    tars, current, size = [], [], 0
    for folder in folders:
        bytes_ = sum(f.stat().st_size for f in folder.iterdir())
        if current and size + bytes_ > TAR_LIMIT:
            tars.append(current)
            current, size = [], 0
        current.append(folder)
        size += bytes_
    tars += [current] if current else []
    left, total, written = [], 0, []
    for i, group in enumerate(tars):
        bytes_ = sum(f.stat().st_size for folder in group for f in folder.iterdir())
        if len(written) >= MAX_FILES - len(OTHER_FILES) or total + bytes_ > MAX_TOTAL - 2 * LOG_LIMIT or bytes_ > MAX_FILE:
            left += [folder.name for folder in group]
            continue
        path = out / f"models-{i + 1}.tar"
        with tarfile.open(path, "w") as tar:
            for folder in group:
                tar.add(folder, arcname=folder.name)
        written.append(path.name)
        total += path.stat().st_size
    results["files"], results["left_out"] = written, left
    logs = "".join(f"===== {p.stem}\n{p.read_text(errors='replace')[-LOG_LIMIT // 16:]}\n"
                   for p in sorted((work / "logs").glob("*.log")))
    (out / "round.log").write_text(logs[-LOG_LIMIT:])
    (out / "results.json").write_text(dumps(results, indent=1, allow_nan=False))
    return results


def run(args) -> dict:
    t_start = time.time()
    packs, out = Path(args.packs), Path(args.out)
    work = Path(args.work or (Path.cwd() / ".device_round"))
    plan = json.loads((packs / PLAN).read_text())
    populations = args.populations or list(plan["populations"])
    runs = [(p, r) for p in populations for r in args.recipes]
    deadline = t_start + args.deadline_minutes * 60
    print_plan(runs, args, args.deadline_minutes * 60)
    results = {"plan": {"runs": [run_name(*r) for r in runs], "minutes": args.minutes, "max_steps": args.max_steps,
                        "parallel": args.parallel, "packs": plan, "dry_run": args.dry_run},
               "environment": environment()}
    if args.speed_steps:
        results["training_speed"] = training_speed(packs, plan, args.recipes, args, work)
    done = launch(runs, packs, plan, work, args, deadline - args.reserve_minutes * 60)
    results["runs"] = {}
    for name, status in done.items():
        folder = work / "models" / name
        results["runs"][name] = dict(status, **(run_figures(folder) if status["status"] == "ok" else {}))
    results["detection_speed"] = {}
    for population in populations:
        ok = [work / "models" / run_name(population, r) for r in args.recipes
              if results["runs"].get(run_name(population, r), {}).get("status") == "ok"]
        if ok and args.detect_images:
            results["detection_speed"][population] = detection_speed(ok[0], packs, plan, population, args)
    results["wall_s"] = round(time.time() - t_start, 1)
    results = bring_back(work, out, results)
    say(f"round done in {results['wall_s']} s: {', '.join(results['files'])} in {out}"
        + (f"; left out: {', '.join(results['left_out'])}" if results["left_out"] else ""))
    return results


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="device_round", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)
    k = sub.add_parser("pack", help="pack the normals of every population (here, where the data is)")
    k.add_argument("--data", required=True, type=Path, help="the data folder (../shared/data)")
    k.add_argument("--out", required=True, type=Path, help="folder for the packs and round.json")
    k.add_argument("--size", type=int, default=128, help="model input size in pixels")
    k.add_argument("--limit", type=int, help="at most this many normals per pack (a dry run's tiny packs)")
    k.add_argument("--populations", type=lambda s: s.split(","), help=f"default: {','.join(POPULATIONS)}")
    r = sub.add_parser("run", help="train, time and bring back (on the GPU machine)")
    r.add_argument("--packs", required=True, help="folder holding round.json and the packs")
    r.add_argument("--out", required=True, help="folder whose files come back ($OUT)")
    r.add_argument("--work", help="where models and logs are made (default .device_round/)")
    r.add_argument("--recipes", type=lambda s: s.split(";"), default=list(RECIPES),
                   help="pretexts separated by ';' (default: " + "; ".join(RECIPES) + ")")
    r.add_argument("--populations", type=lambda s: s.split(","), help="default: every population in round.json")
    r.add_argument("--minutes", type=float, default=5.0, help="training minutes of each run")
    r.add_argument("--max-steps", type=int, help="also stop each run after this many steps")
    r.add_argument("--parallel", type=int, default=8, help="runs at a time")
    r.add_argument("--deadline-minutes", type=float, default=9.3, help="the whole round ends within this")
    r.add_argument("--reserve-minutes", type=float, default=0.8, help="kept for detection speed and packing")
    r.add_argument("--speed-steps", type=int, default=40, help="timed steps of each recipe alone (0: none)")
    r.add_argument("--detect-images", type=int, default=64, help="images timed through detect (0: none)")
    r.add_argument("--device", default="auto")
    r.add_argument("--seed", type=int, default=0)
    r.add_argument("--dry-run", action="store_true", help="a few steps on whatever device is there (the CPU here)")
    return p


def main(argv=None) -> int:
    args = parser().parse_args(argv)
    if args.command == "pack":
        pack(args.data, args.out, args.size, args.limit, args.populations)
        return 0
    if args.dry_run:
        args.max_steps, args.minutes, args.parallel = 2, 1.0, min(args.parallel, 2)
        args.speed_steps, args.detect_images = min(args.speed_steps, 2), min(args.detect_images, 2)
    results = run(args)
    return 0 if results["runs"] and all(r["status"] == "ok" for r in results["runs"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
