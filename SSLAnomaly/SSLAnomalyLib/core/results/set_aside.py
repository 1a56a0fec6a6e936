"""Earlier results moved out from under a name whose input now fails, or was redone without them. A
batch that redoes a case and cannot (its file now unreadable, or replaced by one that cannot be scored)
has no result for it: what an earlier run left under that name (findings JSON, heatmap, overlay...) may
be another image's, and a reader, a script or a PACS link opening `OUT/<name>.overlay.png` would take it
for this input's. So may a file the batch redoing it did not write again (`<name>.lungs.nrrd` of a run
with `--lungs`) beside its new results. A reader's review that names no model seal is moved too, by
`--resume` (the batch runner's `_set_aside`): resume cannot keep it, and detecting again would replace it. So is
what a batch stopped mid-case left of a case it did not finish (`unfinished`), by the next batch into the folder.
Those files are moved, never deleted (a reader's work may be among them), to
`OUT/set_aside/<name>.<UTC time>/`, keeping their names."""

from __future__ import annotations

import os
import time
from itertools import count
from pathlib import Path

from SSLAnomalyLib.core.results.export_owner import RECORD_SUFFIX, batch_export
from SSLAnomalyLib.core.results.outputs import LUNGS_SUFFIX, SUFFIXES, case_files, case_paths, shown

SET_ASIDE = "set_aside"


def set_aside_earlier(out_dir, name: str, written=()) -> str | None:
    """Set aside what an earlier run left under case `name` of the files a batch writes (`case_files`; a
    user's own file of another name stays) and this run does not write (`written`, file names; none for a
    failed case, which has no result); what its failure or warning says of it, or None where there was none."""
    earlier = [p for p in case_files(out_dir, name) if p.name not in written and os.path.lexists(p)]
    if not earlier:
        return None
    what = (f"{', '.join(shown(p.name) for p in earlier)}, left under its name by an earlier run and not written "
            "again by this one," if written else "the results an earlier run left under its name")
    try:
        return f"{what} may be another image's, and were moved to {shown(set_aside(out_dir, name, earlier))}"
    except OSError as e:  # e.g. the folder is read-only now: the batch goes on, and the reason says so
        return f"{what} may be another image's, and could not be moved aside ({e.strerror or e})"


def unfinished(out_dir, name: str) -> list[Path]:
    """The files a batch left under case `name` without finishing it (a full disk, a kill): no findings JSON,
    which a case writes last, and only the core's heatmap, overlay and lung fields, or any file of the case beside
    a batch's own export record (a Slicer batch's). Nobody's work, but they stopped a Slicer batch without
    overwrite, which refuses any file under a case's name. Empty where the case is finished or a file may be a
    reader's (a record of a reader's export, a damaged one, or a CSV or SR with none)."""
    out = Path(out_dir)
    files = [p for p in case_files(out, name) if os.path.lexists(p)]
    if os.path.lexists(case_paths(out, name)["findings"]):
        return []
    if os.path.lexists(out / f"{name}{RECORD_SUFFIX}"):
        return files if batch_export(out, name) else []
    core = {f"{name}{s}" for s in (*SUFFIXES[1:], LUNGS_SUFFIX)}
    return files if all(p.name in core for p in files) else []


def set_aside(out_dir, name: str, files: list[Path]) -> Path:
    """Move `files` (existing files of case `name` in `out_dir`) into a new folder of `OUT/set_aside`;
    that folder."""
    folder = _new_folder(Path(out_dir) / SET_ASIDE, f"{name}.{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}")
    for p in files:
        os.replace(p, folder / p.name)
    return folder


def _new_folder(root: Path, base: str) -> Path:
    """`root/base`, or `base-2`, `base-3`... where a folder of that name is there already (a case name
    is at most 200 bytes, so these stay within a file name's 255)."""
    root.mkdir(exist_ok=True)
    for k in count(1):
        folder = root / (base if k == 1 else f"{base}-{k}")
        try:
            folder.mkdir()
            return folder
        except FileExistsError:
            continue
