"""Dask worker plugins that strike in one named case (test_dask_batch.py): `KillOn` kills its worker
process there, half-way through writing its overlay, as the kernel's out-of-memory killer or a crash
in a native writer would; `SlowOn`
holds the case a few seconds before running it, so that it is still running when the batch stops;
`WorkIn` runs every case of its worker in another folder, as a worker started on another host does.
Registered plugins are set up again on each worker the nanny restarts."""

import os
import time
from pathlib import Path

from distributed.diagnostics.plugin import WorkerPlugin


class CaseFault(WorkerPlugin):
    def __init__(self, case_name: str) -> None:
        self.case_name = case_name

    def hit(self, out_dir: Path, name: str) -> None:
        raise NotImplementedError

    def setup(self, worker) -> None:
        from SSLAnomalyLib.core.batch import dask_driver

        real = dask_driver.process_case

        def process_case(case, detector, out_dir, *args, **kwargs):
            if case.name == self.case_name:
                self.hit(Path(out_dir), case.name)
            return real(case, detector, out_dir, *args, **kwargs)

        dask_driver.process_case = process_case


class KillOn(CaseFault):
    def hit(self, out_dir: Path, name: str) -> None:
        from SSLAnomalyLib.core.files.atomic import temporary_name

        temporary_name(out_dir / f"{name}.overlay.png").write_bytes(b"\x89PNG half")
        os._exit(1)


class SlowOn(CaseFault):
    def hit(self, out_dir: Path, name: str) -> None:
        time.sleep(6)


class WorkIn(WorkerPlugin):
    def __init__(self, folder: Path) -> None:
        self.folder = str(folder)

    def setup(self, worker) -> None:
        os.chdir(self.folder)
