"""A Dask worker plugin that kills its worker process in the middle of one named case, as the
kernel's out-of-memory killer or a crash in a native reader would (test_dask_batch.py). Registered
plugins are set up again on each worker the nanny restarts, so the case kills every worker that runs it."""

import os

from distributed.diagnostics.plugin import WorkerPlugin


class KillOn(WorkerPlugin):
    def __init__(self, case_name: str) -> None:
        self.case_name = case_name

    def setup(self, worker) -> None:
        from SSLAnomalyLib.core.batch import dask_driver

        real, name = dask_driver.process_case, self.case_name

        def process_case(case, *args, **kwargs):
            if case.name == name:
                os._exit(1)
            return real(case, *args, **kwargs)

        dask_driver.process_case = process_case
