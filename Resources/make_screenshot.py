"""Makes the README's slice-view picture (Resources/Screenshots/slice_view.png) with the real pipeline
on the headless Slicer: a real radiograph from ../shared/data, detection with the bundled model at
its calibrated threshold, and Slicer's own slice view rendered offscreen.

    .venv/bin/python Resources/make_screenshot.py [--model pediatric] [--image PATH]
"""

import argparse
from pathlib import Path

from SSLAnomalyLib.core.detection.detector import AnomalyDetector
from SSLAnomalyLib.mrml.headless import start_headless_app
from SSLAnomalyLib.mrml.case import show_detection
from SSLAnomalyLib.mrml.render import render_slice_view
from SSLAnomalyLib.mrml.volumes import load_volume, volume_node_to_radiograph

REPO = Path(__file__).resolve().parents[1]
DEFAULT_IMAGE = REPO.parent / "shared" / "data" / "kermany_fullres" / "pneumonia" / "person628_bacteria_2505.jpeg"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="pediatric", help="the children's model for the default children's image")
    p.add_argument("--image", default=str(DEFAULT_IMAGE), help="a real chest radiograph")
    p.add_argument("--out", default=str(REPO / "Resources" / "Screenshots" / "slice_view.png"))
    args = p.parse_args()
    start_headless_app()
    volume = load_volume(args.image)
    result = AnomalyDetector.load(args.model, device="cpu").detect(volume_node_to_radiograph(volume))
    show_detection(volume, result)
    render_slice_view(volume, args.out, size=(600, 600))
    print(f"{args.out}: score {result.score:.3g} (threshold {result.threshold:.3g}), {len(result.findings)} finding(s)")


if __name__ == "__main__":
    main()
