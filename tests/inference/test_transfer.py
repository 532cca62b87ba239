"""Host <-> device copies (:mod:`napari_cellseg.inference.transfer`) and the two-deep
pipeline of a stack's planes, run on the CPU with the GPU's code path (blending on the
device, maps fetched later in the post-processing threads): the same maps, labels and
tables as plane after plane. ``tests/gpu/test_cuda.py`` runs them on CUDA with pinned memory."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_cellseg.events import drain
from napari_cellseg.inference import plane_overlap, planes, transfer
from napari_cellseg.inference.device_blend import DeviceTileBlender
from napari_cellseg.inference.model_runner import ModelRunner
from napari_cellseg.inference.tiling import Tile
from napari_cellseg.inference.transfer import HostMap, fetched, pinned, to_device
from napari_cellseg.params import PredictParams

CPU = torch.device("cpu")


def test_to_device_on_the_cpu_shares_a_contiguous_array_and_copies_a_strided_one() -> None:
    a = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    assert np.shares_memory(to_device(a, CPU).numpy(), a)
    strided = a[:, ::2, ::-1]
    t = to_device(strided, CPU)
    assert t.is_contiguous() and np.array_equal(t.numpy(), strided)
    tensor = torch.ones(3)
    assert to_device(tensor, CPU) is tensor


def test_pinned_memory_only_on_cuda_and_only_while_enabled(monkeypatch) -> None:
    cuda = torch.device("cuda")  # a device object only: nothing is put on it here
    assert pinned(cuda) and not pinned(CPU) and not pinned(torch.device("mps"))
    monkeypatch.setattr(transfer, "PINNED", False)
    assert not pinned(cuda)


def test_a_host_map_holds_the_tensors_values_and_fetched_waits_only_for_maps() -> None:
    tensor = torch.arange(12, dtype=torch.float32).reshape(3, 4)
    copy = HostMap(tensor)  # on the CPU the tensor's own memory, as tensor.cpu() gives
    assert copy.shape == (3, 4)
    np.testing.assert_array_equal(fetched(copy), np.arange(12, dtype=np.float32).reshape(3, 4))
    labels = np.zeros((2, 2), np.uint16)
    assert fetched(labels) is labels


def test_the_device_blender_fetched_later_gives_its_result_and_checks_coverage() -> None:
    def blender() -> DeviceTileBlender:
        b = DeviceTileBlender(2, (6, 8), 2, CPU)
        b.add(Tile(0, 0, 6, 5, inner_right=True), torch.full((2, 6, 5), 0.25))
        return b

    now = blender()
    now.add(Tile(0, 3, 6, 8, inner_left=True), torch.full((2, 6, 5), 0.75))
    later = blender()
    later.add(Tile(0, 3, 6, 8, inner_left=True), torch.full((2, 6, 5), 0.75))
    np.testing.assert_array_equal(later.fetch_later().array(), now.result())
    gap = blender()  # columns 5-7 never covered: said, on the host, without reading weights
    with pytest.raises(Exception, match="not covered by any tile"):
        gap.fetch_later()


def _stack_run(stack, model, threads, monkeypatch):
    monkeypatch.setattr(plane_overlap, "POST_THREADS", threads)
    params = PredictParams(
        axes="TYX", diameter="off", backend="torch", tile_size=128, overlap=32, tta=2,
        keep_probabilities=threads == 0,
    )  # fmt: skip
    return drain(planes.iter_predict_planes(stack, model, params))


def test_a_stacks_maps_fetched_later_are_the_plane_by_plane_ones(
    sample_planes, demo_unet, monkeypatch
) -> None:
    """The GPU's two-deep pipeline on the CPU: blended on the device, each map handed to its
    post-processing thread as a :class:`HostMap`; the result holds plain arrays."""
    stack = sample_planes[:3, :200, :230].copy()  # padded tiles at the bottom and right
    monkeypatch.setattr(ModelRunner, "device_blend", True)
    handed: list[object] = []
    post = planes._post_plane

    def recording(card, output, *args):
        handed.append(output)
        return post(card, output, *args)

    monkeypatch.setattr(planes, "_post_plane", recording)
    alone = _stack_run(stack, demo_unet, 0, monkeypatch)
    assert not any(isinstance(o, HostMap) for o in handed)
    handed.clear()
    overlapped = _stack_run(stack, demo_unet, 2, monkeypatch)
    assert len(handed) == 3 and all(isinstance(o, HostMap) for o in handed)
    assert alone.labels.max() > 5
    np.testing.assert_array_equal(overlapped.labels, alone.labels)
    for ours, theirs in zip(overlapped.raw, alone.raw, strict=True):
        assert isinstance(ours, np.ndarray)
        np.testing.assert_array_equal(ours, theirs)
    for key in alone.table:
        np.testing.assert_array_equal(overlapped.table[key], alone.table[key])
