"""Times Cellpose 3 on a list of images; run by ``bench/speed_vs_cellpose.py`` in its own venv.

Cellpose 3 pins ``numpy<2.1``, so it lives in ``.venv-cellpose`` (``make cellpose-venv``),
which borrows this project's torch through a ``.pth`` file. Its ``CPnet`` runs with random
weights (nothing is downloaded: ``pretrained_model=False``) at the nuclei model's scale
(``diam_mean`` 17 px), with as many torch threads as our pipeline. Each image runs twice:
at Cellpose's default cell-probability threshold, and with the threshold at the quantile
that keeps the image's true foreground fraction, so that its mask dynamics (flow following,
the costly half of its post-processing) run over as many pixels as a trained model's would.
A third run with ``compute_masks=False`` times the network (and its resizing) alone.

Cellpose's own size estimate (``diameter=0`` with a size model: ``SizeModel.eval``) costs two
more passes before the final one: the network at the model's own scale for the image's style
vector, then a whole segmentation (network and mask dynamics) at the size the style implies,
whose masks' median diameter is the estimate. Random weights give no meaningful style, so
those two steps are timed as ``SizeModel.eval`` runs them with a size model that reads the
true diameter from the style (an oracle; its regression is one dot product): the style pass
unscaled, then the segmentation at the true diameter with the foreground-keeping threshold.
``seconds_size_estimate`` is their sum; Cellpose's ``diameter=0`` run costs it plus
``seconds_with_dynamics``.

Input: a JSON list of ``{"path", "diameter", "foreground"}`` on stdin; output: JSON on stdout.
"""

from __future__ import annotations

import json
import logging
import sys
import time

import numpy as np

#: The object diameter Cellpose's nuclei model works at (its ``diam_mean``): images are
#: rescaled by ``NUCLEI_DIAMETER / diameter``, as the nuclei model would rescale them.
NUCLEI_DIAMETER = 17.0


def main() -> int:
    import imageio.v3 as iio
    import torch
    from cellpose import models, utils

    logging.disable(logging.WARNING)
    threads = int(sys.argv[1]) if len(sys.argv) > 1 else torch.get_num_threads()
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = models.CellposeModel(
        gpu=False, pretrained_model=False, model_type=None, diam_mean=NUCLEI_DIAMETER
    )
    jobs = json.load(sys.stdin)
    out = []
    warm = np.zeros((64, 64), np.float32)
    model.eval(warm, channels=[0, 0], diameter=30.0)
    for job in jobs:
        image = np.asarray(iio.imread(job["path"]))
        grey = image[..., :3].mean(axis=-1) if image.ndim == 3 else image
        start = time.perf_counter()
        _masks, flows, _ = model.eval(grey, channels=[0, 0], diameter=job["diameter"])
        plain = time.perf_counter() - start
        cellprob = np.asarray(flows[2])
        threshold = float(np.quantile(cellprob, 1.0 - job["foreground"]))
        start = time.perf_counter()
        masks, _, _ = model.eval(
            grey, channels=[0, 0], diameter=job["diameter"], cellprob_threshold=threshold
        )
        dynamics = time.perf_counter() - start
        start = time.perf_counter()
        model.eval(grey, channels=[0, 0], diameter=job["diameter"], compute_masks=False)
        network = time.perf_counter() - start
        start = time.perf_counter()  # SizeModel.eval, step 1: the style, at the model's scale
        model.eval(grey, channels=[0, 0], resample=False, compute_masks=False)
        masks_for_size, _, _ = model.eval(  # step 2: segmentation at the style's size
            grey, channels=[0, 0], diameter=job["diameter"], cellprob_threshold=threshold,
            resample=False,
        )  # fmt: skip
        utils.diameters(masks_for_size)
        size_estimate = time.perf_counter() - start
        out.append(
            {
                "seconds_network_only": network,
                "path": job["path"],
                "seconds_default_threshold": plain,
                "seconds_with_dynamics": dynamics,
                "seconds_size_estimate": size_estimate,
                "objects_with_dynamics": int(masks.max()),
            }
        )
    json.dump({"threads": threads, "cellpose_version": _version(), "images": out}, sys.stdout)
    return 0


def _version() -> str:
    from importlib.metadata import version

    return version("cellpose")


if __name__ == "__main__":
    sys.exit(main())
