"""Batch runs: detection + PRM1 / PNA quantification of many acquisitions on dask.distributed.

- :func:`run_batch` (``napari-hrs batch``): tiles as tasks on a LocalCluster or an existing
  cluster, resumable (manifest + spooled tiles), per-file failures reported, run summary.
- :func:`expand_inputs`: paths, globs, folders and HCS plates -> acquisitions.
- :mod:`napari_hrs.batch.tasks`: what a worker runs (model loaded once per worker).
"""

from napari_hrs.batch.inputs import BatchInput, expand_inputs
from napari_hrs.batch.run import BatchResult, FileOutcome, cluster_client, run_batch

__all__ = [
    "BatchInput",
    "BatchResult",
    "FileOutcome",
    "cluster_client",
    "expand_inputs",
    "run_batch",
]
