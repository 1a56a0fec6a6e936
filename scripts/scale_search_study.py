"""Does scoring each radiograph at the field of view that looks most normal undo the acquisition shift
that flags new pediatric normals? (docs/model.md, round 20.) Round 19 found that a zoom of the field of
view (`fov`, 0.8-1.25) moves the bundled pediatric model's normals about one deviation up, and that
framing the input by its lung fields does not undo it without losing clean sensitivity. Here nothing
is refitted: the bundled model scores each input at several zooms of its own field of view (the
perturbations' `reframed`, borders filled from the edge), and the image score is the lowest of them,
i.e. the model is asked how normal the image looks at the framing it finds most normal. A pneumonia
stays abnormal at every zoom if the zoom only moves the framing; a zoomed normal comes back near
the normals at the zoom that undoes it.

For each rule the threshold is the clean dev normals' 92nd percentile (normals only), so that every
rule is read at the same clean share of normals flagged; reported are AUROC of the dev normals
against the dev abnormals and the share of each above that threshold, clean and under `fov` and
`zoom_gamma` (seeded by image), and the share of other-source normals above it (adult: the openist
normals of `scripts/expert_opacity_check.py` and the RSNA val normals, clean). Dev: pediatric, the
patient-disjoint val normals against val pneumonia; adult, NIH val normal against pneumonia. Dev
labels are read: a study.
    .venv/bin/python scripts/scale_search_study.py pediatric|adult     (10-20 minutes on the 2-core CPU)
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from sklearn.metrics import roc_auc_score

from SSLAnomalyLib.core.detection.detector import AnomalyDetector
from SSLAnomalyLib.core.model.preprocess import resize, to_model_input
from SSLAnomalyLib.core.reading.images import list_inputs, read_radiograph
from SSLAnomalyLib.evaluation.perturbations import reframed, perturb

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
DEV = {"pediatric": (ROOT / "runs" / "dev-patient-disjoint" / "normal",  # made by scripts/patient_disjoint_dev.py
                     DATA / "kermany" / "val" / "pneumonia"),
       "adult": (DATA / "nih" / "val" / "normal", DATA / "nih" / "val" / "pneumonia")}
OTHER_NORMALS = {"adult": {"openist": ROOT / "runs" / "bundling" / "openist-whiteout" / "normal",  # expert_opacity_check.py
                           "RSNA val": DATA / "rsna" / "val" / "normal"}}
SHIFTS = (None, "fov", "zoom_gamma")
ZOOMS = (0.8, 0.9, 1.0, 1.11, 1.25)  # >1 narrows the field of view, as in `perturbations.fov`
AS_GIVEN = ZOOMS.index(1.0)
WORKING_SIZE, SHARE = 512, 0.92


def lowest(zooms, margin: float = 0.0):
    """The rule: the lowest score over `zooms`, another zoom taken only where it is `margin` below the input's own."""
    columns = [ZOOMS.index(z) for z in zooms]
    return lambda s: np.minimum(s[:, AS_GIVEN], s[:, columns].min(1) + margin)


RULES = {"as given (bundled)": lowest((1.0,)), "lowest of 0.9, 1, 1.11": lowest((0.9, 1.0, 1.11)),
         "lowest of all five": lowest(ZOOMS), "lowest of 1, 1.11, 1.25": lowest((1.0, 1.11, 1.25)),
         "lowest of 0.8, 0.9, 1": lowest((0.8, 0.9, 1.0)),
         "lowest of 0.9, 1, 1.11, another zoom only 0.5 below": lowest((0.9, 1.0, 1.11), 0.5),
         "lowest of 0.9, 1, 1.11, another zoom only 1.0 below": lowest((0.9, 1.0, 1.11), 1.0)}


def zoom_scores(detector, files, family) -> np.ndarray:
    """(n, len(ZOOMS)) image scores of `files` (perturbed by `family`) at each zoom of their field of view."""
    out = []
    size = detector.input_size
    for i, f in enumerate(files):
        image = read_radiograph(f)
        pixels = (perturb(image, family, i) if family else image).pixels[0].astype(np.float32)
        base = resize(pixels, (WORKING_SIZE, WORKING_SIZE))
        xs = np.stack([to_model_input(reframed(base, scale=z), size) for z in ZOOMS])
        lungs = np.stack([fields.mask for fields in detector.anatomy.fields(xs, detector.lung_prior)])
        out.append(detector.scorer.score(xs, lungs).score)
    return np.array(out)


def scored(model: str, saved: Path) -> dict[str, np.ndarray]:
    """Every image's score at every zoom: `{shift}_normal`, `{shift}_pneumonia`, `other_{name}`; read back
    from `saved` where an earlier run left it."""
    if saved.exists():
        return dict(np.load(saved))
    detector = AnomalyDetector.load(model, device="cpu")
    normals, pneumonia = (list_inputs([folder]) for folder in DEV[model])
    scores = {f"{family or 'clean'}_{kind}": zoom_scores(detector, files, family)
              for family in SHIFTS for kind, files in (("normal", normals), ("pneumonia", pneumonia))}
    scores.update({f"other_{name}": zoom_scores(detector, list_inputs([folder]), None)
                   for name, folder in OTHER_NORMALS.get(model, {}).items()})
    np.savez(saved, **scores)
    return scores


def flagged(x, threshold) -> str:
    return f"{np.mean(x > threshold):.1%}"


def main(model: str = "pediatric") -> None:
    scores = scored(model, ROOT / "runs" / f"scale_search_{model}.npz")
    shifts = [family or "clean" for family in SHIFTS]
    others = [k for k in scores if k.startswith("other_")]
    print(f"model {model}: {len(scores['clean_normal'])} dev normals, {len(scores['clean_pneumonia'])} dev pneumonia\n")
    print(f"Threshold per rule at the clean dev normals' {SHARE:.0%} quantile:\n")
    print("| image score | clean: AUROC / normals / pneumonia flagged | `fov` | `zoom_gamma` | normals' mean shift under "
          "`fov`, `zoom_gamma` (clean deviations) |" + "".join(f" {k[6:]} normals flagged |" for k in others))
    print("|---|---|---|---|---|" + "---|" * len(others))
    for rule, score in RULES.items():
        clean_n = score(scores["clean_normal"])
        threshold = np.quantile(clean_n, SHARE)
        cells = []
        for family in shifts:
            n, p = score(scores[f"{family}_normal"]), score(scores[f"{family}_pneumonia"])
            auroc = roc_auc_score(np.r_[np.zeros(len(n)), np.ones(len(p))], np.r_[n, p])
            cells.append(f"{auroc:.3f} / {flagged(n, threshold)} / {flagged(p, threshold)}")
        moved = [(score(scores[f"{f}_normal"]).mean() - clean_n.mean()) / clean_n.std() for f in shifts[1:]]
        print(f"| {rule} | " + " | ".join(cells) + " | " + ", ".join(f"{m:+.2f}" for m in moved) + " |"
              + "".join(f" {flagged(score(scores[k]), threshold)} |" for k in others))
    for family in shifts[1:]:
        print(f"\nThreshold per rule at the `{family}` dev normals' {SHARE:.0%} quantile (a site that calibrated "
              "on its own shifted normals); normals / pneumonia flagged:\n")
        print("| image score | " + " | ".join(f"{f}" for f in shifts) + " |\n|---|" + "---|" * len(shifts))
        for rule, score in RULES.items():
            threshold = np.quantile(score(scores[f"{family}_normal"]), SHARE)
            print(f"| {rule} | " + " | ".join(f"{flagged(score(scores[f'{f}_normal']), threshold)} / "
                                               f"{flagged(score(scores[f'{f}_pneumonia']), threshold)}" for f in shifts) + " |")


if __name__ == "__main__":
    main(*sys.argv[1:])
