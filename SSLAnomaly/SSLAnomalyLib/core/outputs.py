"""Writing one case's results: findings JSON, heatmap NRRD and overlay PNG, each atomically
(temporary file + rename) so an interrupted run never leaves a half-written result."""

from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path

from SSLAnomalyLib.core.atomic import atomic_path, atomic_write_text
from SSLAnomalyLib.core.findings_document import to_json
from SSLAnomalyLib.core.image import Radiograph
from SSLAnomalyLib.core.io import write_image
from SSLAnomalyLib.core.overlay import render_overlay

SUFFIXES = (".findings.json", ".heatmap.nrrd", ".overlay.png")
BATCH_INDEX = "batch_index.json"


def case_name(path) -> str:
    """File name without image suffixes (x.nii.gz -> x, IM-1.jpeg -> IM-1)."""
    name = Path(path).name
    for suffix in (".nii.gz", ".nrrd", ".nhdr", ".nii", ".mha", ".mhd", ".dcm", ".dicom", ".png",
                   ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".ima"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name


def unique_case_names(files) -> list[str]:
    """Case names that never collide: the file stem where no other input of the batch has it
    (compared without case, as some file systems compare names); otherwise the parent folder's name
    and the stem, numbered (-2, -3, ...) until it is taken by no other case."""
    stems = [case_name(f) for f in files]
    counts = Counter(s.lower() for s in stems)
    taken = {s.lower() for s in stems if counts[s.lower()] == 1}
    names = []
    for f, stem in zip(files, stems):
        if counts[stem.lower()] == 1:
            names.append(stem)
            continue
        base = f"{Path(f).parent.name}_{stem}"
        name, k = base, 2
        while name.lower() in taken:
            name, k = f"{base}-{k}", k + 1
        taken.add(name.lower())
        names.append(name)
    return names


def write_batch_index(out_dir, files, names) -> Path:
    """`batch_index.json` beside the results: which input each case name holds (kept across runs)."""
    path = Path(out_dir) / BATCH_INDEX
    index = {}
    if path.exists():
        try:
            index = {row["name"]: row["input"] for row in json.loads(path.read_text(encoding="utf-8"))}
        except (ValueError, KeyError, TypeError):
            index = {}
    index.update({n: os.fsdecode(f) for f, n in zip(files, names)})
    rows = [{"name": n, "input": i} for n, i in sorted(index.items())]
    return atomic_write_text(path, json.dumps(rows, indent=1))


def case_paths(out_dir, name: str) -> dict[str, Path]:
    out_dir = Path(out_dir)
    return {s.split(".")[1]: out_dir / f"{name}{s}" for s in SUFFIXES}


def write_case_outputs(result, image: Radiograph, out_dir, name: str) -> dict[str, Path]:
    """Write the three files of the contract; the findings JSON goes last and marks completion."""
    paths = case_paths(out_dir, name)
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    write_image(result.heatmap, paths["heatmap"], compress=False)  # gzip of float32: -15 % size, 30x the time
    k = max(range(image.shape[0]), key=lambda i: result.slice_scores[i]) if result.slice_scores else 0
    picture = render_overlay(image.pixels[k], result.heatmap.pixels[k], result, k)
    with atomic_path(paths["overlay"]) as tmp:
        picture.save(tmp, format="PNG", compress_level=1)  # +15 % size, a sixth of the time of the default 6
    atomic_write_text(paths["findings"], to_json(result.to_dict(image.source)))
    return paths
