"""Which lung field should take the `sides` heat: the one that departs most from its own normal
density either way, or the denser one? Measured on seeded phantoms drawn on normals (no label read),
as `sslanomaly evaluate --phantoms` draws them; the phantom's side is the truth.

    .venv/bin/python scripts/heat_side_study.py MODEL NORMALS_DIR [N]

For each one-sided kind, over the first N normals (default 40): how many phantoms raise `sides`
beyond SIDES_FROM (where the heat is drawn), and of those how many each rule puts on the phantom's side.
"""

from __future__ import annotations

import sys


from SSLAnomalyLib.core.detection.detector import AnomalyDetector
from SSLAnomalyLib.core.model.scoring import SIDES, SIDES_FROM
from SSLAnomalyLib.core.reading.images import list_inputs, read_radiograph
from SSLAnomalyLib.evaluation.phantom_evaluation import drawn_lungs, phantom_on, phantom_seed

KINDS = [("whiteout", "hemithorax"), ("effusion", "large"), ("consolidation", "lobar"), ("pneumothorax", "large")]


def main() -> None:
    if len(sys.argv) not in (3, 4):
        raise SystemExit(__doc__)
    detector = AnomalyDetector.load(sys.argv[1])
    files = list_inputs([sys.argv[2]])[: int(sys.argv[3]) if len(sys.argv) == 4 else 40]
    normal = {f: detector.scorer.component_stats[f] for f in ("field_left", "field_right")}  # (mean, spread)
    print("| kind | phantoms | heat drawn | on its side: larger departure either way | on its side: denser field |")
    print("|---|---|---|---|---|")
    for kind, size in KINDS:
        drawn = either = denser = n = 0
        for i, f in enumerate(files):
            image = read_radiograph(f)
            try:
                altered, phantom = phantom_on(image, kind, size, drawn_lungs(detector, image), phantom_seed(0, kind, size, i))
            except ValueError:  # lung fields that leave no place for it, as evaluate --phantoms skips it
                continue
            n += 1
            prepared = detector.prepare(altered)[0]
            s = detector.scorer.score(prepared.image01[None], prepared.lung[None])
            if s.standardised[SIDES][0] <= SIDES_FROM:
                continue
            z = [(s.components[c][0] - normal[c][0]) / normal[c][1] for c in ("field_left", "field_right")]
            half = phantom.region_mask.shape[1] // 2
            side = 0 if phantom.region_mask[:, :half].sum() > phantom.region_mask[:, half:].sum() else 1
            drawn += 1
            either += (0 if abs(z[0]) >= abs(z[1]) else 1) == side
            denser += (0 if z[0] >= z[1] else 1) == side
        print(f"| {kind} {size} | {n} | {drawn} | {either} | {denser} |")


if __name__ == "__main__":
    main()
