"""The run manifest, its journal and resuming (the recipe itself: :mod:`.recipe`).

An output folder belongs to one *recipe*: the weight file's sha256 and every parameter that
changes the labels (``device`` and ``batch_size`` do not and are left out of the hash, but are
recorded). ``batch_manifest.json`` holds the recipe, library versions and one entry per input
(status, object count, seconds, output paths, label shape, input size and mtime). It is
rewritten atomically at the start, every minute and at the end; in between each finished file
is appended to ``batch_journal.jsonl`` (one flushed line), so a killed run loses nothing but
the files in flight. A rerun reads both, and skips a file only when its entry says done, the
input is unchanged and its outputs read back as valid labels of the recorded shape.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import re
import shutil
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import IO, Any

from napari_cellseg.batch.files import MANIFEST_NAME, FileTask
from napari_cellseg.batch.jobs import FileResult
from napari_cellseg.batch.recipe import VERSION, recipe_difference, recipe_hash
from napari_cellseg.errors import CellsegError
from napari_cellseg.io.atomic import atomic_write_text

__all__ = ["RunState"]

JOURNAL_NAME = "batch_journal.jsonl"
ERRORS_NAME = "errors.csv"
COMBINED_NAME = "measurements.csv"
LOCK_NAME = ".batch.lock"
FORMAT = "napari-cellseg batch manifest"
FLUSH_SECONDS = 60.0
_ATOMIC_TMP = re.compile(r"^\..+\.[A-Za-z0-9_]{8}\.tmp$")  # core.atomic's temporary names


def _labels_valid(path: str, shape: list[int] | None) -> bool:
    from napari_cellseg.batch.large import labels_readable

    return labels_readable(path, shape)


def _csv_valid(path: str | None) -> bool:
    if path is None:
        return True
    try:
        with open(path, encoding="utf-8") as fh:
            return "label" in fh.readline().split(",")
    except (OSError, UnicodeDecodeError):
        return False


class RunState:
    """The manifest and journal of one output folder during a run (thread-safe)."""

    def __init__(
        self,
        out: Path,
        recipe: dict[str, Any],
        info: dict[str, Any],
        *,
        overwrite: bool = False,
    ) -> None:
        self.out = out
        self.recipe = recipe
        self.hash = recipe_hash(recipe)
        self.info = info
        self.overwrite = overwrite
        self.entries: dict[str, dict[str, Any]] = {}
        self.cleaned = 0
        self._lock = threading.Lock()
        self._journal: IO[str] | None = None
        self._lock_file: IO[str] | None = None
        self._last_flush = 0.0
        self.started = time.strftime("%Y-%m-%dT%H:%M:%S%z")

    @property
    def manifest_path(self) -> Path:
        """Where the manifest is written."""
        return self.out / MANIFEST_NAME

    # -- opening -------------------------------------------------------------------------
    def open(self) -> None:
        """Lock the folder, check the recipe, load earlier results, remove stale temp files."""
        try:
            self.out.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise CellsegError(f"{self.out}: cannot create the output folder ({error})") from None
        if not self.out.is_dir():
            raise CellsegError(f"{self.out}: the output path is a file; choose a folder")
        self._acquire_lock()
        try:
            self._load_previous()
            self.cleaned = self._remove_stale_temp_files()
            self.flush("running", force=True)
            try:
                self._journal = open(self.out / JOURNAL_NAME, "a", encoding="utf-8")  # noqa: SIM115
            except OSError as error:
                raise CellsegError(
                    f"{self.out / JOURNAL_NAME}: cannot write ({error.strerror or error})"
                ) from None
        except BaseException:
            self._release_lock()
            raise

    def _acquire_lock(self) -> None:
        try:
            import fcntl
        except ImportError:  # Windows: no advisory lock
            return
        try:
            handle = open(self.out / LOCK_NAME, "a")  # noqa: SIM115
        except OSError as error:
            raise CellsegError(
                f"{self.out}: cannot write into the output folder ({error.strerror or error}); "
                "choose a folder you can write to"
            ) from None
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.close()
            raise CellsegError(
                f"{self.out}: another cellseg batch is writing into this folder; wait for it "
                "to finish or choose another output folder"
            ) from None
        self._lock_file = handle

    def _release_lock(self) -> None:
        if self._lock_file is not None:
            self._lock_file.close()  # closing releases the flock
            self._lock_file = None

    def _load_previous(self) -> None:
        path = self.manifest_path
        if not path.exists():
            return
        try:
            old = json.loads(path.read_text(encoding="utf-8"))
            if old.get("format") != FORMAT:
                raise ValueError("not a batch manifest")
        except (OSError, ValueError) as error:
            raise CellsegError(
                f"{path}: unreadable batch manifest ({error}); choose another output folder"
            ) from None
        if old.get("recipe_hash") != self.hash:
            if not self.overwrite:
                raise CellsegError(
                    f"{self.out} holds results of a different recipe "
                    f"({recipe_difference(old.get('recipe', {}), self.recipe)}); choose "
                    "another output folder, or pass --overwrite (overwrite=True) to replace them"
                )
            with contextlib.suppress(OSError):
                (self.out / JOURNAL_NAME).unlink()
            return
        self.entries = dict(old.get("files", {}))
        for record in self._read_journal():
            self.entries[record.pop("rel")] = record

    def _read_journal(self) -> Iterable[dict[str, Any]]:
        try:
            lines = (self.out / JOURNAL_NAME).read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError):
            return []
        records = []
        for line in lines:
            try:
                record = json.loads(line)
            except ValueError:  # the line being written when the run was killed
                continue
            if isinstance(record, dict) and record.pop("recipe", None) == self.hash:
                records.append(record)
        return records

    def _remove_stale_temp_files(self) -> int:
        """Temporary files and scratch folders left by a killed run (``.<name>.<random>.tmp``)."""
        removed = 0
        for dirpath, _dirs, names in os.walk(self.out):
            for name in names:
                if _ATOMIC_TMP.match(name):
                    with contextlib.suppress(OSError):
                        os.unlink(os.path.join(dirpath, name))
                        removed += 1
            for name in [d for d in _dirs if _ATOMIC_TMP.match(d)]:  # large-image scratch
                shutil.rmtree(os.path.join(dirpath, name), ignore_errors=True)
                _dirs.remove(name)
                removed += 1
        return removed

    # -- resuming ------------------------------------------------------------------------
    def plan_resume(
        self, tasks: list[FileTask], *, threads: int = 2
    ) -> tuple[list[FileTask], list[FileResult]]:
        """Split `tasks` into those to run and the results of those already done."""

        def check(task: FileTask) -> FileResult | None:
            entry = self.entries.get(task.rel)
            if not entry or entry.get("status") != "done":
                return None
            same = (
                entry.get("labels") == self.relative(task.labels)
                and entry.get("input_size") == task.input_size
                and entry.get("input_mtime_ns") == task.input_mtime_ns
                and (
                    task.measurements is None
                    or entry.get("measurements") == self.relative(task.measurements)
                )
            )
            if not same or not _csv_valid(task.measurements):
                return None
            if not all(os.path.isfile(path) for _, path in task.exports):
                return None  # an export asked for now and missing: redone
            if not _labels_valid(task.labels, entry.get("shape")):
                return None
            return FileResult(
                file=task.source,
                rel=task.rel,
                status="skipped",
                objects=int(entry.get("objects", 0)),
                seconds=float(entry.get("seconds", 0.0)),
                labels=task.labels,
                measurements=task.measurements,
                shape=tuple(entry["shape"]),
                input_size=task.input_size,
                input_mtime_ns=task.input_mtime_ns,
                timings=dict(entry.get("timings", {})),
                diameter=entry.get("diameter"),
                scale=float(entry.get("scale", 1.0)),
            )

        with ThreadPoolExecutor(max_workers=max(1, threads)) as pool:
            checked = list(pool.map(check, tasks))
        todo = [t for t, r in zip(tasks, checked, strict=True) if r is None]
        return todo, [r for r in checked if r is not None]

    # -- recording -----------------------------------------------------------------------
    def relative(self, path: str | None) -> str | None:
        """An output path relative to the output folder (as stored in the manifest)."""
        if path is None:
            return None
        try:
            return Path(path).relative_to(self.out).as_posix()
        except ValueError:
            return str(path)

    def record(self, result: FileResult) -> None:
        """Remember a finished file (journal line flushed immediately)."""
        entry = result.entry()
        entry["labels"] = self.relative(entry["labels"])
        entry["measurements"] = self.relative(entry["measurements"])
        with self._lock:
            self.entries[result.rel] = entry
            if self._journal is not None:
                line = json.dumps({"recipe": self.hash, "rel": result.rel, **entry})
                try:
                    self._journal.write(line + "\n")
                    self._journal.flush()
                except OSError as error:
                    raise CellsegError(
                        f"{self.out / JOURNAL_NAME}: cannot record progress "
                        f"({error.strerror or error}); free some space and run again"
                    ) from None
        if time.monotonic() - self._last_flush > FLUSH_SECONDS:
            self.flush("running")

    def flush(self, state: str, *, force: bool = False, extra: dict | None = None) -> None:
        """Rewrite the manifest atomically."""
        with self._lock:
            if not force and time.monotonic() - self._last_flush <= FLUSH_SECONDS:
                return
            self._last_flush = time.monotonic()
            document = {
                "format": FORMAT,
                "version": VERSION,
                "state": state,
                "recipe_hash": self.hash,
                "recipe": self.recipe,
                **self.info,
                "started": self.started,
                "updated": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                **(extra or {}),
                "files": dict(sorted(self.entries.items())),
            }
            text = json.dumps(document, indent=1, default=list)
        try:
            atomic_write_text(self.manifest_path, text + "\n")
        except OSError as error:
            raise CellsegError(
                f"{self.manifest_path}: cannot write the run manifest ({error.strerror or error})"
            ) from None

    def close(
        self,
        state: str,
        order: list[str],
        errors: list[tuple[str, str]],
        *,
        measure: bool,
        extra: dict | None = None,
        on_error: Callable[[str], None] | None = None,
    ) -> None:
        """Write errors.csv, the combined measurements, the final manifest; drop the journal."""
        from napari_cellseg.batch.measure import merge_measurement_csvs

        try:
            buffer = io.StringIO()
            writer = csv.writer(buffer, lineterminator="\n")
            writer.writerow(["file", "reason"])
            writer.writerows(sorted(errors))
            atomic_write_text(self.out / ERRORS_NAME, buffer.getvalue())
            if measure:
                parts = [
                    (rel, self.out / self.entries[rel]["measurements"])
                    for rel in order
                    if self.entries.get(rel, {}).get("status") == "done"
                    and self.entries[rel].get("measurements")
                ]
                merge_measurement_csvs(self.out / COMBINED_NAME, parts)
            self.flush(state, force=True, extra=extra)
            if self._journal is not None:
                self._journal.close()
                self._journal = None
                (self.out / JOURNAL_NAME).unlink(missing_ok=True)
        except (OSError, CellsegError) as error:
            if on_error is None:
                raise
            on_error(str(error))
        finally:
            if self._journal is not None:
                self._journal.close()
                self._journal = None
            self._release_lock()
