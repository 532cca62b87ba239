"""Our U-Net pipeline against Cellpose 3 on the same DSB images, same CPU, same run.

Issue 21's peer anchor. On 20 images spread over the DSB 2018 validation split (seed 0,
15 %, as training holds out) it times, per image, end to end (numpy image in, labels out):

- ours with the default backend (ONNX Runtime on the CPU when the ``onnx`` extra is
  installed) and on PyTorch, with the model's default parameters (``diameter`` auto for a
  size-aware model: the size is estimated from each image), and with the default backend
  given each image's true object diameter, as Cellpose is;
- Cellpose 3's ``CPnet`` with random weights and its own pre- and post-processing, given the
  image's true object diameter (``bench/_cellpose_worker.py``, in ``.venv-cellpose``:
  ``make cellpose-venv``), once at its default cell-probability threshold and once with the
  threshold that keeps the true foreground fraction, so that its mask dynamics run;
- Cellpose 3 estimating the size itself as ``diameter=0`` does (``SizeModel.eval``: a style
  pass and a whole segmentation before the final one; timed with an oracle size model, see
  the worker), the like-for-like anchor of our ``auto``.

Ours runs before and after Cellpose and keeps each image's faster time, so a change of load
during the run does not favour either side. Writes ``bench/results/speed_vs_cellpose_cpu.json``
and prints a Markdown table::

    .venv/bin/python bench/speed_vs_cellpose.py --images 20
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from napari_cellseg.inference.api import predict
from napari_cellseg.inference.onnx_backend import choose_backend, cpu_bf16_supported
from napari_cellseg.io.images import read_image, read_labels
from napari_cellseg.labels.sizes import median_diameter
from napari_cellseg.models import load_weights
from napari_cellseg.params import PredictParams
from napari_cellseg.training.pairs import scan_training_folders
from napari_cellseg.training.split import split_pairs

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT.parent / "shared" / "data" / "dsb2018" / "stage1_train"


def pick_images(data: Path, count: int) -> list:
    """``count`` pairs spread evenly over the seeded validation split, in name order."""
    _, val = split_pairs(scan_training_folders([data]), 0.15, seed=0)
    step = max(1, len(val) // count)
    return val[::step][:count]


def time_ours(images: list[np.ndarray], loaded, params) -> list[float]:
    """Seconds per image, end to end (``params``: one PredictParams, or one per image)."""
    out = []
    each = params if isinstance(params, list) else [params] * len(images)
    for image, run in zip(images, each, strict=True):
        start = time.perf_counter()
        predict(image, loaded, run)
        out.append(time.perf_counter() - start)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--images", type=int, default=20)
    parser.add_argument(
        "--weights", type=Path, default=ROOT / "sample_data/models/unet_dsb.safetensors"
    )
    parser.add_argument("--cellpose-python", type=Path, default=ROOT / ".venv-cellpose/bin/python")
    parser.add_argument(
        "--out", type=Path, default=ROOT / "bench/results/speed_vs_cellpose_cpu.json"
    )
    args = parser.parse_args()
    if not args.cellpose_python.exists():
        sys.exit(f"{args.cellpose_python} not found: run 'make cellpose-venv' first")
    threads = torch.get_num_threads()
    pairs = pick_images(args.data, args.images)
    images = [np.asarray(read_image(p.image_path).data) for p in pairs]
    truths = [np.asarray(read_labels(p.mask_path)) for p in pairs]
    jobs = [
        {
            "path": str(p.image_path),
            "diameter": float(median_diameter(t) or 30.0),
            "foreground": float(np.clip((t > 0).mean(), 0.01, 0.99)),
        }
        for p, t in zip(pairs, truths, strict=True)
    ]
    loaded = load_weights(args.weights)
    params = PredictParams(device="cpu")
    torch_params = replace(params, backend="torch")
    # opt-in backends timed too where they apply: bf16 (CPUs with bfloat16 instructions),
    # int8 (U-Nets on ONNX Runtime)
    extra = [
        name
        for name, applies in (
            ("bf16", cpu_bf16_supported()),
            ("int8", choose_backend("int8", loaded.card.family, torch.device("cpu"))[0] == "int8"),
        )
        if applies
    ]
    for p in (params, torch_params, *(replace(params, backend=n) for n in extra)):
        predict(images[0][:64, :64], loaded, p)  # warm-up (loads, exports ONNX once)
    given = [replace(params, diameter=float(np.clip(j["diameter"], 2, 500))) for j in jobs]

    def time_extra() -> dict[str, tuple[np.ndarray, np.ndarray]]:
        return {
            name: (
                time_ours(images, loaded, replace(params, backend=name)),
                time_ours(images, loaded, [replace(p, backend=name) for p in given]),
            )
            for name in extra
        }

    first = time_ours(images, loaded, params)
    first_torch = time_ours(images, loaded, torch_params)
    first_given = time_ours(images, loaded, given)
    first_extra = time_extra()
    result = subprocess.run(
        [str(args.cellpose_python), str(ROOT / "bench/_cellpose_worker.py"), str(threads)],
        input=json.dumps(jobs), capture_output=True, text=True, check=True,
    )  # fmt: skip
    cellpose = json.loads(result.stdout)
    second = time_ours(images, loaded, params)
    second_torch = time_ours(images, loaded, torch_params)
    second_given = time_ours(images, loaded, given)
    second_extra = time_extra()
    ours = np.minimum(first, second)
    ours_given = np.minimum(first_given, second_given)
    ours_torch = np.minimum(first_torch, second_torch)
    cp_plain = np.array([r["seconds_default_threshold"] for r in cellpose["images"]])
    cp_dyn = np.array([r["seconds_with_dynamics"] for r in cellpose["images"]])
    cp_net = np.array([r["seconds_network_only"] for r in cellpose["images"]])
    cp_auto = cp_dyn + np.array([r["seconds_size_estimate"] for r in cellpose["images"]])
    summary = {
        "images": len(images),
        "ours_s": float(ours.sum()),
        "ours_torch_s": float(ours_torch.sum()),
        "ours_given_diameter_s": float(ours_given.sum()),
        "cellpose_default_threshold_s": float(cp_plain.sum()),
        "cellpose_with_dynamics_s": float(cp_dyn.sum()),
        "cellpose_network_only_s": float(cp_net.sum()),
        "cellpose_size_estimated_s": float(cp_auto.sum()),
        "ratio_auto_vs_cellpose_size_estimated": float(cp_auto.sum() / ours.sum()),
        "ratio_default_threshold": float(cp_plain.sum() / ours.sum()),
        "ratio_with_dynamics": float(cp_dyn.sum() / ours.sum()),
        "ratio_torch_with_dynamics": float(cp_dyn.sum() / ours_torch.sum()),
        "ratio_given_diameter_with_dynamics": float(cp_dyn.sum() / ours_given.sum()),
    }
    for name in extra:
        auto = np.minimum(first_extra[name][0], second_extra[name][0])
        known = np.minimum(first_extra[name][1], second_extra[name][1])
        summary.update(
            {
                f"ours_{name}_s": float(auto.sum()),
                f"ours_{name}_given_diameter_s": float(known.sum()),
                f"ratio_{name}_with_dynamics": float(cp_dyn.sum() / auto.sum()),
                f"ratio_{name}_given_diameter_with_dynamics": float(cp_dyn.sum() / known.sum()),
                f"ratio_{name}_auto_vs_cellpose_size_estimated": float(cp_auto.sum() / auto.sum()),
            }
        )
    record = {
        "hardware": {
            "cpu": platform.processor() or platform.machine(),
            "cores": os.cpu_count(),
            "torch_threads": threads,
            "torch": torch.__version__,
            "cellpose": cellpose["cellpose_version"],
            "cellpose_threads": cellpose["threads"],
        },
        "weights": str(args.weights),
        "params": params.to_dict(),
        "summary": summary,
        "per_image": [
            {
                "image": p.name,
                "shape": list(im.shape[:2]),
                "true_diameter": j["diameter"],
                "ours_s": [a, b],
                "ours_torch_s": [c, d],
                "ours_given_diameter_s": [e, f],
                **{
                    f"ours_{name}{part}_s": [
                        float(first_extra[name][which][i]), float(second_extra[name][which][i])
                    ]
                    for name in extra
                    for which, part in ((0, ""), (1, "_given_diameter"))
                },
                **{k: v for k, v in cp.items() if k != "path"},
            }
            for i, (p, im, j, a, b, c, d, e, f, cp) in enumerate(zip(
                pairs, images, jobs, first, second, first_torch, second_torch, first_given,
                second_given, cellpose["images"], strict=True,
            ))
        ],
    }  # fmt: skip
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=2))
    print(f"wrote {args.out}")
    print("| pipeline | seconds for the images | Cellpose 3 / this |")
    print("|---|---|---|")
    engine = "ONNX Runtime" if params.backend != "torch" else "PyTorch"
    print(f"| ours, default backend ({engine} if installed) | {summary['ours_s']:.1f} | "
          f"{summary['ratio_with_dynamics']:.1f}x (with dynamics), "
          f"{summary['ratio_default_threshold']:.1f}x (default threshold) |")  # fmt: skip
    print(f"| ours on PyTorch | {summary['ours_torch_s']:.1f} | "
          f"{summary['ratio_torch_with_dynamics']:.1f}x (with dynamics) |")  # fmt: skip
    print(f"| ours, default backend, given the true diameter | "
          f"{summary['ours_given_diameter_s']:.1f} | "
          f"{summary['ratio_given_diameter_with_dynamics']:.1f}x (with dynamics) |")  # fmt: skip
    for name in extra:
        both = summary[f"ratio_{name}_auto_vs_cellpose_size_estimated"]
        print(f"| ours, {name} backend | {summary[f'ours_{name}_s']:.1f} | "
              f"{summary[f'ratio_{name}_with_dynamics']:.1f}x (with dynamics); size estimated "
              f"on both sides {both:.1f}x |")  # fmt: skip
        seconds = summary[f"ours_{name}_given_diameter_s"]
        ratio = summary[f"ratio_{name}_given_diameter_with_dynamics"]
        print(f"| ours, {name} backend, given the true diameter | {seconds:.1f} | "
              f"{ratio:.1f}x (with dynamics) |")  # fmt: skip
    print(f"| Cellpose 3, default threshold | {summary['cellpose_default_threshold_s']:.1f} | 1 |")
    print(f"| Cellpose 3, with dynamics | {summary['cellpose_with_dynamics_s']:.1f} | 1 |")
    print(f"| Cellpose 3, network only | {summary['cellpose_network_only_s']:.1f} | – |")
    print(f"| Cellpose 3 estimating the size (diameter=0), with dynamics | "
          f"{summary['cellpose_size_estimated_s']:.1f} | ours auto: "
          f"{summary['ratio_auto_vs_cellpose_size_estimated']:.1f}x |")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
