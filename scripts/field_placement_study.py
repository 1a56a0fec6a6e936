"""How often does the lung network draw a field away from where lungs lie? Per folder, over the images whose
network fields pass every other plausibility check: the share of each side's lung region (the model's
training-normal prior at `PRIOR_SUPPORT`) that the network's field on that side covers, its lowest
quantiles, and how many images detection gives a mirrored field (one side under `MIN_PRIOR_COVERAGE`)
or a fallback (both sides). Run on normals, it is what `MIN_PRIOR_COVERAGE` was
set on (no normal of a clean set should reach it); on abnormal folders it only reports.

    .venv/bin/python scripts/field_placement_study.py FOLDER [FOLDER ...] [--model adult] [--worst 3]
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter

import numpy as np

from SSLAnomalyLib.core.anatomy.lung_network import MIN_PRIOR_COVERAGE, side_coverage, two_lung_fields
from SSLAnomalyLib.core.detection.detector import AnomalyDetector
from SSLAnomalyLib.core.reading.images import list_inputs, read_radiograph


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folders", nargs="+")
    parser.add_argument("--model", default="adult")
    parser.add_argument("--worst", type=int, default=3, help="name the files of the lowest coverage")
    args = parser.parse_args()
    detector = AnomalyDetector.load(args.model, device="cpu")
    print(f"model {detector.model_id}; lung network {detector.anatomy.model_id}")
    for folder in args.folders:
        files = list_inputs([folder])
        coverage, judged, sources, by_rule = [], [], Counter(), Counter()
        for f in files:
            prepared = detector.prepare(read_radiograph(f))[0]
            drawn, why, _ = two_lung_fields(detector.anatomy.probability(prepared.image01[None])[0])
            sources[prepared.fields.source] += 1
            if why:  # a fallback for another reason: not this rule's to judge
                continue
            sides = side_coverage(drawn, detector.lung_prior)
            coverage.append(min(sides))
            judged.append(f)
            by_rule[{0: "kept", 1: "one side mirrored", 2: "both away: fallback"}[
                sum(c < MIN_PRIOR_COVERAGE for c in sides)]] += 1
        coverage = np.array(coverage)
        print(f"{folder}: {len(files)} images, lung fields by source {dict(sources)}; of the {len(judged)} whose "
              f"network fields passed every other check: {dict(by_rule)}; their lower side's coverage, "
              "quantiles 0/1/5/50 %: " + " / ".join(f"{q:.3f}" for q in np.percentile(coverage, [0, 1, 5, 50])))
        for i in np.argsort(coverage)[:args.worst]:
            print(f"    {judged[i].name}: {coverage[i]:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
