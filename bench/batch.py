"""Batch throughput and large-image memory: ``run_batch`` vs a naive loop, in the same run.

1. Throughput (images/s) on a folder of real DSB 2018 images (``--files`` files made by
   hard-linking ``--distinct`` different images over and over):

   - ``naive``: for each file ``read_image`` -> ``predict`` -> ``write_labels``, one at a time;
   - ``batch-none``: ``iter_batch(..., scheduler="none")`` (read-ahead threads + writer thread);
   - ``batch-local``: ``iter_batch(..., scheduler="local", workers=--workers)`` (a dask
     LocalCluster; the cluster's start-up is reported apart from the steady rate);
   - ``batch-none-alone``: ``batch-none`` with images never grouped
     (``image_groups.IMAGES_TOGETHER`` off): against ``batch-none`` it measures what groups
     of small images of one size through the network together gain (CUDA; a group needs a
     fixed ``--diameter`` and images of one shape, ``--same-shape``).

   The files are split into ``--rounds`` folders (default 2) run in alternating mode order
   (ABC, CBA, ...) so that a drifting machine load does not favour one mode.
   All use the same weights, the same ``PredictParams`` and a fresh output folder; the label
   files of every mode are compared with the naive loop's, pixel for pixel. In-process runs
   use ``--threads`` torch threads (default: every core); ``iter_batch`` gives each local
   worker ``cores // workers``.
2. Memory: one ``--big-size``² uint8 grey image (a mosaic of real DSB images) written as an
   uncompressed contiguous TIFF, segmented by ``run_batch`` (memory-mapped above
   ``memmap_pixels``) and by the naive loop (``read_image`` loads it whole), each in a fresh
   subprocess: peak RSS above the start (sampled every 20 ms; also split into anonymous and
   file-backed pages, since memory-mapped pages count as file-backed RSS) and seconds. A
   1024² run gives the size-independent part (network activations of a batch of tiles,
   torch), from which the bytes per extra pixel and the peak at 8192² / 16384² follow.
   ``--big-size auto`` times one 2048² ``predict`` and picks the largest of 16384, 8192,
   4096, 2048 whose extrapolated time fits ``--big-budget`` seconds per run.

It writes ``bench/results/batch_<device>.json`` and prints a Markdown table. Usage:

    .venv/bin/python bench/batch.py                                  # defaults: < 10 min, CPU
    .venv/bin/python bench/batch.py --files 3000 --big-size 16384    # the full-scale run
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
from _common import PeakRSS, pack_mosaic

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATA = ROOT.parent / "shared" / "data"
DEFAULT_WEIGHTS = ROOT / "sample_data" / "models" / "unet_dsb.safetensors"
DSB_IMAGES = "dsb2018/stage1_train/images"
BIG_CANDIDATES = (16384, 8192, 4096, 2048)
CALIBRATION_SIZE = 2048
SMALL_SIZE = 1024


# -- inputs -----------------------------------------------------------------------------------
def dsb_files(data_root: Path) -> list[Path]:
    files = sorted((data_root / DSB_IMAGES).glob("*.png"))
    if not files:
        raise SystemExit(f"no DSB images under {data_root / DSB_IMAGES}; pass --data-root")
    return files


def most_common_shape(files: list[Path]) -> list[Path]:
    """The files of the most common image shape (the first such shape in file order)."""
    import imageio.v3 as iio

    shapes = [iio.improps(f).shape for f in files]
    common = max(shapes, key=shapes.count)
    return [f for f, shape in zip(files, shapes, strict=True) if shape == common]


def build_folder(sources: list[Path], indices: range, folder: Path) -> str:
    """Files ``img_<i>.png`` for ``i`` in `indices`, cycling over ``sources``: hard links
    where possible, else copies."""
    folder.mkdir(parents=True)
    how = "hard links"
    for i in indices:
        src, dst = sources[i % len(sources)], folder / f"img_{i:05d}.png"
        try:
            os.link(src, dst)
        except OSError:
            shutil.copyfile(src, dst)
            how = "copies"
    return how


def grey_mosaic(size: int, sources: list[Path]) -> np.ndarray:
    """A size×size uint8 grey mosaic of real DSB images (their first channel)."""
    import imageio.v3 as iio

    tiles = [np.asarray(iio.imread(f)) for f in sources]
    return pack_mosaic([t[..., 0] if t.ndim == 3 else t for t in tiles], size)


# -- the naive loop ---------------------------------------------------------------------------
def naive_loop(files: list[Path], out: Path, model: Any, params: Any) -> dict[str, float]:
    """read_image -> predict -> write_labels, one file at a time; seconds per stage."""
    from napari_cellseg.inference.planes import predict_planes as predict  # whole planes
    from napari_cellseg.io.images import read_image, write_labels

    out.mkdir(parents=True, exist_ok=True)
    stages = {"read": 0.0, "segment": 0.0, "write": 0.0}
    for path in files:
        t0 = time.perf_counter()
        image = read_image(path)
        t1 = time.perf_counter()
        prediction = predict(image.data, model, replace(params, axes=params.axes or image.axes))
        t2 = time.perf_counter()
        write_labels(
            out / f"{path.stem}_labels.tif", prediction.labels, pixel_size_um=image.pixel_size_um
        )
        t3 = time.perf_counter()
        stages["read"] += t1 - t0
        stages["segment"] += t2 - t1
        stages["write"] += t3 - t2
    return stages


def batch_run(
    folder: Path | list[Path], out: Path, weights: Path, params: Any, **kwargs: Any
) -> dict[str, Any]:
    """Drain ``iter_batch`` (what ``run_batch`` does), timing the start of the workers."""
    from napari_cellseg.batch import FileResult, iter_batch
    from napari_cellseg.events import Notice, drain

    start = time.perf_counter()
    ready = None
    stages = {"read": 0.0, "segment": 0.0, "write": 0.0}

    def record(event: Any) -> None:
        nonlocal ready
        if isinstance(event, Notice) and event.message.startswith("dask scheduler"):
            ready = time.perf_counter() - start
        elif isinstance(event, FileResult):
            for key, value in event.timings.items():
                stages[key] = stages.get(key, 0.0) + value

    summary = drain(iter_batch(folder, out, weights, params, **kwargs), record)
    seconds = time.perf_counter() - start
    return {
        "seconds": seconds,
        "startup_seconds": ready,
        "done": summary.done,
        "failed": summary.failed,
        "errors": [list(e) for e in summary.errors[:5]],
        "objects": summary.objects,
        "stage_seconds_summed": stages,
    }


def compare_labels(reference: Path, other: Path, names: list[str]) -> dict[str, Any]:
    """Pixel-for-pixel comparison of the label files named ``names`` in two folders."""
    import tifffile

    missing, different = [], []
    for name in names:
        a, b = reference / name, other / name
        if not a.exists() or not b.exists():
            missing.append(name)
            continue
        x, y = tifffile.imread(a), tifffile.imread(b)
        if x.shape != y.shape or not np.array_equal(x, y):
            different.append(name)
    return {
        "identical": not missing and not different,
        "compared": len(names),
        "missing": missing[:5],
        "n_missing": len(missing),
        "different": different[:5],
        "n_different": len(different),
    }


def agreement(reference: Path, other: Path, crop: int = 2048) -> dict[str, Any]:
    """How far two large label images agree: F1@0.5 and DSB AP on crops across the plane.

    Crops (corners, centre) are read through tifffile's zarr interface, so neither image is
    loaded whole; objects cut by a crop's edge are cut in both.
    """
    import tifffile
    import zarr

    from napari_cellseg.labels.metrics import dsb_ap, matching_at

    def read(path: Path, y: int, x: int) -> np.ndarray:
        with tifffile.TiffFile(path) as tif, tif.series[0].aszarr() as store:
            return np.asarray(zarr.open_array(store, mode="r")[y : y + crop, x : x + crop])

    with tifffile.TiffFile(reference) as tif:
        height, width = tif.series[0].shape[-2:]
    spots = {(0, 0), (height - crop, width - crop), ((height - crop) // 2, (width - crop) // 2)}
    rows = []
    for y, x in sorted(spots):
        a, b = read(reference, max(0, y), max(0, x)), read(other, max(0, y), max(0, x))
        rows.append(
            {"y": y, "x": x, "f1@0.5": matching_at(a, b, 0.5)["f1"], "dsb_ap": dsb_ap(a, b)}
        )
    return {
        "crop": crop,
        "crops": rows,
        "mean_f1@0.5": float(np.mean([r["f1@0.5"] for r in rows])),
        "mean_dsb_ap": float(np.mean([r["dsb_ap"] for r in rows])),
    }


# -- part 1: throughput ---------------------------------------------------------------------
def run_mode(
    mode: str, folder: Path, out: Path, model: Any, params: Any, args: argparse.Namespace
) -> dict[str, Any]:
    """One mode on one folder: seconds, start-up, stage sums."""
    import torch

    from napari_cellseg.inference import image_groups

    torch.set_num_threads(args.threads)
    if mode == "batch-none-alone":
        image_groups.IMAGES_TOGETHER = False
        try:
            return batch_run(folder, out, args.weights, params, scheduler="none",
                             prefetch=args.prefetch)  # fmt: skip
        finally:
            image_groups.IMAGES_TOGETHER = True
    if mode == "naive":
        t0 = time.perf_counter()
        stages = naive_loop(sorted(folder.glob("*.png")), out, model, params)
        return {
            "seconds": time.perf_counter() - t0,
            "startup_seconds": None,
            "failed": 0,
            "stage_seconds_summed": stages,
        }
    scheduler = mode.removeprefix("batch-")
    kwargs: dict[str, Any] = {"scheduler": scheduler, "prefetch": args.prefetch}
    if scheduler != "none":
        kwargs["workers"] = args.workers
    return batch_run(folder, out, args.weights, params, **kwargs)


def throughput(args: argparse.Namespace, params: Any, work: Path) -> dict[str, Any]:
    """Every mode on the same files, in counterbalanced rounds (ABC, CBA, ...)."""
    import torch

    from napari_cellseg.device import resolve_device
    from napari_cellseg.inference.model_runner import cached_load
    from napari_cellseg.inference.planes import predict_planes as predict  # whole planes
    from napari_cellseg.io.images import read_image

    sources = dsb_files(args.data_root)
    if args.same_shape:
        sources = most_common_shape(sources)
    rng = np.random.default_rng(args.seed)
    distinct = min(args.distinct, len(sources))
    picked = [sources[i] for i in sorted(rng.choice(len(sources), distinct, replace=False))]
    rounds = max(1, min(args.rounds, args.files))
    bounds = np.linspace(0, args.files, rounds + 1).astype(int)
    folders = [work / "inputs" / f"round{r}" for r in range(rounds)]
    how = "hard links"
    for r, folder in enumerate(folders):
        if build_folder(picked, range(bounds[r], bounds[r + 1]), folder) == "copies":
            how = "copies"
    pixels = sum(int(np.prod(read_image(p).data.shape[:2])) for p in picked)
    print(
        f"throughput: {args.files} files ({how}) of {len(picked)} distinct DSB images, "
        f"{pixels / len(picked) / 1e3:.0f} kpx on average, {rounds} counterbalanced round(s)"
    )

    torch.set_num_threads(args.threads)
    model, _ = cached_load(args.weights, resolve_device(params.device))
    warm = read_image(picked[0])
    predict(warm.data, model, replace(params, axes=warm.axes))  # warm-up, not timed

    runs: dict[str, dict[str, Any]] = {
        mode: {
            "seconds": 0.0,
            "startup_seconds": 0.0,
            "failed": 0,
            "round_seconds": [],
            "stage_seconds_summed": {},
        }
        for mode in args.modes
    }
    for r, folder in enumerate(folders):
        order = args.modes if r % 2 == 0 else args.modes[::-1]
        for mode in order:
            row = run_mode(mode, folder, work / f"out-{mode}" / folder.name, model, params, args)
            total = runs[mode]
            total["seconds"] += row["seconds"]
            total["startup_seconds"] += row["startup_seconds"] or 0.0
            total["failed"] += row["failed"]
            total["round_seconds"].append(row["seconds"])
            for key, value in row["stage_seconds_summed"].items():
                stages = total["stage_seconds_summed"]
                stages[key] = stages.get(key, 0.0) + value
            n = bounds[r + 1] - bounds[r]
            print(f"  round {r + 1}, {mode}: {n} files in {row['seconds']:.1f} s")
    for mode, row in runs.items():
        local = mode == "batch-local"
        row["workers"] = args.workers if local else 1
        row["torch_threads"] = (
            max(1, (os.cpu_count() or 1) // args.workers) if local else args.threads
        )
        row["images_per_s"] = args.files / row["seconds"]
        if row["startup_seconds"]:
            row["steady_images_per_s"] = args.files / (row["seconds"] - row["startup_seconds"])
        else:
            row["startup_seconds"] = None
    reference = "naive" if "naive" in runs else next(iter(runs))
    for mode in runs:
        if mode == reference:
            continue
        checks = [
            compare_labels(
                work / f"out-{reference}" / folder.name,
                work / f"out-{mode}" / folder.name,
                [f"{p.stem}_labels.tif" for p in sorted(folder.glob("*.png"))],
            )
            for folder in folders
        ]
        runs[mode]["same_labels_as_" + reference] = {
            "identical": all(c["identical"] for c in checks),
            "compared": sum(c["compared"] for c in checks),
            "n_missing": sum(c["n_missing"] for c in checks),
            "n_different": sum(c["n_different"] for c in checks),
            "different": [d for c in checks for d in c["different"]][:5],
        }
    base = runs.get("naive", {}).get("images_per_s")
    for row in runs.values():
        row["speedup_vs_naive"] = row["images_per_s"] / base if base else None
    alone = runs.get("batch-none-alone", {}).get("images_per_s")
    grouped = runs.get("batch-none", {}).get("images_per_s")
    return {
        "groups_gain": grouped / alone if alone and grouped else None,
        "files": args.files,
        "rounds": rounds,
        "distinct": [p.name for p in picked],
        "links": how,
        "mean_kpx": pixels / len(picked) / 1e3,
        "runs": runs,
    }


# -- part 2: memory on one big image --------------------------------------------------------
def calibrate(args: argparse.Namespace, params: Any) -> float:
    """Seconds of one 2048² predict on a DSB mosaic (after a small warm-up)."""
    import torch

    from napari_cellseg.device import resolve_device
    from napari_cellseg.inference.model_runner import cached_load
    from napari_cellseg.inference.planes import predict_planes as predict  # whole planes

    torch.set_num_threads(args.threads)
    model, _ = cached_load(args.weights, resolve_device(params.device))
    image = grey_mosaic(CALIBRATION_SIZE, dsb_files(args.data_root)[:16])
    predict(image[:256, :256], model, replace(params, axes="YX"))
    t0 = time.perf_counter()
    predict(image, model, replace(params, axes="YX"))
    return time.perf_counter() - t0


def child(args: argparse.Namespace) -> int:
    """One memory measurement in a fresh process (prints one JSON line)."""
    import torch

    from napari_cellseg.batch.jobs import params_from_dict
    from napari_cellseg.device import resolve_device
    from napari_cellseg.inference.model_runner import cached_load

    torch.set_num_threads(args.threads)
    params = params_from_dict(json.loads(args.child_params))
    big = Path(args.child_file)
    out = Path(args.child_out)
    # loaded before the measurement in both modes (run_batch reuses the cached model):
    # the peaks are the data's memory, not the model's
    model, _ = cached_load(args.weights, resolve_device(params.device))
    gc.collect()
    with PeakRSS() as rss:
        t0 = time.perf_counter()
        if args.child == "naive":
            stages = naive_loop([big], out, model, params)
            result: dict[str, Any] = {"stage_seconds_summed": stages, "failed": 0}
        else:
            result = batch_run(
                [big], out, args.weights, params, memmap_pixels=args.child_memmap, prefetch=1
            )
        result["seconds"] = time.perf_counter() - t0
    result.update(peak_rss_mib=rss.mib, peak_anon_mib=rss.anon_mib)
    print(json.dumps(result))
    return 0


def memory(args: argparse.Namespace, params: Any, work: Path) -> dict[str, Any]:
    import tifffile

    info: dict[str, Any] = {}
    size = args.big_size
    calib = None
    if size == "auto" or args.calibrate:
        calib = calibrate(args, params)
        per_px = calib / CALIBRATION_SIZE**2
        estimates = {s: per_px * s * s for s in BIG_CANDIDATES}
        info.update(calibration_2048_seconds=calib, estimated_seconds=estimates)
        print(
            f"memory: one {CALIBRATION_SIZE}² predict took {calib:.1f} s; extrapolated: "
            + ", ".join(f"{s}² {t / 60:.1f} min" for s, t in estimates.items())
        )
        if size == "auto":
            fitting = [s for s in BIG_CANDIDATES if estimates[s] <= args.big_budget]
            size = fitting[0] if fitting else BIG_CANDIDATES[-1]
    size = int(size)
    info["size"] = size
    big = work / f"big_{size}.tif"
    image = grey_mosaic(size, dsb_files(args.data_root)[:16])
    tifffile.imwrite(big, image, photometric="minisblack", compression=None, contiguous=True)
    del image
    with tifffile.TiffFile(big) as tif:
        info["tiff_contiguous_offset"] = tif.series[0].dataoffset
    memmap_pixels = args.memmap_pixels if args.memmap_pixels else min(1 << 26, size * size - 1)
    info.update(file_mib=big.stat().st_size / 2**20, memmap_pixels=memmap_pixels)
    print(
        f"memory: {size}² uint8 TIFF, {info['file_mib']:.0f} MiB, memmap above {memmap_pixels} px"
    )
    from napari_cellseg.batch import read_input

    probe = read_input(big, memmap_pixels=memmap_pixels)
    info["batch_input_memory_mapped"] = isinstance(probe.data, np.memmap)
    del probe
    # the size-independent part: a 1024² image fills whole batches of tiles
    small = work / f"small_{SMALL_SIZE}.tif"
    tifffile.imwrite(small, grey_mosaic(SMALL_SIZE, dsb_files(args.data_root)[:16]))
    runs = {"naive": big, "batch": big, "small": small}
    for mode, source in runs.items():
        cmd = [
            sys.executable,
            str(Path(__file__).resolve()),
            "--child",
            "naive" if mode == "small" else mode,
            "--child-file",
            str(source),
            "--child-out",
            str(work / f"big-out-{mode}"),
            "--child-params",
            json.dumps(params.to_dict(), default=list),
            "--child-memmap",
            str(memmap_pixels),
            "--weights",
            str(args.weights),
            "--threads",
            str(args.threads),
        ]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
        if proc.returncode != 0 or not lines:
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-5:]
            info[mode] = {"error": f"exit {proc.returncode}: " + " | ".join(tail)}
            print(f"  {mode}: FAILED {info[mode]['error']}")
            continue
        info[mode] = json.loads(lines[-1])
        r = info[mode]
        print(
            f"  {mode}: {r['seconds']:.1f} s, peak RSS +{r['peak_rss_mib']:.0f} MiB "
            f"(anonymous +{r['peak_anon_mib']:.0f} MiB)"
        )
    name = f"{big.stem}_labels.tif"
    if "error" not in info.get("naive", {"error": 1}) and "error" not in info.get(
        "batch", {"error": 1}
    ):  # block-by-block stitching is not pixel-identical to whole-plane inference
        info["agreement"] = agreement(work / "big-out-naive" / name, work / "big-out-batch" / name)
    px = size * size
    small_px = SMALL_SIZE * SMALL_SIZE
    if px > small_px and "error" not in info.get("small", {"error": 1}):
        for mode in ("naive",):  # run_batch's peak is bounded by its block size: no extrapolation
            r = info.get(mode, {})
            if "error" in r or not r:
                continue
            per_px = (r["peak_rss_mib"] - info["small"]["peak_rss_mib"]) * 2**20 / (px - small_px)
            r["marginal_bytes_per_pixel"] = per_px
            r["extrapolated_peak_rss_gib"] = {
                str(s): (info["small"]["peak_rss_mib"] * 2**20 + per_px * (s * s - small_px))
                / 2**30
                for s in (8192, 16384)
            }
    info["memory_model"] = {
        "naive": "whole plane: uint8 input, float32 3-channel input (12 B/px), float32 blend "
        "buffers (16 B/px), labels and post-processing temporaries",
        "batch": "planes above block_pixels go block by block (2048² + 256 px halo): the input "
        "is memory-mapped and its pages released after each block, labels go to a zarr "
        "array on disk and are written as a tiled TIFF; memory depends on the block size",
    }
    return info


# -- report -----------------------------------------------------------------------------------
def hardware(args: argparse.Namespace, device: Any) -> dict[str, Any]:
    import torch

    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return {
        "device": str(device),
        "gpu": torch.cuda.get_device_name(0) if device.type == "cuda" else None,
        "cpu": cpu,
        "cores": os.cpu_count(),
        "torch": torch.__version__,
        "torch_threads_in_process": args.threads,
        "torch_threads_per_local_worker": max(1, (os.cpu_count() or 1) // args.workers),
        "local_workers": args.workers,
        "python": platform.python_version(),
    }


def _ratio(value: float | None) -> str:
    """``1.23×``, or ``-`` without a reference.

    >>> _ratio(1.234), _ratio(None)
    ('1.23×', '-')
    """
    return "-" if value is None else f"{value:.2f}×"


def table(report: dict[str, Any]) -> str:
    lines = []
    tp = report.get("throughput")
    if tp:
        lines += [
            f"Throughput: {tp['files']} DSB files ({len(tp['distinct'])} distinct, "
            f"{tp['mean_kpx']:.0f} kpx mean), {tp['rounds']} counterbalanced round(s)",
            "",
            "| mode | torch threads | seconds | images/s | vs naive | start-up s "
            "| read / segment / write s (summed) | same labels |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for mode, r in tp["runs"].items():
            same = next((v for k, v in r.items() if k.startswith("same_labels_as_")), None)
            same_text = (
                "reference"
                if same is None
                else "yes"
                if same["identical"]
                else f"no ({same['n_different']} differ, {same['n_missing']} missing)"
            )
            threads = (
                r["torch_threads"]
                if mode != "batch-local"
                else (f"{r['workers']}×{r['torch_threads']}")
            )
            start = f"{r['startup_seconds']:.1f}" if r.get("startup_seconds") else "-"
            st = r["stage_seconds_summed"]
            stages = " / ".join(f"{st.get(k, 0.0):.1f}" for k in ("read", "segment", "write"))
            lines.append(
                f"| {mode} | {threads} | {r['seconds']:.1f} | {r['images_per_s']:.2f} | "
                f"{_ratio(r['speedup_vs_naive'])} | {start} | {stages} | {same_text} |"
            )
        if tp.get("groups_gain"):
            lines.append(
                f"\nImages through the network together (batch-none) against one by one "
                f"(batch-none-alone): {tp['groups_gain']:.2f}× images/s"
            )
    mem = report.get("memory")
    if mem:
        lines += [
            "",
            f"Memory: one {mem['size']}² uint8 uncompressed TIFF ({mem['file_mib']:.0f} MiB); "
            f"run_batch memory-mapped it: {'yes' if mem['batch_input_memory_mapped'] else 'no'}",
            "",
            "| run | seconds | peak RSS above start MiB | of which anonymous MiB |",
            "|---|---|---|---|",
        ]
        labels = {
            "naive": f"naive loop, {mem['size']}² (read whole)",
            "batch": f"run_batch, {mem['size']}² (block by block, memory-mapped)",
            "small": f"naive loop, {SMALL_SIZE}² (≈ the size-independent part)",
        }
        for mode, label in labels.items():
            r = mem.get(mode, {})
            if "error" in r or not r:
                lines.append(f"| {label} | failed | - | - |")
                continue
            lines.append(
                f"| {label} | {r['seconds']:.1f} | {r['peak_rss_mib']:.0f} | "
                f"{r['peak_anon_mib']:.0f} |"
            )
        agree = mem.get("agreement")
        if agree:
            lines.append(
                f"\nrun_batch vs naive labels on {len(agree['crops'])} crops of "
                f"{agree['crop']}²: F1@0.5 {agree['mean_f1@0.5']:.3f}, "
                f"DSB AP {agree['mean_dsb_ap']:.3f} (1.0 = identical objects)"
            )
        for mode in ("naive", "batch"):
            r = mem.get(mode, {})
            if "marginal_bytes_per_pixel" in r:
                ext = r["extrapolated_peak_rss_gib"]
                lines.append(
                    f"\n{mode}: {r['marginal_bytes_per_pixel']:.0f} bytes per extra pixel -> "
                    f"about {ext['8192']:.1f} GiB at 8192², {ext['16384']:.1f} GiB at 16384²"
                )
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=60, help="files in the throughput folder")
    parser.add_argument("--distinct", type=int, default=20, help="different DSB images used")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--weights", type=Path, default=DEFAULT_WEIGHTS)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--tile", type=int, default=512)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument(
        "--threads",
        type=int,
        default=os.cpu_count() or 1,
        help="torch threads for in-process runs (default: all cores)",
    )
    parser.add_argument("--workers", type=int, default=2, help="LocalCluster worker processes")
    parser.add_argument("--prefetch", type=int, default=2)
    parser.add_argument(
        "--rounds",
        type=int,
        default=2,
        help="split the files into rounds run in alternating mode order (ABC, CBA, ...)",
    )
    parser.add_argument(
        "--modes",
        nargs="+",
        default=["naive", "batch-none", "batch-local"],
        choices=["naive", "batch-none", "batch-local", "batch-none-alone"],
    )
    parser.add_argument(
        "--diameter",
        default=None,
        help="object diameter: off, px, or auto (default: the model card's; images go "
        "together only with a fixed one)",
    )
    parser.add_argument(
        "--same-shape", action="store_true", help="only DSB images of the most common shape"
    )
    parser.add_argument("--big-size", default="auto", help="big image edge, or auto")
    parser.add_argument(
        "--big-budget",
        type=float,
        default=120.0,
        help="auto: seconds one big-image run may take (extrapolated)",
    )
    parser.add_argument(
        "--calibrate",
        action="store_true",
        help="time the 2048² predict even with an explicit --big-size",
    )
    parser.add_argument(
        "--memmap-pixels",
        type=int,
        default=0,
        help="run_batch's memmap threshold (default: min(64 Mpx, size²-1))",
    )
    parser.add_argument("--skip-throughput", action="store_true")
    parser.add_argument("--suffix", default="", help="added to the JSON name, e.g. _memory")
    parser.add_argument("--skip-memory", action="store_true")
    parser.add_argument("--data-root", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    parser.add_argument("--workdir", type=Path, default=None, help="default: a temporary folder")
    parser.add_argument("--keep", action="store_true", help="keep the work folder")
    for name in ("--child", "--child-file", "--child-out", "--child-params"):
        parser.add_argument(name, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--child-memmap", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.big_size != "auto":
        args.big_size = int(args.big_size)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.child:
        return child(args)
    from napari_cellseg.device import resolve_device
    from napari_cellseg.params import PredictParams

    device = resolve_device(args.device)
    params = PredictParams(
        device=str(device), tile_size=args.tile, batch_size=args.batch_size, diameter=args.diameter
    )
    work = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="cellseg-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    report: dict[str, Any] = {"hardware": hardware(args, device), "params": params.to_dict()}
    report["weights"] = str(args.weights)
    report["command"] = " ".join(["bench/batch.py", *(argv if argv is not None else sys.argv[1:])])
    t0 = time.perf_counter()
    try:
        if not args.skip_throughput:
            report["throughput"] = throughput(args, params, work)
        if not args.skip_memory:  # the naive loop runs whole planes at the image's own
            # scale (``predict_planes``): run_batch gets the same scale unless one is asked,
            # so that their labels can be compared (``auto`` may rescale the image)
            sized = params if args.diameter is not None else replace(params, diameter="off")
            report["memory"] = memory(args, sized, work)
            report["memory"]["diameter"] = sized.diameter
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    report["total_seconds"] = time.perf_counter() - t0
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"batch_{device.type}{args.suffix}.json"
    path.write_text(json.dumps(report, indent=2, default=str))
    print(f"wrote {path}")
    print(table(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
