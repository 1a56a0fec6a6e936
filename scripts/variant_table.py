"""Rebuild the round-2 tables of docs/model.md (shift robustness, adults, anatomy) from the runs that
scripts/measure_model.sh measured, so the document never holds a figure no command produced.

Usage: .venv/bin/python scripts/variant_table.py
Reads runs/round2/<population>/<variant>/{manifest.json, dev.json, shifted.json, localisation.json,
nih_boxes.json}; writes the table of each population between its markers in docs/model.md.
"""

import json
import re
import statistics
import sys
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
POPULATIONS = ("pediatric", "adult")


def read(run: Path, name: str) -> dict | None:
    f = run / name
    return json.loads(f.read_text()) if f.exists() else None


def fmt(d: dict | None, key: str) -> str:
    return "-" if d is None or d.get(key) is None else f"{d[key]:.3f}"


def shift_cells(shifted: dict | None) -> list[str]:
    if shifted is None:
        return ["-"] * 3
    p = shifted["perturbations"]
    return [f"{p[f]['auroc']:.3f} / {100 * p[f]['fpr_at_threshold']:.0f} %" if f in p else "-"
            for f in ("zoom_gamma", "combined", "markers")]


def row(run: Path) -> str:
    m = read(run, "manifest.json")
    dev, shifted, loc, nih = (read(run, n) for n in ("dev.json", "shifted.json", "localisation.json", "nih_boxes.json"))
    t = m["training"]
    start = t.get("started_from")
    origin = f"from `{Path(start['folder']).name}`, " if start else ""
    ref = m.get("reference", {})
    options = [f"{ref[k]} {what}" for k, what in (("augmented_views_per_normal", "reference views"),
                                                   ("calibration_augmented_views_per_normal", "calibration views"))
               if ref.get(k)]
    options += ["positions standardised"] if ref.get("positions_standardised") else []
    cal = m.get("site_calibration")
    trained = (f"{t['seconds'] / 60:.0f} min ({t['steps']} steps, chose {t['chosen_step']})" if t["steps"]
               else f"refit only ({t['seconds'] / 60:.0f} min)")
    how = (f"calibrated on {cal['n_normals']} normals of `{cal['normals']}`" if cal else
           ", ".join([f"{origin}{trained}", *options]))
    command = f"sslanomaly calibrate --model {cal['from_folder']} --normals {cal['normals']}" if cal else t["command"]
    wall = run / "seconds.txt"
    if wall.exists():
        how += f"; {int(wall.read_text())} s wall in all"
    fpr = "-" if dev is None else f"{100 * dev['fpr_at_threshold']:.0f} %"
    return (f"| `{run.name}` | {how} | {fmt(dev, 'auroc')} | {fmt(dev, 'ap')} | {fpr} "
            f"| {' | '.join(shift_cells(shifted))} "
            f"| {fmt(loc, 'pointing_game')} (random {fmt(loc, 'random_pointing_baseline')}) | {fmt(loc, 'box_auroc')} "
            f"| {fmt(nih, 'pointing_game')} | `{command}` |")


def seed_summary(runs: list[Path]) -> str:
    recipes = defaultdict(list)
    for r in runs:
        named = re.fullmatch(r"(.+)-s\d+", r.name)
        if named and (r / "dev.json").exists():
            recipes[named[1]].append(r)
    lines = []
    for recipe, seeds in sorted(recipes.items()):
        if len(seeds) < 2:
            continue
        dev = [read(r, "dev.json")["auroc"] for r in seeds]
        lines.append(f"\n\n`{recipe}` over {len(seeds)} seeds ({', '.join(r.name for r in seeds)}): dev AUROC mean "
                     f"{statistics.mean(dev):.3f}, min {min(dev):.3f}, max {max(dev):.3f}.")
    return "".join(lines)


def objectives_of(m: dict) -> str:
    pretext = m.get("pretext", {})
    if not m["training"]["steps"]:
        return "none (random init)"
    if "objectives" in pretext:
        return " + ".join(f"{o['name']}" + (f" x{o['weight']:g}" if o["weight"] != 1 else "") for o in pretext["objectives"])
    return "none (random init)" if not m["training"]["steps"] else ", ".join(pretext.get("kinds", []))


def objective_table() -> str:
    """docs/model.md's objective comparison (scripts/objective_comparison.sh), from runs/round2/objectives/."""
    runs = sorted((ROOT / "runs" / "round2" / "objectives").glob("*"))
    lines = ["| variant | objective(s) | training (2-core CPU) | dev AUROC | dev AP | dev FPR at threshold "
             "| zoom_gamma AUROC / FPR | TBX11K pointing game | TBX11K box AUROC | train command wall time | command |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for run in runs:
        m, dev, shifted, loc = (read(run, n) for n in ("manifest.json", "dev.json", "shifted.json", "localisation.json"))
        if m is None or dev is None:
            continue
        t = m["training"]
        trained = (f"{t['minutes']:g} min of steps, {t['steps']} steps, kept step {t['chosen_step']}" if t["steps"]
                   else "none (0 min)")
        wall = (run / "seconds.txt").read_text().strip() + " s" if (run / "seconds.txt").exists() else "-"
        lines.append(f"| `{run.name}` | {objectives_of(m)} | {trained} | {fmt(dev, 'auroc')} | {fmt(dev, 'ap')} "
                     f"| {100 * dev['fpr_at_threshold']:.0f} % | {shift_cells(shifted)[0]} "
                     f"| {fmt(loc, 'pointing_game')} (random {fmt(loc, 'random_pointing_baseline')}) "
                     f"| {fmt(loc, 'box_auroc')} | {wall} | `{t['command']}` |")
    return "\n".join(lines) + seed_summary(runs)


SITE_STEPS = {"site-calibrate": "(a) calibrate only", "site-refit": "(b) refit the normal reference (`--minutes 0`)",
              "site-finetune10": "(c) fine-tune 10 minutes", "site-finetune30": "(c) fine-tune 30 minutes",
              "site-scratch30": "(d) train from a random encoder, 30 minutes"}


def site_table() -> str:
    """The README's site-training table (scripts/site_training.sh), from runs/round2/adult/site-*."""
    base = read(ROOT / "runs" / "round2" / "adult" / "adult-rsna", "dev.json")
    lines = ["| what the site runs | wall time | dev AUROC | normals flagged | pneumonia flagged |", "|---|---|---|---|---|"]
    if base:
        lines.append(f"| nothing (RSNA reference and thresholds) | - | {base['auroc']:.3f} | {100 * base['fpr_at_threshold']:.0f} % "
                     f"| {100 * base['tpr_at_threshold']:.0f} % |")
    for name, what in SITE_STEPS.items():
        run = ROOT / "runs" / "round2" / "adult" / name
        dev = read(run, "dev.json")
        if dev is None:
            continue
        wall = (run / "seconds.txt").read_text().strip() if (run / "seconds.txt").exists() else "-"
        lines.append(f"| {what} | {wall} s | {dev['auroc']:.3f} | {100 * dev['fpr_at_threshold']:.0f} % "
                     f"| {100 * dev['tpr_at_threshold']:.0f} % |")
    return "\n".join(lines)


def main(argv=None) -> int:
    """All tables; with the argument `site`, only the README's site table (runs of the other tables
    may be missing on this checkout, and a table is rebuilt from the runs it finds)."""
    if (argv if argv is not None else sys.argv[1:]) == ["site"]:
        return write_site_table()
    doc = ROOT / "docs" / "model.md"
    text = doc.read_text()
    for population in POPULATIONS:
        runs = sorted(p for p in (ROOT / "runs" / "round2" / population).glob("*") if (p / "dev.json").exists())
        begin, end = f"<!-- {population}:begin -->", f"<!-- {population}:end -->"
        if begin not in text or not runs:
            continue
        table = "\n".join([
            "| variant | how it was made (2-core CPU) | dev AUROC | dev AP | dev FPR at threshold "
            "| zoom_gamma AUROC / FPR | combined AUROC / FPR | markers AUROC / FPR | TBX11K pointing game "
            "| TBX11K box AUROC | NIH pointing game | command |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|", *map(row, runs)]) + seed_summary(runs)
        start, stop = text.index(begin) + len(begin), text.index(end)
        text = text[:start] + "\n" + table + "\n" + text[stop:]
        print(table)
    begin, end = "<!-- objectives:begin -->", "<!-- objectives:end -->"
    if begin in text and (ROOT / "runs" / "round2" / "objectives").exists():
        start, stop = text.index(begin) + len(begin), text.index(end)
        text = text[:start] + "\n" + objective_table() + "\n" + text[stop:]
    doc.write_text(text)
    return write_site_table()


def write_site_table() -> int:
    readme = ROOT / "README.md"
    text = readme.read_text()
    begin, end = "<!-- site:begin -->", "<!-- site:end -->"
    if begin in text and any((ROOT / "runs" / "round2" / "adult").glob("site-*/dev.json")):
        start, stop = text.index(begin) + len(begin), text.index(end)
        readme.write_text(text[:start] + "\n" + site_table() + "\n" + text[stop:])
    return 0


if __name__ == "__main__":
    sys.exit(main())
