"""Many sources in one command: ``mot-dinov3 batch SOURCES... --out-dir DIR``, and :func:`run_batch` from Python.

- :mod:`~mot_dinov3.batch.sources`: the arguments (videos, folders, MOTChallenge splits, globs, ``.txt``
  lists) expanded into a deterministic list of named sources;
- :mod:`~mot_dinov3.batch.jobs`: one source into its folder (video, MOT txt, ``summary.json`` last), the
  batch summary files (``batch_summary.csv`` / ``.json``), resuming;
- :mod:`~mot_dinov3.batch.run`: the batch in this process, in local worker processes or on Ray.

Layout of ``DIR``::

    batch_summary.csv, batch_summary.json     every source: status, frames, fps, tracks, embeddings, seconds, error
    <name>/<name>.mp4                         annotated video (none with no video asked for)
    <name>/<name>.txt                         MOTChallenge results
    <name>/summary.json                       the run summary (RunSummary) with status; written last
"""

from mot_dinov3.batch.jobs import FAILED, INTERRUPTED, OK, PENDING, SKIPPED, SourceResult
from mot_dinov3.batch.run import BACKENDS, BatchResult, run_batch
from mot_dinov3.batch.sources import BatchSource, expand_sources

__all__ = [
    "BACKENDS",
    "FAILED",
    "INTERRUPTED",
    "OK",
    "PENDING",
    "SKIPPED",
    "BatchResult",
    "BatchSource",
    "SourceResult",
    "expand_sources",
    "run_batch",
]
