"""`sslanomaly-bench`: run every measurement of stages.py in order and write docs/benchmarks.md and
its JSON. Developer tooling: it lives outside the Slicer module and the `sslanomaly` command, so
neither imports POSIX-only modules (`resource`) or the test harness."""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import tempfile
import time
from pathlib import Path

from sslanomaly_bench.hostile import hostile_inputs
from sslanomaly_bench.machine import load_now, machine
from sslanomaly_bench.scale import scale
from sslanomaly_bench.stages import (FULL, QUICK, TARGETS, batch, dask_section, gpu, long_batch, model_load,
                                     slicer_logic, stages, start_imports, training, unreadable)


DATA_FREE = ("model_load", "start_imports", "hostile_inputs", "unreadable")  # sections that write their own inputs


def section_names(text: str) -> list[str]:
    """`--sections` as names of the report's sections: a misspelt one measured nothing and still
    rewrote the report as if measured by this command."""
    from sslanomaly_bench.report import SECTIONS

    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in SECTIONS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"no such section: {', '.join(unknown) or repr(text)} "
                                         f"(choose among {', '.join(SECTIONS)})")
    return names


def at_least(low: int):
    """An argparse type: a whole number of `low` or more (`--images 0` ended in a report of
    'IndexError: list index out of range', `--repeats 0` in 'min() arg is an empty sequence')."""
    def number(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = low - 1
        if value < low:
            raise argparse.ArgumentTypeError(f"{text!r}: a whole number of {low} or more")
        return value
    return number


def run(args) -> dict:
    """Every section, in order; returns the results (also written as JSON and Markdown)."""
    from sslanomaly_bench.report import SECTIONS, write_report
    from SSLAnomalyLib.core.model_files.model_folder import load as verified

    data = Path(args.data)
    fullres = sorted(p for p in (data / "kermany_fullres").rglob("*") if p.is_file())
    needing = [s for s in args.sections or SECTIONS if s not in DATA_FREE]
    if not fullres and needing:
        print(f"bench skipped: no full-resolution radiographs in {data / 'kermany_fullres'} "
              f"({', '.join(needing)} need the real data of ../shared/data; {', '.join(DATA_FREE)} "
              "run without it, with --sections)", file=sys.stderr)
        return {}
    verified(args.model)  # a missing or damaged model is the command's error, not every section's
    p = dict(images=args.images, long=args.long, repeats=args.repeats, scale_normals=args.scale_normals,
             train_steps=args.train_steps, **FULL)
    if args.quick:
        p.update(QUICK)
    files = fullres[: p["images"]]
    command = "sslanomaly-bench " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    results = {"command": command, "started": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "machine": machine(),
               "load_before": load_now(), "parameters": p, "model": args.model}
    t_start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="sslanomaly-bench-") as tmp:
        work = Path(tmp)
        sections = [
            ("model_load", lambda: model_load(args.model)),
            ("stages", lambda: stages(args.model, files, work / "stages")),
            ("batch", lambda: batch(args.model, files, work, p["repeats"])),
            ("start_imports", lambda: start_imports(args.model, work)),
            ("long_batch", lambda: long_batch(args.model, fullres, p["long"], work) if p["long"] else
             {"skipped": "not asked for (--long 0)"}),
            ("scale", lambda: scale(args.model, data / "kermany" / "train" / "normal", p["scale_normals"],
                                    files, work, p["scale_factors"])),
            ("training", lambda: training(args.model, data / "kermany" / "train" / "normal", p["train_steps"],
                                          p["train_batch"], work)),
            ("slicer_logic", lambda: slicer_logic(args.model, files[: p["slicer_images"]])),
            ("gpu", lambda: gpu(args.model, files, work)),
            ("dask", lambda: dask_section(args.model, files, work)),
            ("hostile_inputs", lambda: hostile_inputs(args.model, work, p["hostile_slices"])),
            ("unreadable", lambda: unreadable(args.model, work, p["unreadable"])),
        ]
        if args.sections:
            sections = [s for s in sections if s[0] in args.sections]
        for name, measure in sections:
            print(f"bench: {name} ...", file=sys.stderr, flush=True)
            try:
                value = measure()
            except Exception as e:  # recorded: one broken section must not lose the others
                value = {"error": f"{type(e).__name__}: {e}"}
            results[name] = value
    results["load_after"] = load_now()
    results["bench_seconds"] = round(time.perf_counter() - t_start, 1)
    if args.sections:
        carry_over(results, Path(args.out).with_suffix(".json"))
    results["targets"] = targets(results)
    write_report(results, Path(args.out))
    return results


def carry_over(results: dict, previous_json: Path) -> None:
    """Sections this run did not measure keep their figures from the report being replaced (each
    marked with the run that measured it), so that `--sections` updates a full report in place."""
    from sslanomaly_bench.report import SECTIONS

    try:
        previous = json.loads(previous_json.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return
    results["carried_over"] = {}
    for name, value in previous.items():
        if name in SECTIONS and name not in results:
            results[name] = value
            results["carried_over"][name] = previous.get("carried_over", {}).get(name) or \
                {"command": previous.get("command"), "started": previous.get("started")}


def targets(results: dict) -> list[dict]:
    """The issue's CPU targets against what was measured (None where a section did not run)."""
    b, lb = results.get("batch", {}), results.get("long_batch", {})
    peak = max([v for v in (b.get("peak_rss_mb"), lb.get("peak_rss_mb")) if v is not None], default=None)
    hostile = results.get("hostile_inputs", {}).get("peak_rss_mb")
    rows = [("marginal seconds per radiograph", b.get("marginal_s_per_image"), TARGETS["marginal_s"]),
            ("start + model load, seconds", b.get("start_and_load_s"), TARGETS["start_s"]),
            ("peak resident memory, MB", peak, TARGETS["peak_rss_mb"]),
            ("peak resident memory on a hostile input, MB", hostile, TARGETS["peak_rss_mb"]),
            ("outputs of a 1,000-image batch, GB", b.get("outputs_gb_per_1000_images"),
             TARGETS["outputs_gb_per_1000"]),
            (f"RSS growth over the long batch, MB ({lb.get('n_images', 0)} images)", lb.get("rss_growth_mb"),
             TARGETS["growth_mb"])]
    return [{"target": t, "measured": v, "limit": lim, "met": None if v is None else v <= lim} for t, v, lim in rows]


def parser() -> argparse.ArgumentParser:
    b = argparse.ArgumentParser(prog="sslanomaly-bench",
                                description="measure speed, memory and scale; write docs/benchmarks.md (+ .json)")
    b.add_argument("--model", default="default", help="model folder, or 'default' for the bundled model")
    b.add_argument("--data", default="../shared/data", help="folder holding kermany_fullres/ and kermany/")
    b.add_argument("--out", default="docs/benchmarks.md", help="results file (a .json is written beside it)")
    b.add_argument("--images", type=at_least(1), default=24, help="full-resolution radiographs for the per-image figures")
    b.add_argument("--long", type=at_least(0), default=1000, help="images in the long (memory) batch; 0 skips it")
    b.add_argument("--repeats", type=at_least(1), default=2, help="runs of each whole-process measurement (best kept)")
    b.add_argument("--scale-normals", type=at_least(1), default=285, help="normals at 1x for the scale section (4x and 16x too)")
    b.add_argument("--train-steps", type=at_least(1), default=5, help="Trainer steps timed for training throughput")
    b.add_argument("--quick", action="store_true", help="a few images, no long batch (a smoke test)")
    b.add_argument("--sections", type=section_names, default=None,
                   help="comma-separated sections to run (default: all), e.g. hostile_inputs; write them with "
                        "--out to a file of their own so that the full report is kept")
    return b


def main(argv=None) -> int:
    """0 also when skipped for want of data (the message says so): nothing failed."""
    args = parser().parse_args(argv)
    results = run(args)
    if results:
        print(f"results written to {args.out} and {Path(args.out).with_suffix('.json')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
