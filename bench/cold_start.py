"""A command's whole wait: ``cellseg predict`` in a new process, before and after known exports.

``bench/inference.py`` times images in a warm process. A user who runs ``cellseg predict`` on
an image, and every batch worker, also waits for the process to start: imports, loading the
weight file, opening the network. This script runs the CLI in fresh processes, interleaved,
with the ONNX export already cached (as on any run after a machine's first):

- ``before``: every process builds the PyTorch model, as before ``inference/onnx_known.py``
  (the export is found by a hash of the built model's weights, so smp, timm and torchvision
  are imported and the file's tensors read into a model that never runs);
- ``now``: today's CLI, which opens the recorded export of an unchanged file without
  building the model.

Each run's wall time (the process from start to exit), peak resident memory (``wait4``),
and whether smp was imported are recorded; the label files of both are compared.

    .venv/bin/python bench/cold_start.py                        # 7 pairs, the demo U-Net
    .venv/bin/python bench/cold_start.py --repeats 3 --name cold_start_cpu_quick.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "sample_data" / "images"

#: The CLI in a new process; ``before`` first makes the model runner load files as it did
#: before known exports (always building the model). The last stderr line says whether smp
#: was imported.
DRIVER = """
import sys
if sys.argv[1] == "before":
    from napari_cellseg.inference import model_runner
    from napari_cellseg.models.weights import load_weights
    model_runner.load = lambda path, device: load_weights(path, device=device)
from napari_cellseg.cli.app import main
status = main(sys.argv[2:])
print("smp imported:", "segmentation_models_pytorch" in sys.modules, file=sys.stderr)
sys.exit(status)
"""


def run_once(mode: str, argv: list[str], env: dict[str, str]) -> dict:
    """One fresh process of ``mode``: wall seconds, peak RSS in MiB, smp imported."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        start = time.perf_counter()
        process = subprocess.Popen(
            [sys.executable, "-c", DRIVER, mode, *argv], stdout=out, stderr=err, env=env
        )
        _, status, usage = os.wait4(process.pid, 0)  # this child's own peak memory
        wall = time.perf_counter() - start
        process.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        printed, messages = out.read(), err.read()
    if process.returncode != 0:
        raise SystemExit(f"{mode} failed ({process.returncode}): {messages[-2000:]}")
    return {
        "wall_s": round(wall, 3),
        "peak_rss_mib": round(usage.ru_maxrss / 1024, 1),
        "smp_imported": "smp imported: True" in messages,
        "output": printed.strip().splitlines(),
    }


def summary(runs: list[dict]) -> dict:
    walls = [r["wall_s"] for r in runs]
    rss = [r["peak_rss_mib"] for r in runs]
    return {
        "wall_s": walls,
        "wall_best_s": min(walls),
        "wall_median_s": round(statistics.median(walls), 3),
        "peak_rss_mib": rss,
        "peak_rss_median_mib": round(statistics.median(rss), 1),
        "smp_imported": sorted({r["smp_imported"] for r in runs}),
    }


def same_labels(a: Path, b: Path) -> bool:
    import tifffile

    files = sorted(p.name for p in a.glob("*.tif"))
    return files == sorted(p.name for p in b.glob("*.tif")) and all(
        np.array_equal(tifffile.imread(a / f), tifffile.imread(b / f)) for f in files
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--weights", type=Path, default=ROOT / "sample_data/models/unet_dsb.safetensors"
    )
    parser.add_argument(
        "--cases",
        nargs="+",
        default=["one", "three"],
        choices=["one", "three"],
        help="one: dsb_fluorescence.png alone; three: the three sample images in one command",
    )
    parser.add_argument("--repeats", type=int, default=7, help="pairs of processes per case")
    parser.add_argument(
        "--extra", default="", help='more cellseg predict options, e.g. --extra="--diameter off"'
    )
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    parser.add_argument("--name", default="cold_start_cpu.json")
    args = parser.parse_args()
    extra = shlex.split(args.extra)

    images = {
        "one": [SAMPLES / "dsb_fluorescence.png"],
        "three": sorted(SAMPLES.glob("*.png")),
    }
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        tmp = Path(folder)
        env = {**os.environ, "NAPARI_CELLSEG_CACHE": str(tmp / "cache")}
        for case in args.cases:
            outs = {mode: tmp / f"{case}-{mode}" for mode in ("before", "now")}

            def argv(mode: str, case: str = case, outs: dict = outs) -> list[str]:
                paths = [str(p) for p in images[case]]
                weights = ["--weights", str(args.weights), "--out", str(outs[mode])]
                return ["predict", *paths, *weights, *extra]

            run_once("now", argv("now"), env)  # the export made and recorded: not timed
            runs: dict[str, list[dict]] = {"before": [], "now": []}
            for _ in range(args.repeats):
                for mode in ("before", "now"):
                    runs[mode].append(run_once(mode, argv(mode), env))
            row = {
                "case": case,
                "images": [p.name for p in images[case]],
                "before": summary(runs["before"]),
                "now": summary(runs["now"]),
                "same_labels": same_labels(outs["before"], outs["now"]),
                "cli_output_now": runs["now"][-1]["output"],
            }
            row["speedup_median"] = round(
                row["before"]["wall_median_s"] / row["now"]["wall_median_s"], 2
            )
            rows.append(row)
    result = {
        "hardware": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count()},
        "weights": args.weights.name,
        "extra_options": extra,
        "note": "fresh process per run, interleaved before/now, export cached beforehand",
        "results": rows,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / args.name).write_text(json.dumps(result, indent=1))
    print(
        "| case | before s (median) | now s (median) | speed-up | peak MiB before / now "
        "| smp imported before / now | same labels |"
    )
    print("|---|---|---|---|---|---|---|")
    for row in rows:
        b, n = row["before"], row["now"]
        print(
            f"| {row['case']} | {b['wall_median_s']:.2f} | {n['wall_median_s']:.2f} "
            f"| {row['speedup_median']:.2f}× | {b['peak_rss_median_mib']:.0f} / "
            f"{n['peak_rss_median_mib']:.0f} | {b['smp_imported']} / {n['smp_imported']} "
            f"| {row['same_labels']} |"
        )
    print(f"wrote {args.out / args.name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
