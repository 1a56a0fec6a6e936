"""Check lung networks against expert masks (openist held-out fold: normal, and with a white-out, an
effusion or consolidation drawn into one lung field) and where there are no masks (plausibility on
children, adult normals and adult pneumonia); write the pictures and the figures of docs/anatomy.md.

Usage: .venv/bin/python scripts/lung_check.py [--networks LABEL=FOLDER ...] [--docs]
  default: the bundled network only; several are compared side by side, the oldest first. With --docs:
  rewrite the lungs:begin/end block of docs/anatomy.md and docs/images/lungs_*.png (lungs_openist and
  lungs_kermany with the last network; lungs_disease with each, one row per network, the real cases being
  00000506_013 and the two NIH pneumonia images whose sides the first network found most unequal).
  Figures in runs/lung_check.json.

The opacities here are drawn by this script, not by training's `lung_disease.py`: at the image's own
resolution before preprocessing (training draws on the 128 px network input), inside one connected field
of the expert mask (training splits the mask at its midline), a mediastinum-coloured fill (training: the
chest wall's and mediastinum's brightness spread inwards), a sine meniscus and a union of discs. So the
figures show whether the network learned "a white lung is a lung", not the drawing it trained on.
"""

import argparse
import json
import re
import sys
from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage

from SSLAnomalyLib.core.anatomy.lung_network import BUNDLED_LUNGS, LungFields, LungSegmenter
from SSLAnomalyLib.core.model.preprocess import normalise, resize, to_model_input
from SSLAnomalyLib.core.reading.images import list_inputs, read_radiograph
from SSLAnomalyLib.evaluation.phantoms import draw_phantom
from SSLAnomalyLib.training.lung_training import dice, load_pair

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
DOC = ROOT / "docs" / "anatomy.md"
IMAGES = ROOT / "docs" / "images"
KINDS = ("whiteout", "effusion", "consolidation")
PHANTOMS = (("whiteout", "hemithorax"), ("effusion", "large"), ("effusion", "small"), ("consolidation", "lobar"))
PLAUSIBILITY = ("kermany/val/normal", "kermany/val/pneumonia", "rsna/val/normal", "nih/val/pneumonia")
SEVERE = "00000506_013.png"  # nih/val/pneumonia: an opaque left hemithorax
SEED = 0


def outlined(image: np.ndarray, mask: np.ndarray | None, size: int = 256, truth: np.ndarray | None = None) -> Image.Image:
    """The radiograph with the lung outline in cyan (and the expert one in yellow)."""
    gray = (255 * to_model_input(image, size)).astype(np.uint8)
    rgb = np.stack([gray] * 3, -1)
    for m, colour in ((truth, (255, 220, 0)), (mask, (0, 230, 255))):
        if m is None:
            continue
        small = resize(m.astype(np.float32), (size, size)) >= 0.5
        edge = small & ~ndimage.binary_erosion(small, iterations=2)
        rgb[edge] = colour
    return Image.fromarray(rgb)


def save_grid(tiles: list[Image.Image], columns: int, path: Path) -> None:
    grid = Image.new("RGB", (256 * columns, 256 * -(-len(tiles) // columns)))
    for i, t in enumerate(tiles):
        grid.paste(t, (256 * (i % columns), 256 * (i // columns)))
    grid.save(path)


def fields_of(seg: LungSegmenter, image: np.ndarray) -> LungFields:
    """The lung fields as the network gives them (model input, post-processing, fallbacks), without an
    anomaly model's lung prior: `detect` also mirrors a field drawn away from where lungs lie."""
    fields, = seg.fields(to_model_input(image, seg.config.input_size)[None])
    return fields


def one_field(truth: np.ndarray, image_left: bool) -> np.ndarray:
    """The larger connected region of the expert mask on one side (by its centre)."""
    labels, count = ndimage.label(truth)
    regions = [labels == k for k in range(1, count + 1)]
    side = [r for r in regions if (np.nonzero(r)[1].mean() < truth.shape[1] / 2) == image_left]
    return max(side or regions, key=np.sum)


def opacity(kind: str, field: np.ndarray, image_left: bool, rng: np.random.Generator) -> np.ndarray:
    """Evaluation opacity in [0, 1] over `field` at the image's own resolution."""
    rows, cols = np.nonzero(field)
    width, height = np.ptp(cols) + 1, np.ptp(rows) + 1
    yy, xx = np.mgrid[0:field.shape[0], 0:field.shape[1]]
    if kind == "whiteout":
        shape = field.astype(np.float32)
    elif kind == "effusion":
        lateral = np.clip((cols.max() - xx if image_left else xx - cols.min()) / width, 0, 1)
        edge = rows.max() - rng.uniform(0.3, 0.6) * height - 0.15 * height * np.sin(np.pi / 2 * lateral)
        shape = (yy > edge) & field
    else:
        shape = np.zeros(field.shape, bool)  # a patch of eight overlapping discs around one point
        k = rng.integers(rows.size)
        for dy, dx in rng.normal(0, 0.3 * width, (8, 2)):
            shape |= np.hypot(yy - rows[k] - dy, xx - cols[k] - dx) < rng.uniform(0.15, 0.3) * width
        shape = shape & field
    soft = ndimage.gaussian_filter(shape.astype(np.float32), 0.01 * width) * field
    return soft * (0.92 if kind != "consolidation" else 0.65)


def opacified(image: np.ndarray, truth: np.ndarray, kind: str, rng: np.random.Generator) -> tuple[np.ndarray, bool]:
    """(image in [0, 1] with one kind of opacity in one expert lung field, whether that field is on the
    image's left)."""
    image_left = bool(rng.random() < 0.5)
    field = one_field(truth, image_left)
    x = normalise(image)
    cols = np.flatnonzero(truth.any(axis=0))
    between = np.zeros_like(truth)
    between[np.flatnonzero(field.any(axis=1)), cols[0]:cols[-1] + 1] = True
    level = np.median(x[between & ~ndimage.binary_dilation(truth, iterations=5)])
    a = opacity(kind, field, image_left, rng)
    return (1 - a) * x + a * (level + 0.02 * rng.standard_normal(x.shape)), image_left


def drawings(image: np.ndarray, truth: np.ndarray, i: int) -> list[tuple[str, np.ndarray, bool]]:
    """(name, opacified image, opacified side is the image's left) of every evaluation drawing of image `i`:
    this script's, and those of evaluation/phantoms.py (another author's code, placed by the expert mask)."""
    out = [(f"{kind} (lung_check)", *opacified(image, truth, kind, np.random.default_rng([SEED, i, j])))
           for j, kind in enumerate(KINDS)]
    for j, (kind, size) in enumerate(PHANTOMS):
        p = draw_phantom(kind, size, normalise(image), truth, np.random.default_rng([SEED, i, 10 + j]))
        out.append((f"{kind} {size} (phantoms)", p.image, p.side == "right"))
    return out


def side_dice(pred: np.ndarray, truth: np.ndarray, image_left: bool) -> float:
    """Dice on the opacified side only: the half of the image, split midway between the expert lungs."""
    cols = np.flatnonzero(truth.any(axis=0))
    half = np.zeros_like(truth)
    half[:, :int((cols[0] + cols[-1]) / 2)] = True
    half = half if image_left else ~half
    return dice(pred.astype(bool) & half, truth & half)


def held_out(segs: dict[str, LungSegmenter], names: list[str]) -> dict:
    """Per network: Dice on the normal images and, per drawing, overall and on the opacified side."""
    out = {label: {"normal": []} for label in segs}
    for i, name in enumerate(names):
        image, truth = load_pair(DATA / "openist" / "images" / name, DATA / "openist" / "masks" / name)
        for label, seg in segs.items():
            out[label]["normal"].append(dice(fields_of(seg, image).on_grid(*truth.shape), truth))
        for drawing, sick, image_left in drawings(image, truth, i):
            for label, seg in segs.items():
                fields = fields_of(seg, sick)
                pred = fields.on_grid(*truth.shape)
                r = out[label].setdefault(drawing, {"all": [], "side": [], "fallbacks": 0})
                r["all"].append(dice(pred, truth))
                r["side"].append(side_dice(pred, truth, image_left))
                r["fallbacks"] += fields.source != "network"
    return out


def summary(values: list[float]) -> dict:
    return {"mean": round(float(np.mean(values)), 4), "min": round(float(np.min(values)), 4)}


def plausibility(seg: LungSegmenter, folder: str) -> dict:
    """Share of images whose network output passed the plausibility checks, lung area, side ratio."""
    files = list_inputs([DATA / folder])
    xs = np.stack([to_model_input(read_radiograph(f).pixels[0], seg.config.input_size) for f in files])
    fields = seg.fields(xs)
    areas = [f.mask.mean() for f in fields]
    ratios = [f.network_side_ratio for f in fields]
    return {"folder": folder, "n": len(files), "network": sum(f.source == "network" for f in fields),
            "fallbacks": {s: sum(f.source == s for f in fields) for s in ("unsupervised", "prior")},
            "lung_area_median": round(float(np.median(areas)), 3),
            "lung_area_p5_p95": [round(float(np.percentile(areas, q)), 3) for q in (5, 95)],
            "side_ratio_below_0.5": sum(r < 0.5 for r in ratios),
            "lowest_side_ratio": [f.name for _, f in sorted(zip(ratios, files))[:3]]}


def per_side(seg: LungSegmenter, name: str) -> dict:
    """What the score is told about one real severe case of nih/val/pneumonia: source and per-side areas."""
    f = fields_of(seg, read_radiograph(DATA / "nih" / "val" / "pneumonia" / name).pixels[0])
    return {"image": name, "source": f.source, "network_side_fractions": [round(v, 3) for v in f.network_side_fractions],
            "network_side_ratio": round(f.network_side_ratio, 2), "side_fractions": [round(v, 3) for v in f.side_fractions]}


def pictures(segs: dict[str, LungSegmenter], names: list[str], normal_dice: list[float], severe: list[str]) -> None:
    """lungs_openist/kermany.png with the newest network; lungs_disease.png old (top) vs new (bottom)."""
    seg = list(segs.values())[-1]
    tiles = []
    for kind, n in (("normal", 4), ("pneumonia", 4)):
        for f in sorted((DATA / "kermany" / "val" / kind).iterdir())[::37][:n]:
            image = read_radiograph(f).pixels[0]
            tiles.append(outlined(image, fields_of(seg, image).on_grid(*image.shape)))
    save_grid(tiles, 4, IMAGES / "lungs_kermany.png")
    shown = names[:4] + [names[int(np.argmin(normal_dice))]]
    pairs = [load_pair(DATA / "openist" / "images" / n, DATA / "openist" / "masks" / n) for n in shown]
    save_grid([outlined(im, fields_of(seg, im).on_grid(*t.shape), truth=t) for im, t in pairs], 5,
              IMAGES / "lungs_openist.png")
    cases = []
    for i, kind in enumerate(KINDS):
        image, truth = load_pair(DATA / "openist" / "images" / names[i], DATA / "openist" / "masks" / names[i])
        cases.append((drawings(image, truth, i)[i][1], truth))
    cases += [(read_radiograph(DATA / "nih" / "val" / "pneumonia" / n).pixels[0], None) for n in severe]
    save_grid([outlined(im, fields_of(s, im).on_grid(*im.shape), truth=t) for s in segs.values() for im, t in cases],
              len(cases), IMAGES / "lungs_disease.png")


def markdown(report: dict, labels: list[str]) -> str:
    """The lungs:begin/end block of docs/anatomy.md."""
    h, n = report["held_out"], report["n_held_out"]
    lines = [f"Held-out openist fold ({n} adult images, seed 0, never trained on), Dice at each mask's own "
             "resolution through the path `detect --lungs` takes, against the **unaltered** expert mask: on the "
             "normal images, then with one opacity drawn into one expert lung field (side seeded) by this script "
             "or by `evaluation/phantoms.py`, never by training's drawing. Each cell: mean Dice of both fields / "
             f"**mean Dice on the opacified side** (its minimum), fallbacks of {n}.", "",
             "| images | " + " | ".join(f"`{label}`" for label in labels) + " |", "|---|" + "---|" * len(labels),
             "| normal | " + " | ".join(f"{h[label]['normal']['mean']:.3f} (min {h[label]['normal']['min']:.3f})"
                                       for label in labels) + " |"]
    for drawing in (k for k in h[labels[0]] if k != "normal"):
        lines.append(f"| {drawing} | " + " | ".join(
            f"{h[label][drawing]['all']['mean']:.3f} / **{h[label][drawing]['side']['mean']:.3f}** "
            f"({h[label][drawing]['side']['min']:.3f}), {h[label][drawing]['fallbacks']}" for label in labels) + " |")
    lines += ["", "Plausibility where there are no expert masks. Each cell: images whose network output passed the "
              "checks / took the unsupervised fallback / the prior; lopsided: the network's smaller lung under half "
              "the larger (`LungFields.network_side_ratio` < 0.5); lung area as a share of the 128 px input, median "
              "(5th to 95th percentile).", "",
              "| folder | images | " + " | ".join(f"`{label}`" for label in labels) + " |",
              "|---|---|" + "---|" * len(labels)]
    for rows in zip(*(report["plausibility"][label] for label in labels)):
        cells = [f"{r['network']} / {r['fallbacks']['unsupervised']} / {r['fallbacks']['prior']}; lopsided "
                 f"{r['side_ratio_below_0.5']}; area {r['lung_area_median']:.3f} ({r['lung_area_p5_p95'][0]:.3f} to "
                 f"{r['lung_area_p5_p95'][1]:.3f})" for r in rows]
        lines.append(f"| `{rows[0]['folder']}` | {rows[0]['n']} | " + " | ".join(cells) + " |")
    lines += ["", "What `LungFields` tells the score on the real severe cases of the picture below (`nih/val/pneumonia`): "
              "source; the network's own (image-left, image-right) areas as shares of the image and their ratio, kept "
              "through a fallback; the final mask's areas.", "",
              "| image | " + " | ".join(f"`{label}`" for label in labels) + " |", "|---|" + "---|" * len(labels)]
    for cases in zip(*(report["severe"][label] for label in labels)):
        lines.append(f"| {cases[0]['image']} | " + " | ".join(
            f"{c['source']}; network {c['network_side_fractions'][0]:.3f} / {c['network_side_fractions'][1]:.3f} "
            f"(ratio {c['network_side_ratio']:.2f}); mask {c['side_fractions'][0]:.3f} / {c['side_fractions'][1]:.3f}"
            for c in cases) + " |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--networks", nargs="+", default=[f"bundled={BUNDLED_LUNGS}"], help="LABEL=FOLDER, old first")
    parser.add_argument("--docs", action="store_true", help="rewrite docs/anatomy.md's block and the pictures")
    args = parser.parse_args()
    segs = {s.split("=", 1)[0]: LungSegmenter.load(ROOT / s.split("=", 1)[1]) for s in args.networks}
    names = [seg.manifest.section("data")["held_out"] for seg in segs.values()]
    if any(n != names[0] for n in names):
        sys.exit("the networks were trained with different held-out folds; their figures would not compare")
    names = names[0]
    raw = held_out(segs, names)
    report = {"n_held_out": len(names),
              "held_out": {label: {"normal": summary(r["normal"])} | {
                  k: {"all": summary(v["all"]), "side": summary(v["side"]), "fallbacks": v["fallbacks"]}
                  for k, v in r.items() if k != "normal"} for label, r in raw.items()},
              "plausibility": {label: [plausibility(seg, p) for p in PLAUSIBILITY] for label, seg in segs.items()}}
    (ROOT / "runs").mkdir(exist_ok=True)
    nih = report["plausibility"][list(segs)[0]][-1]["lowest_side_ratio"]
    severe = [SEVERE] + [n for n in nih if n != SEVERE][:2]
    report["severe"] = {label: [per_side(seg, n) for n in severe] for label, seg in segs.items()}
    (ROOT / "runs" / "lung_check.json").write_text(json.dumps(report, indent=1))
    print(json.dumps(report, indent=1))
    if args.docs:
        pictures(segs, names, raw[list(segs)[-1]]["normal"], severe)
        block = markdown(report, list(segs))
        text = re.sub(r"(<!-- lungs:begin -->\n).*?(\n<!-- lungs:end -->)", lambda m: m[1] + block + m[2],
                      DOC.read_text(), flags=re.S)
        DOC.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
