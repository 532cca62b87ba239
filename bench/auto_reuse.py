"""``diameter="auto"``: the final run reusing the size estimate's pass, against running again.

When the size estimate's quick pass at the scale finally chosen saw the whole image (small
images, no augmentation), ``iter_predict`` takes its network output instead of running the
network again (:mod:`napari_cellseg.inference.diameter`, ``keep``). This script segments the
same DSB images with the demo U-Net and ``diameter="auto"``, the reuse on and off,
interleaved (on, off, off, on, ...), and records the seconds for all the images, how many
reused a pass, and whether every label image is identical. Writes
bench/results/auto_reuse_cpu.json and prints a table.

    .venv/bin/python bench/auto_reuse.py --images 20 --repeats 2
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np

from napari_cellseg.inference import api, planes
from napari_cellseg.io.images import read_image
from napari_cellseg.models.weights import load_weights
from napari_cellseg.params import PredictParams

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "dsb2018" / "stage1_train" / "images"


class Switch:
    """Wraps ``iter_predict_planes``: counts the final runs offered a pass, and can refuse it."""

    def __init__(self) -> None:
        self.reuse, self.offered = True, 0
        self.real = planes.iter_predict_planes

    def __call__(self, *args, **kwargs):
        if "network_output" in kwargs:  # the final run (quick passes do not pass it)
            self.offered += kwargs["network_output"] is not None
            if not self.reuse:
                kwargs["network_output"] = None
        return self.real(*args, **kwargs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=20, help="spread evenly over the folder")
    parser.add_argument("--repeats", type=int, default=2, help="on/off pairs, in both orders")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="a folder of images")
    parser.add_argument(
        "--weights", type=Path, default=ROOT / "sample_data/models/unet_dsb.safetensors"
    )
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    args = parser.parse_args()
    files = sorted(args.data.glob("*.png"))
    if not files:  # the bundled samples (tests, machines without ../shared)
        files = sorted((ROOT / "sample_data" / "images").glob("*.png"))
    step = max(1, len(files) // args.images)
    files = files[::step][: args.images]
    images = [np.asarray(read_image(f).data)[..., :3] for f in files]
    model = load_weights(args.weights)
    switch = Switch()
    api._planes.iter_predict_planes = switch  # the module attribute iter_predict calls
    api.predict(images[0], model, PredictParams())  # warm-up (ONNX export, caches)
    seconds: dict[bool, list[float]] = {True: [], False: []}
    identical, offered = True, []
    for _ in range(args.repeats):
        for order in ((True, False), (False, True)):
            labels: dict[bool, list[np.ndarray]] = {}
            for reuse in order:
                switch.reuse, switch.offered = reuse, 0
                start = time.perf_counter()
                labels[reuse] = [api.predict(im, model, PredictParams()).labels for im in images]
                seconds[reuse].append(time.perf_counter() - start)
                offered.append(switch.offered)
            pairs = zip(labels[True], labels[False], strict=True)
            identical &= all(np.array_equal(a, b) for a, b in pairs)
    result = {
        "machine": f"{platform.processor() or platform.machine()}",
        "images": [f.name for f in files],
        "seconds_reuse": seconds[True],
        "seconds_run_again": seconds[False],
        "best_reuse": min(seconds[True]),
        "best_run_again": min(seconds[False]),
        "speedup_best": min(seconds[False]) / min(seconds[True]),
        "speedup_median": float(np.median(seconds[False]) / np.median(seconds[True])),
        "images_with_a_reusable_pass": max(offered),
        "labels_identical": bool(identical),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "auto_reuse_cpu.json"
    path.write_text(json.dumps(result, indent=1))
    print(f"wrote {path}")
    head = "| images | reusable | run again s (best) | reuse s (best) | speed-up best / median |"
    print(head + " labels identical |")
    print("|---|---|---|---|---|---|")
    print(
        f"| {len(images)} | {result['images_with_a_reusable_pass']} | "
        f"{result['best_run_again']:.2f} | {result['best_reuse']:.2f} | "
        f"{result['speedup_best']:.2f} / {result['speedup_median']:.2f} | {identical} |"
    )


if __name__ == "__main__":
    main()
