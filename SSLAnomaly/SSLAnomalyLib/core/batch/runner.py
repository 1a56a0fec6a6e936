"""The one batch runner: `sslanomaly detect`, the Slicer Logic's `detectBatch` and the Dask driver
all run their batches through it, so that they behave alike.

A batch into an output folder: takes the folder's lock, removes what killed runs left, records
every case in `batch_index.json`, keeps with `resume` the results an earlier run finished (of the
same input file, model, lung network and thresholds, with every file the options promise), logs each
failure as it happens (failures.log, appended), sets aside what an earlier run left under a failed
case's name (a case written sets aside what it does not write again itself, before its findings JSON
marks it done: case.write_case), and at the end checks the batch as a whole against the calibration
normals (drift) and writes `worklist.csv`. Interrupted (Ctrl-C, SIGTERM, a full disk), it still releases
the lock, leaves no temporary file and writes the index and worklist of what it finished. `run_batch`
runs the cases here, reading ahead and writing behind (core/batch/pipeline.py); the Dask driver runs
them on a cluster and reports each row back to the same `Batch`.
"""

from __future__ import annotations

import json
import os
from contextlib import closing, contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path

from SSLAnomalyLib.core.batch.case import (DISK_FULL, Case, CaseRow, failed_row, load_case, promised, same_model,
                                           same_spacing, same_thresholds, score_case, unsealed, write_case)
from SSLAnomalyLib.core.batch.options import BatchOptions
from SSLAnomalyLib.core.batch.own_files import FAILURE_LOG, refuse_foreign_files
from SSLAnomalyLib.core.batch.pipeline import WriteBehind, read_ahead
from SSLAnomalyLib.core.batch.resume import BatchIndex
from SSLAnomalyLib.core.detection.detector import AnomalyDetector
from SSLAnomalyLib.core.files.atomic import remove_leftovers
from SSLAnomalyLib.core.files.errors import PathError
from SSLAnomalyLib.core.results.drift import warn_batch
from SSLAnomalyLib.core.results.export_owner import incomplete, reviewed_export
from SSLAnomalyLib.core.results.outputs import (LOCK, append_failure, case_files, case_paths, first_few, output_folder,
                                                output_lock, shown, unique_case_names)
from SSLAnomalyLib.core.results.set_aside import set_aside, set_aside_earlier, unfinished
from SSLAnomalyLib.core.results.worklist import WORKLIST, worklist_row, write_worklist

INDEX_EVERY = 100  # finished cases between saves of the index (those a killed run's resume reads again)


class DiskFull(PathError):
    """The output folder's disk is full: the batch stops (every later case would fail alike)."""


class FolderGone(PathError):
    """The output folder was removed (or another put in its place) while the batch ran: the batch stops,
    writing nothing more there (its index and worklist would list results that are gone with the folder)."""


class BatchEvents:
    """What a front end shows of a batch; each call comes on the thread that runs the batch."""

    def started(self, todo: int, kept: int) -> None:
        """`todo` cases to run, `kept` finished by an earlier run (--resume)."""

    def case_done(self, row: CaseRow, done: int, todo: int) -> bool | None:
        """A case is written (or failed: `row.error`); returning False stops the batch."""

    def warning(self, text: str) -> None:
        """Said once for the batch (drift, inputs without pixel spacing)."""


@dataclass
class BatchReport:
    out: Path
    rows: list[CaseRow] = field(default_factory=list)  # this run's cases, as they finished
    kept: list[str] = field(default_factory=list)      # case names an earlier run had finished
    todo: int = 0
    drift: str | None = None

    @property
    def failures(self) -> list[CaseRow]:
        return [r for r in self.rows if r.error]

    def summary(self) -> str:
        done = len(self.rows) - len(self.failures)
        return (f"{done} of {self.todo} input(s) written to {self.out}"
                + (f" ({len(self.kept)} already done)" if self.kept else "")
                + (f"; {len(self.failures)} failed, listed in {self.out / FAILURE_LOG}" if self.failures else "")
                + f"; worklist {self.out / WORKLIST}")


class Batch:
    """The bookkeeping of one batch in its output folder, wherever its cases run."""

    def __init__(self, cases: list[Case], out: Path, options: BatchOptions, detector: AnomalyDetector,
                 events: BatchEvents) -> None:
        self.out, self.options, self.events = out, options, events
        remove_leftovers(out)
        self.index = BatchIndex(out)
        self._earlier = {c.name: self._finished(c.name) for c in cases}  # each result here at the start, read once
        kept = {c.name for c in cases if options.resume and self._still_holds(c, detector)}
        self.todo = [c for c in cases if c.name not in kept]
        self._refuse_replacing_other_images()
        unsealed_reviews = self._unsealed_reviews(detector) if options.resume else []
        self._refuse_replacing_reviews(unsealed_reviews)
        refuse_foreign_files(out, options)
        self._set_aside(unsealed_reviews)  # after every refusal: nothing moves in a batch that is refused
        self._set_aside_unfinished()
        if options.batch_index:
            self.index.start({c.name: c.input for c in cases}, redo={c.name for c in self.todo})
        if options.failures_log:  # every input without results is tried again, so the log starts afresh
            (out / FAILURE_LOG).unlink(missing_ok=True)
        self.report = BatchReport(out, kept=sorted(kept), todo=len(self.todo))
        self.written, self._folder = 0, _identity(out)
        events.started(len(self.todo), len(kept))

    def _refuse_replacing_other_images(self) -> None:
        """A result in the folder is another image's (same name, another file or volume): replacing it
        would leave a reader, a worklist or a PACS link to it looking at another patient. Refused
        before anything is written, naming the first few."""
        found = self.index.made_from_other_files(self.todo, self._earlier.get)
        others = [other for other in found if case_paths(self.out, other[0])["findings"].exists()]
        if others:
            named = first_few([f"'{name}' of {earlier} (this batch: {now})" for name, earlier, now in others])
            raise PathError(self.out, f"holds results of other images under the names this batch would write: "
                                      f"{named}; give another output folder, or move those results first")

    def _refuse_replacing_reviews(self, moved: list[str]) -> None:
        """A findings JSON with a review, or any other file of a reader's Slicer export (its record says so: a
        CSV, markups or DICOM SR exported without the JSON), is the reader's work (decisions, notes, own
        findings): detecting again would replace it with the model's findings alone. Refused before anything is
        written, naming the first few; those to be `moved` aside are not."""
        reviewed = [c.name for c in self.todo if c.name not in moved
                    and ("review" in (self._earlier[c.name] or {}) or reviewed_export(self.out, c.name))]
        if reviewed:
            raise PathError(self.out, f"holds a reader's reviewed findings (exported from Slicer) under the names this "
                                      f"batch would write: {first_few([repr(n) for n in reviewed])}; detecting again "
                                      "would replace the review: give another output folder")

    def _unsealed_reviews(self, detector: AnomalyDetector) -> list[str]:
        """The cases to redo whose result is a reader's review that names no seal (`unsealed`: exported from a
        Slicer scene saved before results recorded them) but this model's id and thresholds. `--resume` cannot
        keep it (another folder of that id may have made it), and refusing the folder left a reader unable to
        finish the batch there without moving the review by hand."""
        def unsealed_review(done: dict) -> bool:
            try:
                return "review" in done and unsealed(done) and same_thresholds(done, detector)
            except (KeyError, TypeError):
                return False

        return [c.name for c in self.todo if unsealed_review(self._earlier[c.name] or {})]

    def _set_aside(self, reviews: list[str]) -> None:
        """Move each of these reviews, with the files beside it under its case's name, to
        `OUT/set_aside/<name>.<UTC time>/` (never replaced, never deleted), said as a warning."""
        for name in reviews:
            folder = set_aside(self.out, name, [p for p in case_files(self.out, name) if os.path.lexists(p)])
            self.events.warning(f"'{shown(name)}': a reader's review exported from Slicer before findings named their "
                                f"model's seal (model_sha256), so --resume cannot tell it is this model's: it was "
                                f"moved, with the files under its name, to {shown(folder)}, and the case is "
                                "detected again")

    def _set_aside_unfinished(self) -> None:
        """Move what a batch left of each case to redo that it did not finish (`unfinished`: a heatmap without a
        findings JSON, after a full disk) to `OUT/set_aside/`, as a failed case's results are, said as a warning:
        every front end then detects it again, a Slicer batch without overwrite too."""
        for case in self.todo:
            if files := unfinished(self.out, case.name):
                folder = set_aside(self.out, case.name, files)
                self.events.warning(f"'{shown(case.name)}': {', '.join(shown(p.name) for p in files)}, left by a "
                                    f"batch that did not finish the case (no findings JSON), may be another image's, "
                                    f"and were moved to {shown(folder)}; the case is detected again")

    def _finished(self, name: str) -> dict | None:
        """The findings document of a result in the folder, or None (none there, or unreadable)."""
        try:
            done = json.loads(case_paths(self.out, name)["findings"].read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return done if isinstance(done, dict) else None

    def _still_holds(self, case: Case, detector: AnomalyDetector) -> bool:
        """Whether an earlier result of `case` is of the image it holds now (the same bytes, or else the same
        pixels, under whatever path it was given), by this model folder and lung network at these thresholds
        (`same_model`), with every file these options promise, and a findings JSON the worklist and drift check
        can read (one edited or cut short by hand ended the resumed batch in a KeyError after all its work), and
        no Slicer export under its name that is not the set its record lists (export_owner.incomplete)."""
        if not all(p.exists() for p in promised(self.out, case.name, self.options)) or incomplete(self.out, case.name):
            return False
        done = self._earlier[case.name]
        if done is None:
            return False
        try:
            worklist_row(case.name, done)
            same_run = same_model(done, detector) and same_spacing(done, self.options)
        except (ValueError, KeyError, TypeError):
            return False
        return same_run and self.index.still_holds(case.name, case.input, case.path, done.get("image_id"),
                                                   lambda: case.read().identity)

    def record(self, row: CaseRow) -> bool:
        """Log and report one finished case; False when the front end stops the batch. A full disk
        ends the batch (DiskFull names the folder), and so does the folder removed (FolderGone)."""
        if _identity(self.out) != self._folder or (self.options.lock and not (self.out / LOCK).exists()):
            raise FolderGone(self.out, f"was removed while the batch ran (or replaced, or its lock {LOCK} deleted): "
                                       f"{self.written} result(s) written before went with it and the batch stopped; "
                                       "run it again (resume keeps what is still there)")
        self.report.rows.append(row)
        if row.fatal:
            raise DiskFull(self.out, f"No space left on device (writing {row.name}: {row.error}); "
                                     f"{self.written} of {self.report.todo} input(s) were written: "
                                     "free some space and run again with --resume to finish")
        if row.error and self.options.overwrite and (note := set_aside_earlier(self.out, row.name)):
            row.error += f"; {note}"  # a failed case has no result: nothing under its name is its
        if row.error and self.options.failures_log:
            append_failure(self.out / FAILURE_LOG, row.input, row.error)
        if row.document is not None:
            self.index.done(row.name, row.input, row.identity, row.document["image_id"])
            self.written += 1
            if self.options.batch_index and self.written % INDEX_EVERY == 0:
                self.index.save()
        return self.events.case_done(row, len(self.report.rows), self.report.todo) is not False

    def finish(self, complete: bool) -> BatchReport:
        """The index, the drift check (only over a complete batch) and the worklist, from the
        findings JSONs of the cases kept from an earlier run and of those this run wrote; and what
        writers that died meanwhile left half-written (a Dask worker killed mid-case)."""
        remove_leftovers(self.out)
        if self.options.batch_index:
            self.index.save()
        documents = {r.name: r.document for r in self.report.rows if r.document is not None}
        for name in self.report.kept:
            if (done := self._finished(name)) is not None:  # else gone since the start: left out of both
                documents[name] = done
        if complete and self.options.drift_check:
            self.report.drift = warn_batch((case_paths(self.out, n)["findings"], d["percentile"])
                                           for n, d in documents.items())
            if self.report.drift:
                self.events.warning(self.report.drift)
        no_spacing = sum(r.no_spacing for r in self.report.rows)
        if no_spacing and not self.options.spacing:
            self.events.warning(f"{no_spacing} input(s) have no pixel spacing of their own (PNG, JPEG, or DICOM "
                                "without it): 1.0 mm per pixel was assumed for area_mm2 and the heatmap's geometry; "
                                "give the detector's pixel spacing with --spacing MM")
        if self.options.worklist:
            write_worklist(self.out, documents)
        return self.report


@contextmanager
def open_batch(cases: list[Case], out, options: BatchOptions, detector: AnomalyDetector,
               events: BatchEvents | None = None):
    """A `Batch` in `out` for the duration, under the folder's lock; finished on the way out, also
    when interrupted or stopped by its front end before every case was done (then without the drift
    check, which needs the whole batch: over the cases done it wrote 'this batch of 23' into their
    findings JSONs, where the resumed batch then added its own)."""
    out = output_folder(out)
    with output_lock(out) if options.lock else nullcontext(), disk_full_names(out):
        batch = Batch(cases, out, options, detector, events or BatchEvents())
        try:
            yield batch
        except FolderGone:  # the folder there now is not the batch's: nothing more is written into it
            raise
        except BaseException:
            try:
                batch.finish(complete=False)
            except OSError:  # e.g. the disk is full: what is on it stays as it is
                pass
            raise
        batch.finish(complete=len(batch.report.rows) == batch.report.todo)


@contextmanager
def disk_full_names(out: Path):
    """A full disk met outside a case (the index, the worklist) named as DiskFull of the folder."""
    try:
        yield
    except OSError as e:
        if e.errno not in DISK_FULL:
            raise
        raise DiskFull(out, "No space left on device; free some space and run again with --resume to finish") \
            from None


def _identity(folder: Path) -> tuple | None:
    """Which folder is at `folder` now (None: none)."""
    try:
        st = folder.stat()
    except OSError:
        return None
    return st.st_dev, st.st_ino


def file_cases(files) -> list[Case]:
    """The cases of input files, named so that no result overwrites another."""
    return [Case(os.fsdecode(f), name, Path(f)) for f, name in zip(files, unique_case_names(files))]


def run_batch(cases: list[Case], out, detector: AnomalyDetector, options: BatchOptions,
              events: BatchEvents | None = None) -> BatchReport:
    """Detect on every case here: the next inputs are read and prepared on a thread while one is
    scored, and (with `options.background_writer`) its files written on another."""
    with open_batch(cases, out, options, detector, events) as batch:
        writer = WriteBehind(lambda loaded, result: write_case(loaded, result, batch.out, options)) \
            if options.background_writer else None
        loads = read_ahead(batch.todo, lambda case: load_case(case, detector, options), options.prefetch)
        interrupted = True
        try:
            with closing(loads):
                for loaded in loads:
                    if not all([batch.record(row) for row in _score(loaded, detector, options, batch.out, writer)]):
                        break
            interrupted = False
        finally:  # interrupted: only the case being written is finished
            rest = writer.close(abandon=interrupted) if writer else []
        for row in rest:
            batch.record(row)
    return batch.report


def _score(loaded, detector: AnomalyDetector, options: BatchOptions, out: Path, writer: WriteBehind | None):
    """Score one case and write it, here or by handing it to the writer; the rows finished meanwhile."""
    done = writer.finished() if writer else []
    try:
        result = score_case(loaded, detector, options)
    except Exception as e:  # the case's own failure: reported in its turn
        return done + [failed_row(loaded.case, e)]
    if writer is None:
        return [write_case(loaded, result, out, options)]
    writer.put(loaded, result)
    return done + writer.finished()
