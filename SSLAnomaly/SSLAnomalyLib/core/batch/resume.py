"""What an earlier run of a batch finished, and whether it still holds (`--resume`).

`OUT/batch_index.json` maps every case name to its input and, once the case is done, to the
identity of the input file its results came from (size and SHA-256 of its bytes) and the findings
JSON's `image_id`. A result is kept only if the file still holds the same bytes: a size and a
modification time say nothing of whose image it is (an export unzipped again over the same names gives
another patient's file the same size and, to the second, the same time). Where the index has no record
(the run that wrote the result was killed first), the input is read and its image identity compared
with the result's `image_id`. An input given once relative and once absolute is the same input.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

from SSLAnomalyLib.core.files.atomic import atomic_write_text
from SSLAnomalyLib.core.files.digest import sha256
from SSLAnomalyLib.core.files.json_text import dumps, visible

BATCH_INDEX = "batch_index.json"


@dataclass(frozen=True)
class FileIdentity:
    size: int
    sha256: str

    @classmethod
    def of(cls, path) -> "FileIdentity | None":
        """The identity of a regular file (None for anything else: it is then judged by its pixels)."""
        try:
            st = os.stat(path)
            if not Path(path).is_file():
                return None
            digest = sha256(path)
        except OSError:
            return None
        return cls(st.st_size, digest)

    def still(self, path) -> bool:
        """Whether `path` still holds this file: the same bytes (a size that differs says no at once)."""
        try:
            if os.stat(path).st_size != self.size:
                return False
        except OSError:
            return False
        now = FileIdentity.of(path)
        return now is not None and now.sha256 == self.sha256


def same_input(earlier: str, now: str) -> bool:
    """Whether two inputs as given name one file (`in/a.dcm` and `/data/in/a.dcm` from /data). Only
    a shortcut to the check of the bytes, which decides whether a result is kept. A name that is not UTF-8
    is recorded as json_text writes it (`visible`), and compared so."""
    return visible(earlier) == visible(now) or os.path.realpath(earlier) == os.path.realpath(now)


class BatchIndex:
    """The output folder's `batch_index.json`, kept across runs: {name: {"input", and once done
    "size", "sha256", "image_id"}}."""

    def __init__(self, out_dir) -> None:
        self.path = Path(out_dir) / BATCH_INDEX
        self.rows: dict[str, dict] = {}
        try:
            self.rows = {row["name"]: row for row in json.loads(self.path.read_text(encoding="utf-8"))}
        except (OSError, ValueError, KeyError, TypeError):
            pass  # none yet, or unreadable: every result is then judged by its input's pixels

    def start(self, inputs: dict[str, str], redo) -> None:
        """Record this batch's {name: input}; the cases in `redo` lose their record of a finished
        result until they are done again (so a killed run never leaves a stale record)."""
        for name, given in inputs.items():
            row = self.rows.get(name, {})
            kept = name not in redo and same_input(row.get("input", ""), given)
            self.rows[name] = dict(row, input=given) if kept else {"name": name, "input": given}
        self.save()

    def done(self, name: str, given: str, identity: FileIdentity | None, image_id: str) -> None:
        self.rows[name] = {"name": name, "input": given, **(asdict(identity) if identity else {}), "image_id": image_id}

    def made_from_other_files(self, cases, finished: Callable[[str], dict | None]) -> list[tuple[str, str, str]]:
        """(name, earlier input, this input) of each of `cases` whose finished result here is another image's. A
        file is judged by its bytes: a new batch of images named alike (day2/IM-0001.dcm after day1/IM-0001.dcm)
        would replace another patient's results; the same bytes moved elsewhere are the same image. Where the
        index has no record of the bytes a result came from (a run killed after it started redoing that name, an
        index lost), or the image is held in memory (a Slicer volume, whose input is its name: 'IM-0001' repeats
        across patients), the result's own findings document (`finished(name)`) says: its input, else the
        image it names against this input's pixels."""
        found = []
        for case in cases:
            row = self.rows.get(case.name, {})
            if "sha256" in row and case.path is not None:
                if row.get("input") != case.input:
                    now = FileIdentity.of(case.path)
                    if now is not None and now.sha256 != row["sha256"]:
                        found.append((case.name, row["input"], case.input))
            elif (done := finished(case.name)) is not None and (
                    case.path is None or not same_input(str(done.get("input", "")), case.input)):
                if _other_image(case, done.get("image_id")):
                    found.append((case.name, f"{done.get('input')} (another image)", case.input))
        return found

    def save(self) -> None:
        atomic_write_text(self.path, dumps([self.rows[n] for n in sorted(self.rows)], indent=1))

    def still_holds(self, name: str, given: str, path, image_id: str, read_identity: Callable[[], str]) -> bool:
        """Whether a finished result (`image_id`) of case `name` is still the result of its input."""
        row = self.rows.get(name, {})
        if path is not None and same_input(row.get("input", ""), given) and row.get("image_id") == image_id \
                and "sha256" in row:
            return FileIdentity(row["size"], row["sha256"]).still(path)
        try:  # no record of the file the result came from: compare the image itself
            same = read_identity() == image_id
        except Exception:  # unreadable now: it is done again, and fails with its reason
            return False
        if same:
            self.done(name, given, FileIdentity.of(path) if path is not None else None, image_id)
        return same


def _other_image(case, image_id: str | None) -> bool:
    """Whether `case` holds another image than `image_id` (False where there is none, or the case cannot be read
    now: it fails when its turn comes, with its reason)."""
    if not image_id:
        return False
    try:
        return case.read().identity != image_id
    except Exception:
        return False
