"""Batch detection on a Dask cluster, for sites whose batches outgrow one machine.

Dask schedules, balances and retries; nothing here is a home-made distributed engine. Only the
cases (file paths and names) travel to the workers and only their rows come back: each worker reads
its input from storage it shares with the others, keeps one detector per process (loaded on first
use) and writes the case's files into the shared output folder, exactly as `sslanomaly detect` does
(core/batch/case.process_case). The driver keeps the batch's books with the same runner as the
command line (core/batch/runner.py): lock, resume, failures log, index, drift check and worklist. At most
`in_flight` cases are queued at a time, so the scheduler's memory stays flat over any batch.

    from distributed import Client
    from SSLAnomalyLib.core.batch.dask_driver import detect_on_dask
    with Client("tcp://scheduler:8786") as client:          # or Client(LocalCluster(n_workers=2))
        report = detect_on_dask(client, ["/data/cxr"], "/data/out", model="/models/site")
"""

from __future__ import annotations

import time
from functools import lru_cache
from pathlib import Path

from SSLAnomalyLib.core.batch.case import Case, CaseRow, failed_row, process_case
from SSLAnomalyLib.core.batch.options import BatchOptions
from SSLAnomalyLib.core.batch.runner import BatchEvents, BatchReport, file_cases, open_batch
from SSLAnomalyLib.core.model_files import model_folder, registry
from SSLAnomalyLib.core.results.outputs import batch_files


@lru_cache(maxsize=2)
def _detector(model: str, device: str, state: tuple = ()):
    """One detector per process and model folder state (`model_folder.fingerprint`: a folder
    written again since is loaded again), loaded on its first task."""
    from SSLAnomalyLib.core.detection.detector import AnomalyDetector

    return AnomalyDetector.load(model, device=device)


def detect_one(case: Case, out_dir: str, model: str, device: str, options: BatchOptions, state: tuple = ()) -> CaseRow:
    """One case on a worker; a bad input is a row with its reason, not a failed task."""
    return process_case(case, _detector(model, device, state), Path(out_dir), options)


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
    files, repeated = batch_files(inputs, out_dir)
    files, out_dir = [Path(f).absolute() for f in files], Path(out_dir).absolute()
    events = events or BatchEvents()
    if repeated:
        events.warning(repeated)
    state = model_folder.fingerprint(model)  # the model as it is now, on the driver and every worker
    with open_batch(file_cases(files), out_dir, options, _detector(model, device, state), events) as batch:
        queue, cases = iter(batch.todo), {}

        def submit(case: Case):
            future = client.submit(detect_one, case, str(batch.out), model, device, options, state, pure=False)
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
