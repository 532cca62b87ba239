"""The Mask R-CNN runner agrees with torchvision's own output, at a fraction of the memory."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from napari_cellseg.inference.detections import Detections
from napari_cellseg.inference.model_runner import ModelRunner, is_out_of_memory
from napari_cellseg.models import ModelCard, build_model
from napari_cellseg.models.weights import LoadedModel
from tiny_models import TINY_MASKRCNN, TINY_UNET


def _to_detections(output: dict[str, torch.Tensor], shape: tuple[int, int]) -> Detections:
    """torchvision's own output (full-tile masks) as Detections, for comparison."""
    boxes = output["boxes"].float().cpu().numpy()
    if len(boxes) == 0:
        return Detections()
    h, w = int(shape[0]), int(shape[1])
    x0 = np.clip(np.floor(boxes[:, 0]), 0, w - 1).astype(np.int64)
    y0 = np.clip(np.floor(boxes[:, 1]), 0, h - 1).astype(np.int64)
    x1 = np.clip(np.ceil(boxes[:, 2]), x0 + 1, w).astype(np.int64)
    y1 = np.clip(np.ceil(boxes[:, 3]), y0 + 1, h).astype(np.int64)
    masks = output["masks"][:, 0].float().cpu().numpy()
    crops = [
        np.ascontiguousarray(masks[i, y0[i] : y1[i], x0[i] : x1[i]], dtype=np.float32)
        for i in range(len(boxes))
    ]
    return Detections(
        np.stack([y0, x0, y1, x1], axis=1),
        output["scores"].float().cpu().numpy(),
        output["labels"].cpu().numpy(),
        crops,
    )


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


def _runner(family: str, args: dict) -> ModelRunner:
    torch.manual_seed(0)
    model = build_model(family, **args).eval()
    card = ModelCard.for_model(family, args)
    return ModelRunner(LoadedModel(model, card, Path("m"), "test"), torch.device("cpu"))


def _count_passes(module: torch.nn.Module) -> list[int]:
    """Record the batch size of each forward pass through ``module``."""
    sizes: list[int] = []
    module.register_forward_pre_hook(lambda _m, inputs: sizes.append(len(inputs[0])))
    return sizes


def test_cpu_passes_unet_tiles_one_at_a_time_with_the_same_output() -> None:
    runner = _runner("unet", TINY_UNET)
    assert runner.tiles_per_pass(4) == 1
    batch = np.random.default_rng(2).random((3, 3, 64, 64), dtype=np.float32)
    passes = _count_passes(runner.model)
    together = runner.unet_probabilities(batch)
    assert passes == [1, 1, 1]
    assert together.shape == (3, 3, 64, 64)
    for i in range(3):
        np.testing.assert_allclose(together[i], runner.unet_probabilities(batch[i : i + 1])[0])


def test_cpu_passes_maskrcnn_tiles_one_at_a_time_in_order() -> None:
    runner = _runner("maskrcnn", TINY_MASKRCNN)
    rng = np.random.default_rng(3)
    tiles = [rng.random((3, 64, 96), dtype=np.float32) for _ in range(3)]
    passes = _count_passes(runner.model.backbone)
    together = runner.maskrcnn_detections(tiles)
    assert passes == [1, 1, 1]
    assert len(together) == 3
    assert sum(len(d) for d in together) > 0  # random weights still detect something
    for tile, detections in zip(tiles, together, strict=True):
        (alone,) = runner.maskrcnn_detections([tile])
        np.testing.assert_array_equal(detections.boxes, alone.boxes)
        np.testing.assert_array_equal(detections.scores, alone.scores)


def test_accelerators_keep_whole_batches() -> None:
    runner = _runner("unet", TINY_UNET)
    runner.device = torch.device("cuda")  # only the planning is asked, nothing runs
    assert runner.tiles_per_pass(4) == 4


def test_tta_is_the_mean_of_the_transformed_passes_mapped_back() -> None:
    from napari_cellseg.inference.model_runner import TTA_TRANSFORMS

    runner = _runner("unet", TINY_UNET)
    batch = np.random.default_rng(4).random((2, 3, 64, 96), dtype=np.float32)
    expected, inputs = [], []
    for transpose, flip_rows, flip_columns in TTA_TRANSFORMS:
        copy = batch.transpose(0, 1, 3, 2) if transpose else batch
        copy = copy[:, :, ::-1] if flip_rows else copy
        copy = copy[:, :, :, ::-1] if flip_columns else copy
        inputs.append(np.ascontiguousarray(copy).tobytes())
        out = runner.unet_probabilities(np.ascontiguousarray(copy))
        out = out[:, :, :, ::-1] if flip_columns else out
        out = out[:, :, ::-1] if flip_rows else out
        expected.append(out.transpose(0, 1, 3, 2) if transpose else out)
    # a duplicated transform would make two copies identical and still average correctly
    assert len(set(inputs)) == 8
    for n in (2, 4, 8):
        np.testing.assert_allclose(
            runner.unet_probabilities(batch, n), np.mean(expected[:n], axis=0), atol=1e-5
        )
    np.testing.assert_array_equal(runner.unet_probabilities(batch, 1), expected[0])
