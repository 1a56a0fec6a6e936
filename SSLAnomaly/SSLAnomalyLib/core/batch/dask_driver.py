"""Batch detection on a Dask cluster, for sites whose batches outgrow one machine.

Dask schedules, balances and retries; nothing here is a home-made distributed engine. Only the
cases (file paths and names) travel to the workers and only their rows come back: each worker reads
its input from storage it shares with the others, keeps one detector per process (loaded on first
use) and writes the case's files into the shared output folder, exactly as `sslanomaly detect` does
(core/batch/case.process_case). A worker that does not see the driver's output folder (the one
holding the batch's lock) stops the batch before its first case, or fails each case it is given if it
joins later, and one that does not see an input fails that case: neither writes results to a disk
of its own that the driver never sees. The driver keeps the batch's books with the same runner as the
command line (core/batch/runner.py): lock, resume, failures log, index, drift check and worklist. At most
`in_flight` cases are queued at a time, so the scheduler's memory stays flat over any batch.

    from distributed import Client
    from SSLAnomalyLib.core.batch.dask_driver import detect_on_dask
    with Client("tcp://scheduler:8786") as client:          # or Client(LocalCluster(n_workers=2))
        report = detect_on_dask(client, ["/data/cxr"], "/data/out", model="/models/site")
"""

from __future__ import annotations

import contextlib
import os
import socket
import time
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path

from SSLAnomalyLib.core.batch.case import Case, CaseRow, failed_row, process_case
from SSLAnomalyLib.core.batch.options import BatchOptions
from SSLAnomalyLib.core.batch.runner import BatchEvents, BatchReport, file_cases, open_batch
from SSLAnomalyLib.core.files.errors import PathError
from SSLAnomalyLib.core.model_files import model_folder, registry
from SSLAnomalyLib.core.results.outputs import LOCK, batch_files

SHARED = ("the inputs, the model folder and the output folder must be on storage every worker shares, "
          "under the same path (see 'Scale-out' in docs/benchmarks.md)")


class NotShared(PathError):
    """A path the driver sees that a worker does not: on another host, a folder local to the driver
    (or one of that name on the worker's own disk)."""


@lru_cache(maxsize=2)
def _detector(model: str, device: str, state: tuple = ()):
    """One detector per process and model folder state (`model_folder.fingerprint`: a folder
    written again since is loaded again), loaded on its first task."""
    from SSLAnomalyLib.core.detection.detector import AnomalyDetector

    return AnomalyDetector.load(model, device=device)


def unseen(out_dir: Path, lock: str | None, path: Path | None = None) -> NotShared | None:
    """Why this worker cannot run the batch's cases: it does not see the driver's output folder (the
    folder there does not hold the driver's `lock`, when it has one) or `path` (an input, the model)."""
    def ours() -> bool:
        try:
            return out_dir.is_dir() and (lock is None or (out_dir / LOCK).read_text(encoding="utf-8") == lock)
        except OSError:
            return False

    missing = (out_dir if not _seen(ours, out_dir.parent, out_dir)
               else path if path is not None and not _seen(path.exists, path.parent) else None)
    return None if missing is None else NotShared(missing, f"the driver sees it but the Dask worker on host "
                                                           f"{socket.gethostname()} does not: {SHARED}")


RECHECK_AFTER_S = (0.0, 0.5, 2.0)  # a refusal waits 2.5 s; a worker that sees the files asks once


def _seen(check: Callable[[], bool], *folders: Path) -> bool:
    """`check()`, asked again after listing `folders` where it fails: an NFS client that looked a name
    up while it was absent takes it as absent until its folder's cached attributes expire (nfs(5),
    lookupcache: up to a minute by default), and opening the folder to list it revalidates them."""
    if check():
        return True
    for wait in RECHECK_AFTER_S:
        time.sleep(wait)
        for folder in folders:
            with contextlib.suppress(OSError):
                os.listdir(folder)
        if check():
            return True
    return False


def detect_one(case: Case, out_dir: str, model: str, device: str, options: BatchOptions, state: tuple = (),
               lock: str | None = None, seen: bool = False) -> CaseRow:
    """One case on a worker; a bad input is a row with its reason, not a failed task. `lock` is the
    output folder's lock as the driver wrote it; `seen`: the driver sees the input."""
    problem = unseen(Path(out_dir), lock, case.path if seen else None)
    if problem is not None:
        return failed_row(case, problem)
    return process_case(case, _detector(model, device, state), Path(out_dir), options)


def check_workers(client, out_dir: Path, lock: str | None, model: Path | None) -> None:
    """Refuse the batch, before any case is sent, where a worker does not see its output folder or
    `model` folder (the first such worker's NotShared): each case would fail there, or its results
    go to a disk the driver never reads."""
    blind = [problem for problem in client.run(unseen, out_dir, lock, model).values() if problem is not None]
    if blind:
        raise blind[0]


class WorkerDied(Exception):
    """Every worker that ran a case died in it (Dask's KilledWorker): that input's failure, since it
    may kill any worker again (a reader's crash, a memory blow-up), not the batch's end."""


def case_row(future, case: Case) -> CaseRow:
    """The row a case's task returned, or its failure where the task killed its workers."""
    from distributed import KilledWorker

    try:
        return future.result()
    except KilledWorker:
        return failed_row(case, WorkerDied("every Dask worker that ran this input died while running it (out of "
                                           "memory, or a crash in a native reader); see the workers' logs"))


def detect_on_dask(client, inputs, out_dir, model: str = "default", device: str = "auto",
                   in_flight: int | None = None, options: BatchOptions = BatchOptions(),
                   events: BatchEvents | None = None) -> BatchReport:
    """Detect on every input (files or folders, as `sslanomaly detect` takes them) with the
    cluster behind `client`; returns the batch's report (a row per case run). Paths travel to the
    workers absolute: a worker runs in a folder of its own (on another host, wherever it was
    started), where a relative `in/IM-0001.jpeg` is another image or none, and `out` another folder."""
    from distributed import as_completed

    # a bundled name travels as it is (each worker takes its own installation's model, as the command line
    # does: before a folder of that name where it runs); a folder travels absolute, like the inputs
    model = str(model) if registry.bundled(str(model)) else str(registry.resolve(model).absolute())
    in_flight = in_flight or 4 * max(1, sum(client.nthreads().values()))
    files, notice = batch_files(inputs, out_dir)
    files, out_dir = [Path(f).absolute() for f in files], Path(out_dir).absolute()
    events = events or BatchEvents()
    if notice:
        events.warning(notice)
    state = model_folder.fingerprint(model)  # the model as it is now, on the driver and every worker
    with open_batch(file_cases(files), out_dir, options, _detector(model, device, state), events) as batch:
        lock = (batch.out / LOCK).read_text(encoding="utf-8") if options.lock else None
        check_workers(client, batch.out, lock, None if registry.bundled(model) else Path(model))
        queue, cases = iter(batch.todo), {}

        def submit(case: Case):
            future = client.submit(detect_one, case, str(batch.out), model, device, options, state, lock,
                                   case.path.exists(), pure=False)
            cases[future.key] = case
            return future

        running = as_completed([submit(c) for _, c in zip(range(in_flight), queue)])
        try:
            for future in running:
                if not batch.record(case_row(future, cases.pop(future.key))):
                    break
                nxt = next(queue, None)
                if nxt is not None:
                    running.add(submit(nxt))
        finally:  # stopped or interrupted: the cases not yet started are not started, those running are waited for
            client.cancel(list(running.futures))
            wait_for_running(client, set(cases))
    return batch.report


def wait_for_running(client, keys: set[str]) -> None:
    """Wait until no worker runs any of the cancelled tasks `keys`: one already running goes on to
    its end (a thread cannot be stopped) and writes into the folder, which must stay locked till then.
    A cluster that cannot be reached any more runs nothing to wait for."""
    try:
        while keys and any(client.run(_running, keys=keys, on_error="ignore").values()):
            time.sleep(0.2)
    except OSError:  # distributed's CommClosedError: the scheduler is gone
        pass


def _running(keys: set[str], dask_worker=None) -> bool:
    state = dask_worker.state
    return any(task.key in keys for task in (*state.executing, *state.long_running))
