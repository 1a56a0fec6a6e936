"""Dask worker plugins that strike in one named case (test_dask_batch.py): `KillOn` kills its worker
process there, as the kernel's out-of-memory killer or a crash in a native reader would; `SlowOn`
holds the case a few seconds before running it, so that it is still running when the batch stops.
Registered plugins are set up again on each worker the nanny restarts."""

import os
import time

from distributed.diagnostics.plugin import WorkerPlugin


class CaseFault(WorkerPlugin):
    def __init__(self, case_name: str) -> None:
        self.case_name = case_name

    def hit(self) -> None:
        raise NotImplementedError

    def setup(self, worker) -> None:
        from SSLAnomalyLib.core.batch import dask_driver

        real = dask_driver.process_case

        def process_case(case, *args, **kwargs):
            if case.name == self.case_name:
                self.hit()
            return real(case, *args, **kwargs)

        dask_driver.process_case = process_case


class KillOn(CaseFault):
    def hit(self) -> None:
        os._exit(1)


class SlowOn(CaseFault):
    def hit(self) -> None:
        time.sleep(6)
