"""Running a batch: the one runner, its options, one case's steps, reading ahead and writing behind, resume, and the Dask driver."""
