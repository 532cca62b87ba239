"""Peak memory of segmenting a whole-slide pyramid block by block (cheap fake network).

Writes a synthetic H&E-like pyramidal OME-TIFF (JPEG tiles, 2x levels, written tile by
tile, never whole in memory) of SIZE² pixels into a temporary folder, then, in a fresh
process per run, reads the asked level lazily (``batch.read_input``), segments it block by
block (``batch.large.segment_large``, the code ``cellseg batch``/``predict`` run) and
writes the labels as OME-Zarr and as a tiled TIFF (``write_label_output``), sampling the
resident memory. The network is a per-pixel fake (dark pixels -> nucleus interior) so that
the run measures the slide machinery (lazy reading, normalisation, stitching, writing) and
post-processing, not a CNN; with a real model only the time grows (memory per block is the
same order, see docs/benchmarks.md "One 16384² image").

    nice -n 19 .venv/bin/python bench/whole_slide.py --sizes 20000 --out bench/results
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import PeakRSS

TILE = 512


def _pattern(seed: int) -> np.ndarray:
    """A 512² RGB tile: pale pink background, dark purple nuclei (disks)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:TILE, :TILE]
    grey = rng.integers(205, 235, (TILE, TILE)).astype(np.uint8)
    for cy in range(12, TILE, 28):
        for cx in range(12, TILE, 28):
            r = rng.integers(5, 10)
            dy, dx = rng.integers(-3, 4, 2)
            grey[(yy - cy - dy) ** 2 + (xx - cx - dx) ** 2 < r**2] = rng.integers(40, 100)
    return np.stack([grey, (grey * 0.75).astype(np.uint8), (grey * 0.9).astype(np.uint8)], -1)


def _level_tiles(size: int, step: int, patterns: np.ndarray):
    """Row-major 512² tiles of the level ``step`` times smaller than level 0.

    Level 0 is a mosaic of the 512² ``patterns`` (pattern ``(7 by + 13 bx) % 8`` at block
    ``(by, bx)``), white beyond ``size``; a coarser level samples every ``step``-th pixel of it,
    picked straight from the patterns so that no tile ever costs more than its own pixels.
    """
    height = -(-size // step)
    offsets = np.arange(TILE) * step
    for ty in range(0, height, TILE):
        ys = ty * step + offsets  # level-0 rows of this tile's rows
        for tx in range(0, height, TILE):
            xs = tx * step + offsets
            which = (ys[:, None] // TILE * 7 + xs[None, :] // TILE * 13) % len(patterns)
            tile = patterns[which, (ys % TILE)[:, None], (xs % TILE)[None, :]]
            tile[ys >= size] = 255  # beyond the slide: white
            tile[:, xs >= size] = 255
            yield tile


def write_pyramid(path: Path, size: int, levels: int) -> None:
    import tifffile

    patterns = np.stack([_pattern(i) for i in range(8)])
    options = {"tile": (TILE, TILE), "compression": "jpeg", "photometric": "rgb"}
    meta = {"PhysicalSizeX": 0.25, "PhysicalSizeY": 0.25}
    with tifffile.TiffWriter(path, ome=True, bigtiff=True) as tif:
        for k in range(levels):
            step = 2**k
            n = -(-size // step)
            tiles = _level_tiles(size, step, patterns)
            extra = {"subifds": levels - 1, "metadata": meta} if k == 0 else {"subfiletype": 1}
            tif.write(tiles, shape=(n, n, 3), dtype=np.uint8, **options, **extra)


def fake_model() -> Any:
    import torch

    from napari_cellseg.models.card import ModelCard
    from napari_cellseg.models.weights import LoadedModel

    class DarkIsNucleus(torch.nn.Module):
        """Per pixel: dark -> interior, pale -> background, in between -> boundary."""

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            v = 1 - x.mean(dim=1, keepdim=True).clamp(0, 1)
            return torch.cat([(1 - v) * 6, v * 6, (0.5 - (v - 0.5).abs()) * 4], dim=1)

    card = ModelCard.for_model("unet", {"encoder_name": "resnet18", "in_channels": 3, "classes": 3})
    return LoadedModel(DarkIsNucleus().eval(), card, Path("<fake>"), "bench")


def child(args: argparse.Namespace) -> int:
    """One run in a fresh process: read lazily, segment block by block, write; one JSON line."""
    import torch

    from napari_cellseg.batch.large import remove_scratch, segment_large, write_label_output
    from napari_cellseg.batch.reading import read_input
    from napari_cellseg.events import drain
    from napari_cellseg.io.slides import SlideOptions
    from napari_cellseg.params import BlockOptions, PredictParams

    torch.set_num_threads(1)
    model = fake_model()
    params = PredictParams(device="cpu", tile_size=512)
    source, out = Path(args.child), Path(args.child_out)
    result: dict[str, Any] = {}
    with PeakRSS(0.05) as rss:
        t0 = time.perf_counter()
        image = read_input(source, slide=SlideOptions(level=args.level))
        result["level_shape"] = list(image.data.shape)
        prediction = drain(
            segment_large(image, model, params, out / "s_labels.ome.zarr", measure=False,
                          blocks=BlockOptions())
        )  # fmt: skip
        result["segment_seconds"] = time.perf_counter() - t0
        result["objects"] = prediction.n_objects
        for name in ("s_labels.ome.zarr", "s_labels.tif"):
            t1 = time.perf_counter()
            write_label_output(out / name, prediction.labels, prediction.n_objects, "YXS")
            result[f"write_{name.rsplit('.', 1)[-1]}_seconds"] = time.perf_counter() - t1
        remove_scratch(prediction)
        result["seconds"] = time.perf_counter() - t0
    result.update(
        peak_rss_mib=rss.mib,
        peak_anon_mib=rss.anon_mib,
        ru_maxrss_mib=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        start_rss_mib=rss.start / 2**20,
    )
    print(json.dumps(result))
    return 0


def run(size: int, level: int, work: Path) -> dict[str, Any]:
    path = work / f"slide_{size}.ome.tif"
    levels = max(1, int(np.ceil(np.log2(size / 1024))) + 1)
    t0 = time.perf_counter()
    if not path.exists():
        write_pyramid(path, size, levels)
    info: dict[str, Any] = {
        "size": size, "level": level, "pyramid_levels": levels,
        "file_mib": path.stat().st_size / 2**20, "write_pyramid_seconds": time.perf_counter() - t0,
        "raw_level0_mib": size * size * 3 / 2**20,
    }  # fmt: skip
    out = work / f"out_{size}_{level}"
    out.mkdir(exist_ok=True)
    cmd = [sys.executable, __file__, "--child", str(path), "--child-out", str(out)]
    proc = subprocess.run(
        [*cmd, "--level", str(level)], capture_output=True, text=True, check=False
    )
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        info["error"] = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
    else:
        info.update(json.loads(lines[-1]))
        labels = out / "s_labels.ome.zarr"
        info["labels_zarr_mib"] = (
            sum(p.stat().st_size for p in labels.rglob("*") if p.is_file()) / 2**20
        )
    print(json.dumps(info))
    return info


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[20000])
    p.add_argument("--level", type=int, default=0)
    p.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    p.add_argument("--name", default="whole_slide.json")
    p.add_argument("--work", type=Path, default=None, help="folder for the slides (temporary)")
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)
    p.add_argument("--child-out", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        return child(args)
    import psutil

    report: dict[str, Any] = {
        "machine": {"cpu": platform.processor() or platform.machine(), "cores": psutil.cpu_count(),
                    "ram_gib": psutil.virtual_memory().total / 2**30},
        "model": "per-pixel fake network (dark -> nucleus), default post-processing",
        "blocks": "2048 px blocks + 256 px halo (BlockOptions defaults), tiles 512",
        "runs": [],
    }  # fmt: skip
    with tempfile.TemporaryDirectory(dir=args.work) as tmp:
        for size in args.sizes:
            report["runs"].append(run(size, args.level, Path(tmp)))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / args.name).write_text(json.dumps(report, indent=2) + "\n")
    print("| slide | level segmented | file | peak RSS | time |")
    for r in report["runs"]:
        if "error" in r:
            print(f"| {r['size']}² | {r['level']} | FAILED {r['error']} |")
            continue
        print(
            f"| {r['size']}² RGB | {r['level']} ({r['level_shape'][0]}²) | {r['file_mib']:.0f} MiB "
            f"| +{r['peak_rss_mib']:.0f} MiB | {r['seconds']:.0f} s |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
