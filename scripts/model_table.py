"""Rebuild the variants table of docs/model.md from runs/experiments/*/ (written by
scripts/model_experiments.sh), so the document never holds a figure no command produced."""

import json
import re
import statistics
import sys
from collections import defaultdict
from pathlib import Path

from safetensors import safe_open

ROOT = Path(__file__).resolve().parents[1]
BEGIN, END = "<!-- variants:begin -->", "<!-- variants:end -->"


def row(run: Path) -> str:
    m = json.loads((run / "manifest.json").read_text())
    dev = json.loads((run / "dev.json").read_text())
    loc = json.loads((run / "localisation.json").read_text())
    t, e = m["training"], m["encoder"]
    with safe_open(run / "model.safetensors", "pt") as f:
        cells = f.get_slice("reference.patch_means").get_shape()[-1]  # the heatmap's patch grid
    start = t.get("started_from")
    origin = f"encoder of `{Path(start['folder']).name}`, then " if start else ""
    return (f"| `{run.name}` | {', '.join(m['pretext']['kinds'])} | {e['input_size']} "
            f"| {'+'.join(e['patch_layers'])} ({cells}x{cells}) | {t['seed']} "
            f"| {origin}{t['seconds'] / 60:.0f} min ({t['steps']} steps, chose {t['chosen_step']}) "
            f"| {dev['auroc']:.3f} | {dev['ap']:.3f} | {patient_disjoint_auroc(run)} "
            f"| {dev['components']['pooled']['auroc']:.3f} | {dev['components']['patch']['auroc']:.3f} "
            f"| {loc['pointing_game']:.3f} "
            f"(random {loc['random_pointing_baseline']:.3f}) | {loc['box_auroc']:.3f} "
            f"| `{t['command']}` |")


def patient_disjoint_auroc(run: Path) -> str:
    """Dev AUROC on the patient-disjoint normals (scripts/patient_disjoint_dev.py), where measured."""
    f = run / "dev_patient_disjoint.json"
    return f"{json.loads(f.read_text())['auroc']:.3f}" if f.exists() else "not run"


def seed_summaries(runs: list[Path]) -> str:
    """Spread over seeds of every recipe run with more than one seed (runs named <recipe>-s<seed>, or
    <recipe>-s<seed>-<variant> for a variant of that seed's run: recipe <recipe>-<variant>)."""
    recipes = defaultdict(list)
    for r in runs:
        named = re.fullmatch(r"(.+)-s\d+(-.+)?", r.name)
        if named:
            recipes[named[1] + (named[2] or "")].append(r)

    def spread(values: list[float]) -> str:
        return f"mean {statistics.mean(values):.3f}, min {min(values):.3f}, max {max(values):.3f}"

    lines = []
    for recipe, seeds in sorted(recipes.items()):
        if len(seeds) < 2:
            continue
        dev = [json.loads((r / "dev.json").read_text()) for r in seeds]
        loc = [json.loads((r / "localisation.json").read_text()) for r in seeds]
        lines.append(f"\n\n`{recipe}` over {len(seeds)} seeds ({', '.join(r.name for r in seeds)}): dev AUROC "
                     f"{spread([d['auroc'] for d in dev])}; dev AP {spread([d['ap'] for d in dev])}; pointing game "
                     f"{spread([lo['pointing_game'] for lo in loc])}; box AUROC {spread([lo['box_auroc'] for lo in loc])}.")
    return "".join(lines)


def main() -> int:
    runs = sorted(p for p in (ROOT / "runs" / "experiments").glob("*") if (p / "localisation.json").exists())
    table = "\n".join([
        "| variant | pretext | px | heatmap layers (map) | seed | training (2-core CPU) | dev AUROC | dev AP | "
        "dev AUROC, patient-disjoint normals | image-level only | patch-level only | pointing game | box AUROC "
        "| training command |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|", *map(row, runs)]) + seed_summaries(runs)
    doc = ROOT / "docs" / "model.md"
    text = doc.read_text()
    start, end = text.index(BEGIN) + len(BEGIN), text.index(END)
    doc.write_text(text[:start] + "\n" + table + "\n" + text[end:])
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
