"""Whose export a folder holds under a name. Volume names repeat across patients ('IM-0001'), so a
case's files are only ever written over, or added to, by an export of the same image.

`<name>.findings.json` names its image, but a case exported without it (CSV alone) named none and
could then be overwritten by nobody, not even by its own image. So every Slicer export also writes
`<name>.export.json`, {"image_id"}: the image is the one the findings JSON names where it names one
(the command line writes no record, and the JSON is the case's main file), else the one the record names.

An export's files are moved into place one after another, so an interrupted one can leave the new review's
CSV beside the earlier review's SEG. The record is written before the first move and lists every file of the
set with its SHA-256 (null: none there), so a set that is not what its record lists is `incomplete`.
"""

from __future__ import annotations

import json
from pathlib import Path

from SSLAnomalyLib.core.files.atomic import atomic_write_text
from SSLAnomalyLib.core.files.digest import sha256

FINDINGS_SUFFIX = ".findings.json"
RECORD_SUFFIX = ".export.json"
EXPORT_SUFFIXES = {"json": FINDINGS_SUFFIX, "csv": ".findings.csv", "heatmap": ".heatmap.nrrd",
                   "mrk": ".findings.mrk.json", "seg": ".findings.seg.nrrd", "lungs": ".lungs.seg.nrrd", "mrb": ".mrb",
                   "dicom_seg": ".seg.dcm", "dicom_sr": ".sr.dcm"}  # each export format's file, `<name><suffix>`


def check_owner(out_dir, name: str, suffixes, image_id: str) -> None:
    """Refuse (FileExistsError) to write the export of `image_id` as `name` (its files: `suffixes`, written
    or not) into `out_dir` where the findings JSON there or, without one naming an image, the record names
    another image; or where a file of the set is there and neither names this one (an export of before the
    record, or a damaged one: it may be another image's, nothing says it is not)."""
    folder = Path(out_dir)
    findings_json, record = folder / f"{name}{FINDINGS_SUFFIX}", folder / f"{name}{RECORD_SUFFIX}"
    named = [(path, owner) for path in (findings_json, record) if (owner := _image_named(path))]
    source, owner = named[0] if named else (None, None)
    if owner and owner != image_id:
        raise FileExistsError(f"not overwriting {source}: it is the export of another image ({owner[:40]}), not "
                              f"of this one ({image_id[:40]}); export into another folder")
    existing = next((path for path in [*(folder / f"{name}{s}" for s in suffixes), record] if path.exists()), None)
    if existing is not None and owner != image_id:
        raise FileExistsError(f"not overwriting {existing}: neither {findings_json.name} nor {record.name} beside it "
                              "names this image, so it may be another image's export; export into another folder")


def record_owner(out_dir, name: str, image_id: str, files: dict[str, Path], review: bool = True,
                 keep_listed: bool = True) -> Path:
    """Write the record that the export named `name` in `out_dir` is the image `image_id`'s, whether it is a
    reader's (`review`: the panel's export, not a batch's), which no batch writes over (`reviewed_export`), and
    its files: {file name: the path of its bytes, which may be yet to move there (staged), or one not there
    (the set has no such file)}; with `keep_listed`, the earlier record's other files stay listed as they were."""
    record = Path(out_dir) / f"{name}{RECORD_SUFFIX}"
    listed = _listed(record) if keep_listed else {}
    listed.update({file: _sha256(path) for file, path in files.items()})
    return atomic_write_text(record, json.dumps({"image_id": image_id, **({"review": True} if review else {}),
                                                 "files": listed}))


def incomplete(out_dir, name: str) -> str | None:
    """Why the export named `name` in `out_dir` is not the set its record lists (an export interrupted while
    moving its files into place, or a file changed since), or None (it is; a record of before the list, or
    none, has nothing to check against)."""
    listed = _listed(Path(out_dir) / f"{name}{RECORD_SUFFIX}")
    for suffix in EXPORT_SUFFIXES.values():
        path = Path(out_dir) / f"{name}{suffix}"
        if path.name in listed and _sha256(path) != listed[path.name]:
            state = "missing" if not path.exists() else ("not the export's" if listed[path.name] else "left over")
            return (f"the export '{name}' in {out_dir} is incomplete: {path.name} is {state} (an export interrupted "
                    f"while moving its files into place, or a file changed since); export it again to replace it")
    return None


def reviewed_export(out_dir, name: str) -> bool:
    """Whether the record of the export named `name` in `out_dir` says it is a reader's: its CSV, markups, DICOM
    SR... hold the reader's decisions and notes even where no findings JSON was exported beside them."""
    return _document(Path(out_dir) / f"{name}{RECORD_SUFFIX}").get("review") is True


def batch_export(out_dir, name: str) -> bool:
    """Whether the record of the export named `name` in `out_dir` is a batch's: it lists its files and is not a
    reader's. A record of before the list may be a reader's of before the mark; a damaged one says nothing."""
    record = _document(Path(out_dir) / f"{name}{RECORD_SUFFIX}")
    return isinstance(record.get("files"), dict) and record.get("review") is not True


def _listed(record: Path) -> dict[str, str | None]:
    """The files a record lists, {file name: SHA-256 or None}; empty where it lists none or cannot be read."""
    listed = _document(record).get("files")
    return dict(listed) if isinstance(listed, dict) else {}


def _document(path: Path) -> dict:
    """A record's or findings JSON's document; empty where there is none, or no readable one."""
    try:
        found = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return found if isinstance(found, dict) else {}


def _sha256(path: Path) -> str | None:
    """The file's SHA-256 (digest.sha256), or None where there is no file."""
    try:
        return sha256(path)
    except FileNotFoundError:
        return None


def _image_named(path: Path) -> str | None:
    """The image a findings JSON or record names; None where there is none, or no readable one."""
    named = _document(path).get("image_id")
    return named if isinstance(named, str) and named else None
