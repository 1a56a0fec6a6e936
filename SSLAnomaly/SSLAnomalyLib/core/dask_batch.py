"""Batch detection on a Dask cluster, for sites whose batches outgrow one machine.

Dask schedules, balances and retries; nothing here is a home-made distributed engine. Only file
paths travel to the workers and only small status rows come back: each worker reads its input
from storage it shares with the others, keeps one detector per process (loaded on first use) and
writes the same three files as `sslanomaly detect` into the shared output folder. At most
`in_flight` inputs are queued at a time, so the scheduler's memory stays flat over any batch.

    from distributed import Client
    from SSLAnomalyLib.core.dask_batch import detect_on_dask
    with Client("tcp://scheduler:8786") as client:          # or Client(LocalCluster(n_workers=2))
        rows = detect_on_dask(client, ["/data/cxr"], "/data/out", model="/models/site")
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from SSLAnomalyLib.core.io import list_inputs
from SSLAnomalyLib.core.outputs import unique_case_names


@lru_cache(maxsize=2)
def _detector(model: str, device: str):
    """One detector per worker process and model, loaded on its first task."""
    from SSLAnomalyLib.core.detector import AnomalyDetector

    return AnomalyDetector.load(model, device=device)


def detect_one(path: str, name: str, out_dir: str, model: str, device: str) -> dict:
    """One input on a worker: {"input", "name", "score", "error"}; a bad input is a row, not a failure."""
    from SSLAnomalyLib.core.io import read_radiograph
    from SSLAnomalyLib.core.outputs import write_case_outputs

    try:
        image = read_radiograph(path)
        detector = _detector(model, device)
        result = detector.detect(image)
        write_case_outputs(result, image, out_dir, name)
        return {"input": path, "name": name, "score": result.score, "error": None}
    except Exception as e:  # reported per input, as the CLI does
        return {"input": path, "name": name, "score": None, "error": f"{type(e).__name__}: {e}"}


def detect_on_dask(client, inputs, out_dir, model: str = "default", device: str = "auto",
                   in_flight: int | None = None) -> list[dict]:
    """Detect on every input (files or folders, as `sslanomaly detect` takes them) with the
    cluster behind `client`; returns one row per input, in input order."""
    from distributed import as_completed


    files = list_inputs(inputs)
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    model = str(Path(model).resolve()) if str(model) != "default" else "default"
    jobs = [(str(f), n) for f, n in zip(files, unique_case_names(files))]
    in_flight = in_flight or 4 * max(1, sum(client.nthreads().values()))
    rows, queue = {}, iter(jobs)

    def submit(job):
        return client.submit(detect_one, *job, str(out_dir), model, device, pure=False)

    running = as_completed([submit(j) for _, j in zip(range(in_flight), queue)])
    for future in running:
        row = future.result()
        rows[row["input"]] = row
        nxt = next(queue, None)
        if nxt is not None:
            running.add(submit(nxt))
    return [rows[path] for path, _ in jobs]
