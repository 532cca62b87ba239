"""The Mask R-CNN runner agrees with torchvision's own output, at a fraction of the memory."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from napari_cellseg.core.runner import ModelRunner, _to_detections, is_out_of_memory
from napari_cellseg.models import ModelCard, build_model
from napari_cellseg.models.weights import LoadedModel
from tiny_models import TINY_MASKRCNN


def test_per_box_masks_match_torchvision_pasting() -> None:
    torch.manual_seed(0)
    args = {**TINY_MASKRCNN, "min_size": 96, "max_size": 160, "detections_per_img": 25}
    model = build_model("maskrcnn", **args).eval()
    runner = ModelRunner(
        LoadedModel(model, ModelCard.for_model("maskrcnn", args), Path("m"), "test"),
        torch.device("cpu"),
    )
    tile = np.random.default_rng(1).random((3, 80, 120), dtype=np.float32)
    (ours,) = runner.maskrcnn_detections([tile])
    with torch.no_grad():
        (reference,) = model([torch.from_numpy(tile)])
    theirs = _to_detections(reference, (80, 120))
    assert len(ours) == len(theirs) > 0
    np.testing.assert_array_equal(ours.boxes, theirs.boxes)
    np.testing.assert_allclose(ours.scores, theirs.scores, rtol=1e-5)
    ious = []
    for a, b in zip(ours.masks, theirs.masks, strict=True):
        a, b = a > 0.5, b > 0.5
        union = np.logical_or(a, b).sum()
        ious.append(1.0 if union == 0 else np.logical_and(a, b).sum() / union)
    assert np.mean(ious) > 0.9


def test_out_of_memory_errors_are_recognised() -> None:
    assert is_out_of_memory(torch.OutOfMemoryError("CUDA out of memory"))
    assert is_out_of_memory(RuntimeError("MPS backend out of memory"))
    assert not is_out_of_memory(RuntimeError("shape mismatch"))
