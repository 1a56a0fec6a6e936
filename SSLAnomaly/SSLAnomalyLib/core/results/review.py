"""The radiologist's review of one case, autosaved as JSON beside the detection outputs.

While Slicer runs, the scene holds the review (attributes of the finding nodes, mrml/finding_rois.py);
this file is its crash-safe copy, rewritten atomically after every change, so that closing Slicer,
a crash or a killed process loses nothing that was saved. Without Slicer, the same file is the
review itself. An autosave never writes over a review its scene did not write or restore (one of
another session, a restore declined): that file is kept first, beside it (`keep_aside`), or added to the copy
kept so before (`add_to_kept`), so that the copies of declined restores do not pile up session after session.

    <name>.<image key>.review.json: {"format_version": 2, "input": path, "image_id": identity,
      "model": model id, "saved": ISO time,
      "findings": [{"id", "label", "status", "note", "origin", "score", "bbox_ijk", "slice_index",
                    "centroid_ras", "area_mm2", "model", "engine_label", "engine_bbox_ijk", "decided",
                    "decisions": [{"decided", "status", "label", "note", "bbox_ijk", "slice_index"}]}]}

`score`, `area_mm2` and `centroid_ras` are finite numbers (a NaN, which Python's json reads, could not be
exported); `status` is unreviewed | confirmed | rejected; `origin` is model (found by the detector) or reader
(added by the radiologist); a model finding's `model` (written by Slicer; absent: the review's `model`)
is the model that found it, not always the case's: a detection again with another model keeps what
the reader touched; `engine_label` and `engine_bbox_ijk` (written by Slicer) are what the detector
made of the finding, so a restore finds the detector's box and keeps a relabel or a move; `decided` (written
by Slicer) is when the reader last decided on the finding (status, label, note, box, or drew it), `now()`'s
form, empty where nothing was decided (or in a review saved before it was kept); `decisions` (written by Slicer)
is the audit trail behind it: each decision the reader made on the finding, oldest first, dated, with the finding as
it left it (a review saved before they were kept: its last decision alone, `decisions_of`). A restore keeps both.
No patient identity is stored: `input` is the path the user gave, and `image_id` names the image,
not the patient: "dicom:<SOPInstanceUID>" for DICOM, else "sha256:<hash of the pixels>". A review
is keyed by it (its file name carries a digest of it) and is only ever applied to the image it
names (`check_same_image`): DICOM volume names repeat across patients, so a name is never enough.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import time
from pathlib import Path

from SSLAnomalyLib.core.files.atomic import atomic_write_text
from SSLAnomalyLib.core.files.errors import PathError
from SSLAnomalyLib.core.files.json_text import dumps
from SSLAnomalyLib.core.results.outputs import fitted

FORMAT_VERSION = 2  # 2: image_id, and the file keyed by it
SUFFIX = ".review.json"
STATUSES = ("unreviewed", "confirmed", "rejected")
ORIGINS = ("model", "reader")


class ReviewError(PathError):
    """A review file that cannot be used (or not for this image), with the file and the reason."""


def review_path(out_dir, name: str, image_id: str) -> Path:
    """Where the review of the image `image_id`, shown as `name`, is autosaved: `name` for the
    reader (`file_name`), a digest of the identity so that two images of the same name never share a file."""
    return Path(out_dir) / f"{file_name(name)}.{_key(image_id)}{SUFFIX}"


def file_name(name: str) -> str:
    """A volume's name as one file name on every system: a character that is not safe there ('/' of
    '2: CHEST PA/LAT' would make it a folder, ':' is none on Windows) becomes '_', and a name near the file
    system's 255 bytes (a volume of a file so named) is cut as a batch's case names are (`fitted`), so that its
    autosave and export, suffixes added, are no 'File name too long'."""
    return fitted(re.sub(r"[^\w.\- ]", "_", name))


def find_review(out_dir, name: str, image_id: str) -> Path | None:
    """The autosaved review of the image `image_id`: the latest saved under any name (the same image
    shown as its file, then from the DICOM browser, or renamed, is autosaved under each name, and the
    file under `name` may be the older), the one under `name` on a tie; None where there is none.
    A review kept aside is found too, but only while it is the latest: the autosave that replaced it is newer."""
    exact = review_path(out_dir, name, image_id)
    saved = Path(out_dir).glob(f"*.{_key(image_id)}{SUFFIX}")
    return max(saved, key=lambda p: (p.stat().st_mtime_ns, p == exact), default=None)


def _key(image_id: str) -> str:
    return hashlib.sha256(image_id.encode()).hexdigest()[:16]


def check_same_image(review: dict, image_id: str, path) -> None:
    """Refuse (ReviewError) to apply a review to any image but the one it was saved for."""
    saved = review.get("image_id")
    if not saved:
        raise ReviewError(path, "the review names no image (saved by an older SSLAnomaly); it is not applied, "
                                "since it cannot be shown to belong to this image")
    if saved != image_id:
        raise ReviewError(path, f"the review belongs to another image ({saved[:40]}), not this one "
                                f"({image_id[:40]}); it is not applied")


def save_review(path, review: dict) -> Path:
    """Check and write the review atomically (a crash leaves the previous save or this one)."""
    path = Path(path)
    review = dict(review, format_version=FORMAT_VERSION, saved=now())
    try:
        _check(review)
    except ValueError as e:
        raise ReviewError(path, f"not saved: {e}") from None
    path.parent.mkdir(parents=True, exist_ok=True)
    return atomic_write_text(path, dumps(review, indent=1))


def now() -> str:
    """The time a review is saved or a decision made, as the files hold it (ISO 8601, to the second, with the
    UTC offset, so that a reader's times from two sites or a summer and a winter day read alike)."""
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


def decision(finding: dict, when: str) -> dict:
    """One of a finding's `decisions`: the finding as the reader's decision at `when` left it."""
    return {"decided": when, "status": finding["status"], "label": finding["label"], "note": finding["note"],
            "bbox_ijk": finding["bbox_ijk"], "slice_index": finding.get("slice_index", 0)}


def decisions_of(finding: dict) -> list[dict]:
    """The dated decisions on a saved finding, oldest first. A finding saved before they were kept, which dates its
    last decision alone: that one, as the finding holds it; none where nothing was decided."""
    if "decisions" in finding:
        return finding["decisions"]
    return [decision(finding, finding["decided"])] if finding.get("decided") else []


def reported(finding: dict) -> bool:
    """Whether a finding is in the case's segmentations and its SR: not rejected, and shown to the reader (an
    export's `shown`: a model finding the sensitivity slider hid was never seen, so it is no finding of the
    reader's report; the findings JSON and CSV keep it, marked). A finding without `shown` (the CLI's) is shown."""
    return finding["status"] != "rejected" and finding.get("shown", True)


def load_review(path) -> dict | None:
    """The saved review, or None where none was saved; a damaged file is an error, never ignored."""
    path = Path(path)
    if not path.exists():
        return None
    try:
        review = json.loads(path.read_text())
        if not isinstance(review, dict):
            raise ValueError("not a JSON object")
        if review.get("format_version", 0) > FORMAT_VERSION:
            raise ValueError(f"format version {review['format_version']} is newer than this SSLAnomaly supports")
        _check(review)
    except (ValueError, TypeError, UnicodeDecodeError) as e:  # JSONDecodeError is a ValueError
        raise ReviewError(path, f"not a readable review ({e})") from None
    return review


def keep_aside(path) -> Path:
    """Move the review file `path` to the first free '<name> (2).<key>.review.json', (3), ... beside it, before an
    autosave writes over it; returns where. It stays this image's review (`find_review`, `load_review`) and keeps
    its time; no review file is named so ('(' is no character of `file_name`), so no autosave ever writes there."""
    path = Path(path)
    name, key = _name_and_key(path)
    n = 2
    while (kept := path.with_name(f"{name} ({n}).{key}{SUFFIX}")).exists():
        n += 1
    return path.rename(kept)


def add_to_kept(path, kept) -> Path:
    """Move the review file `path` into `kept`, a copy `keep_aside` made of the same image's review earlier, rather
    than to a copy of its own: `kept` then holds the findings of both (`merged`), so reviews kept aside session after
    session make one file, and no decision is lost. Returns `kept`; a `kept` that is damaged or another image's is
    refused (ReviewError) and left as it is."""
    path, kept = Path(path), Path(kept)
    newer, older = load_review(path), load_review(kept)
    check_same_image(older, newer["image_id"], kept)
    save_review(kept, merged(newer, older))
    path.unlink()
    return kept


def merged(newer: dict, older: dict) -> dict:
    """`newer` with the findings of `older` that it does not hold as they are added after its own (under new ids, each
    naming its model): a restore puts the newer's on the detection's findings, and the older beside them."""
    def own(review: dict) -> list[dict]:
        return [dict(f, model=f.get("model") or review["model"]) for f in review["findings"]]

    findings = own(newer)
    held = [dict(f, id=0) for f in findings]
    for finding in own(older):
        if dict(finding, id=0) not in held:
            findings.append(dict(finding, id=max(f["id"] for f in findings) + 1 if findings else 1))
    return dict(newer, findings=findings)


def kept_copies(path) -> list[Path]:
    """The copies `keep_aside` made of the review file `path`, in name order."""
    path = Path(path)
    return sorted(copy for copy in path.parent.glob(f"*{SUFFIX}") if is_kept_copy(copy, path))


def is_kept_copy(copy, path) -> bool:
    """Whether `copy` is named as `keep_aside` names the copies it keeps of the review file `path`."""
    name, key = _name_and_key(Path(path))
    return Path(copy).parent == Path(path).parent and re.fullmatch(
        rf"{re.escape(name)} \(\d+\)\.{key}{re.escape(SUFFIX)}", Path(copy).name) is not None


def _name_and_key(path: Path) -> tuple[str, str]:
    return tuple(path.name[:-len(SUFFIX)].rsplit(".", 1))


def _check(review: dict) -> None:
    if not isinstance(review.get("model"), str):
        raise ValueError("no 'model': the model of a finding that names none is not known")
    findings = review.get("findings")
    if not isinstance(findings, list):
        raise ValueError("'findings' is not a list")
    for f in findings:
        _check_finding(f)
    ids = [f["id"] for f in findings]
    if len(set(ids)) != len(ids):
        raise ValueError("finding ids are not unique")


def _check_finding(f) -> None:
    if not isinstance(f, dict) or not isinstance(f.get("id"), int):
        raise ValueError(f"a finding without an integer id: {f!r}")
    if not isinstance(f.get("label"), str) or not f["label"].strip():
        raise ValueError(f"finding {f['id']} has no label")
    if f.get("status") not in STATUSES:
        raise ValueError(f"finding {f['id']}: status must be one of {', '.join(STATUSES)}, not {f.get('status')!r}")
    if f.get("origin") not in ORIGINS:
        raise ValueError(f"finding {f['id']}: origin must be one of {', '.join(ORIGINS)}")
    if not isinstance(f.get("note", ""), str):
        raise ValueError(f"finding {f['id']}: note is not text")
    if not isinstance(f.get("decided", ""), str):
        raise ValueError(f"finding {f['id']}: decided is not text")
    decisions = f.get("decisions", [])
    if not isinstance(decisions, list) or not all(
            isinstance(d, dict) and isinstance(d.get("decided"), str) and d.get("status") in STATUSES for d in decisions):
        raise ValueError(f"finding {f['id']}: decisions is not a list of dated decisions")
    if not isinstance(f.get("model", ""), str):
        raise ValueError(f"finding {f['id']}: model is not text")
    box = f.get("bbox_ijk")
    if not (isinstance(box, list) and len(box) == 4 and all(isinstance(v, int) for v in box)):
        raise ValueError(f"finding {f['id']}: bbox_ijk must be four integers")
    centroid = f.get("centroid_ras", [0, 0, 0])
    if not (_finite(f.get("score")) and _finite(f.get("area_mm2", 0)) and isinstance(centroid, list)
            and len(centroid) == 3 and all(map(_finite, centroid))):
        raise ValueError(f"finding {f['id']}: score, area_mm2 and centroid_ras must be finite numbers, which the "
                         f"findings JSON can hold (score {f.get('score')!r})")


def _finite(value) -> bool:
    """A number strict JSON can write: json reads NaN, Infinity and 1e999 as floats that the findings JSON
    (findings_json.to_json) refuses."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
