"""Batch segmentation of folders at any scale, with measurements and a resumable manifest.

napari-free. The entry points are :func:`iter_batch` (a generator of progress events and
per-file results that returns a :class:`BatchSummary`) and :func:`run_batch` (drains it)::

    from napari_cellseg.batch import run_batch
    summary = run_batch("images/", "out/", "model.safetensors", recursive=True, measure=True)
    print(summary.line())

Outputs: ``out/<relative folder>/<stem>_labels.tif`` (and ``<stem>_measurements.csv``),
``out/measurements.csv`` (all objects, with a ``file`` column), ``out/errors.csv`` (file,
reason) and ``out/batch_manifest.json`` (recipe, every parameter, library versions, one entry
per file: status, objects, seconds, label shape).

Design
------
- **One recipe per output folder.** The recipe is the weight file's sha256 plus every
  parameter that changes the labels (``device`` and ``batch_size`` are recorded but not
  hashed). Rerunning the same recipe skips a file only when the manifest (or the journal of a
  killed run) says it is done, its input is unchanged (size, mtime) and its outputs read back
  as valid labels of the recorded shape; anything else is redone. Another recipe in the same
  folder is refused with a message naming what differs, unless ``overwrite=True``
  (``--overwrite``); then the files are redone and replaced one by one. One run at a time per
  folder (an advisory lock); temporary files of a killed run are removed when the next starts.
- **Nothing partial.** Every output is written to a hidden temporary file and renamed;
  inputs are only read; the output folder, hidden files and any folder holding a batch
  manifest are never read as input. A failed file has no output and a line in ``errors.csv``.
- **Throughput in process.** Images are read ahead by a thread pool (``prefetch``, default
  2) while the current one is segmented; labels and measurements are written by a background
  thread from a queue of at most 2, so about ``prefetch + 4`` images are in memory at once.
- **Large images.** Tiling bounds GPU memory. On the host, an uncompressed contiguous TIFF
  with more than ``memmap_pixels`` (64 Mpx) is memory-mapped, so a stack is paged in plane by
  plane, and a compressed 2-D (or RGB) TIFF that large is decoded chunk by chunk
  (:mod:`.reading`); other images are decoded whole. A TIFF whose header declares more raw
  data than the file holds, or more than the free memory, and PNGs over Pillow's
  decompression-bomb limit are refused before anything is allocated. A single plane above
  16.8 Mpx is segmented block by block into a label array on disk (:mod:`.large`), so memory
  depends on the block size, not on the image.
- **Scale-out.** ``scheduler="local"`` starts a ``distributed.LocalCluster`` of worker
  processes (one thread each); ``"tcp://host:port"`` uses an existing scheduler, whose
  workers must see the weight file and the output folder at the same paths. Workers receive
  a picklable :class:`BatchJob` and :class:`FileTask`, load the model once per process and
  write the outputs themselves; at most ``2 x workers`` tasks are in flight and results are
  gathered as they complete. Stopping cancels pending tasks (running ones finish or are cut,
  leaving at most a temporary file that the next run removes).
"""

from napari_cellseg.batch.file_steps import process_file
from napari_cellseg.batch.files import FileTask, find_inputs
from napari_cellseg.batch.jobs import BatchJob, BatchSummary, FileResult
from napari_cellseg.batch.measure import measure_labels
from napari_cellseg.batch.reading import read_input
from napari_cellseg.batch.runner import BatchEvent, iter_batch, run_batch

__all__ = [
    "BatchEvent",
    "BatchJob",
    "BatchSummary",
    "FileResult",
    "FileTask",
    "find_inputs",
    "iter_batch",
    "measure_labels",
    "process_file",
    "read_input",
    "run_batch",
]
