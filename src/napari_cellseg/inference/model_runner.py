"""Running a loaded model on batches of tiles: device, precision, model cache.

``ModelRunner`` turns numpy tiles into numpy outputs: U-Net probability maps (activation
applied) or Mask R-CNN :class:`Detections` in tile coordinates. On CUDA it uses inference
mode, channels-last memory and bfloat16/float16 autocast; on the CPU, channels-last tiles,
and bfloat16 autocast with ``backend="bf16"``. On the CPU it passes the tiles of
a batch through the network one at a time: batching gains no speed there
(``bench/inference.py``: batch 4 ran at 0.71–0.72 MPix/s model-only against 0.76–0.82 for
batch 1) and held the activations of every tile at once (a 1024² image peaked at 460–506 MiB
of RSS, against 99–160 MiB one tile at a time). The exception is ONNX Runtime with small
tiles (small images or planes of one tile): up to :data:`CPU_ONNX_PASS_PIXELS` pixels a pass
(4 of 256²); on this project's CPU their outputs were identical bit for bit to one at a time
(:func:`tiles_per_pass`).
Test-time augmentation runs the network on flipped and transposed copies of each tile and
maps each output back: a U-Net's probabilities are then averaged, a Mask R-CNN's detections
fused (``core.detection_tta``).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import numpy as np
import torch

from napari_cellseg.device import channels_last
from napari_cellseg.errors import first_line
from napari_cellseg.families import family_part
from napari_cellseg.inference.detections import Detections
from napari_cellseg.inference.maskrcnn_stages import (
    MaskChoice,
    box_detections,
    roi_heads,
    unshrunk,
)
from napari_cellseg.inference.onnx_backend import choose_backend, onnx_unet
from napari_cellseg.inference.onnx_int8 import int8_unet
from napari_cellseg.inference.onnx_known import known_session, load, remember
from napari_cellseg.inference.transfer import to_device
from napari_cellseg.models.weights import LoadedModel

# torch >= 2.5 has torch.OutOfMemoryError; older releases only torch.cuda.OutOfMemoryError.
OutOfMemoryError: type[BaseException] = getattr(
    torch, "OutOfMemoryError", getattr(torch.cuda, "OutOfMemoryError", RuntimeError)
)

_CACHE: OrderedDict[tuple, LoadedModel] = OrderedDict()
_CACHE_LOCK = threading.Lock()
_CACHE_SIZE = 2
#: ``torch.compile``'s backend for ``PredictParams.compile`` (the tests use ``"eager"``).
COMPILE_BACKEND = "inductor"
#: Why ``torch.compile`` failed in this process, per family: later runs do not try again.
_COMPILE_FAILED: dict[str, str] = {}
#: Tiles per forward pass on the CPU, whatever the batch size (see the module docstring).
CPU_TILES_PER_PASS = 1
#: ...except on ONNX Runtime, where tiles go together up to this many pixels a pass (4 of
#: 256², 2 of 320²): on 2 cores 1.1-1.2x faster per tile at 256² and 1.6x at 128² against
#: one at a time; larger tiles gained 2-8 % with two a pass, for twice the activations, so
#: the activations of one pass stay those of one 512² tile (PyTorch gained nothing from
#: 256² up, and lost 20 % at 384²). Session 18, docs/benchmarks.md.
CPU_ONNX_PASS_PIXELS = 512 * 512
#: Test-time augmentation's copies of a tile, in the order used: (transpose, flip rows,
#: flip columns). The first 2, 4 or all 8 (every flip and rotation by 90°) are averaged.
TTA_TRANSFORMS = (
    (False, False, False),
    (False, False, True),
    (False, True, False),
    (False, True, True),
    (True, False, False),
    (True, False, True),
    (True, True, False),
    (True, True, True),
)


def cached_load(path: str | Path, device: torch.device) -> tuple[LoadedModel, bool]:
    """Load ``path`` onto ``device``, reusing the last loads (keyed by file identity).

    Returns the loaded model and whether it came from the cache.
    """
    path = Path(path).resolve()
    stat = path.stat() if path.exists() else None
    key = (str(path), stat.st_mtime_ns if stat else 0, stat.st_size if stat else 0, str(device))
    with _CACHE_LOCK:
        if key in _CACHE:
            _CACHE.move_to_end(key)
            return _CACHE[key], True
    loaded = load(path, device)  # deferred when its ONNX export is known (.onnx_known)
    with _CACHE_LOCK:
        _CACHE[key] = loaded
        while len(_CACHE) > _CACHE_SIZE:
            _CACHE.popitem(last=False)
    return loaded, False


def clear_model_cache() -> None:
    """Forget cached models (frees their memory)."""
    with _CACHE_LOCK:
        _CACHE.clear()


def is_out_of_memory(error: BaseException) -> bool:
    """True for CUDA/MPS out-of-memory errors (the only errors we recover from)."""
    if isinstance(error, OutOfMemoryError):
        return True
    text = str(error).lower()
    return isinstance(error, RuntimeError) and "out of memory" in text


def tiles_per_pass(
    device: torch.device,
    batch_size: int,
    tile_shape: tuple[int, ...] | None = None,
    onnx: bool = False,
) -> int:
    """How many of ``batch_size`` tiles go through the network together on ``device``.

    The whole batch on a GPU. On the CPU :data:`CPU_TILES_PER_PASS`, except on ONNX Runtime
    (``onnx``) for small tiles (``tile_shape``: their ``(..., Y, X)``), which go together up
    to :data:`CPU_ONNX_PASS_PIXELS` pixels a pass.

    >>> cpu, cuda = torch.device("cpu"), torch.device("cuda")
    >>> tiles_per_pass(cpu, 4), tiles_per_pass(cuda, 4)
    (1, 4)
    >>> [tiles_per_pass(cpu, 8, (side, side), onnx=True) for side in (128, 256, 320, 544)]
    [8, 4, 2, 1]
    """
    if device.type != "cpu":
        return batch_size
    fixed = min(batch_size, CPU_TILES_PER_PASS)
    if not onnx or tile_shape is None:
        return fixed
    pixels = max(1, int(tile_shape[-2]) * int(tile_shape[-1]))
    return max(fixed, min(batch_size, CPU_ONNX_PASS_PIXELS // pixels))


class ModelRunner:
    """Runs one model on one device."""

    #: bfloat16 autocast on the CPU (``backend="bf16"`` on a CPU that has the instructions)
    cpu_bf16: bool = False
    #: U-Net planes blended on the device: ``None`` = on CUDA only (:attr:`blends_on_device`)
    device_blend: bool | None = None
    #: A plane blended on the device comes back as a :class:`~.transfer.HostMap` whose copy
    #: is still under way (set per run for a stack's planes on CUDA: :mod:`.transfer`)
    fetch_later: bool = False

    def __init__(
        self,
        loaded: LoadedModel,
        device: torch.device,
        *,
        mixed_precision: bool = True,
        backend: str = "torch",
        compile: bool = False,
    ) -> None:
        self.loaded = loaded
        #: ``torch.compile`` asked for (PyTorch runs only); :attr:`compiled` holds the
        #: compiled U-Net or Mask R-CNN backbone while it is in use.
        self.compile = compile
        self.compiled: Any = None
        #: ``PredictParams.backend`` asked for; :attr:`onnx` holds the ONNX Runtime session
        #: when a U-Net runs on it, :attr:`notice` says why another backend runs instead.
        self.backend = backend
        self.onnx: Any = None
        self.notice: str | None = None
        self.card = loaded.card
        self.device = device
        self._model: torch.nn.Module | None = None
        self.mixed_precision = mixed_precision and device.type == "cuda"
        #: Mask R-CNN: candidates scored below this get no mask and are left out (the mask
        #: head costs most of a CPU pass), unless their box meets one of the rectangles of
        #: ``mask_regions`` (one list per tile of the batch, tile coordinates: where tiles
        #: overlap, so that stitching sees every candidate). Set by the family's run_tiles.
        self.mask_min_score = 0.0
        self.mask_regions: list[list[tuple[int, int, int, int]]] | None = None
        self.move_to(device)

    @property
    def model(self) -> torch.nn.Module:
        """The PyTorch model on this runner's device, built and prepared when first asked
        for (a file whose ONNX export is known here runs without it: :mod:`.onnx_known`)."""
        if self._model is None:
            model = self.loaded.model.to(self.device).eval()
            prepare = family_part(self.card.family, "inference").prepare_model
            self._model = prepare(model, self.device)  # the family's own settings
        return self._model

    def move_to(self, device: torch.device) -> None:
        """Put the model on ``device`` (used for the CPU fallback)."""
        self.device = device
        self.mixed_precision = self.mixed_precision and device.type == "cuda"
        self._model = None  # moved and prepared for ``device`` when next asked for
        self.onnx = None
        self.compiled = None
        chosen, self.notice = choose_backend(self.backend, self.card.family, device)
        self.cpu_bf16 = chosen == "bf16"
        if chosen in ("onnx", "int8"):
            precision = "int8" if chosen == "int8" else "float32"
            self.onnx = known_session(self.loaded, precision)
            if self.onnx is not None:  # the model itself is not needed (nor built)
                return
        model = self.model  # built (if deferred) and moved here
        if chosen == "onnx":
            self.onnx, self.notice = onnx_unet(model, self.card.input_channels)
        elif chosen == "int8":
            self.onnx, self.notice = int8_unet(model, self.card)
        if self.onnx is not None:
            remember(self.loaded, self.onnx)
        elif self.compile:
            self._compile()

    def _compile(self) -> None:
        """``torch.compile`` the U-Net, or the Mask R-CNN's backbone (its convolutions: the
        detector's control flow around them stays eager); compiling itself happens at the
        first pass of each new kind of shape, where :meth:`drop_compile` is the way back."""
        failed = _COMPILE_FAILED.get(self.card.family)
        if failed is None:  # not already failed in this process
            target = self.model.backbone if self.card.family == "maskrcnn" else self.model
            try:
                self.compiled = torch.compile(target, backend=COMPILE_BACKEND)
                return
            except Exception as exc:  # e.g. a Python version that torch cannot compile for
                reason = first_line(exc)[:160]
                failed = f"torch.compile is not available here ({reason}); running without it"
        self.notice = f"{self.notice}; {failed}" if self.notice else failed

    def drop_compile(self, error: BaseException) -> str:
        """Go back to the eager network after ``error`` from the compiled one; the notice."""
        self.compiled = None
        reason = first_line(error)[:160]
        message = f"torch.compile could not compile this model ({reason}); running without it"
        _COMPILE_FAILED[self.card.family] = message
        return message

    def release_buffers(self) -> None:
        """Free the network's idle working memory after a plane (ONNX Runtime's arena)."""
        if self.onnx is not None:
            self.onnx.release()

    @property
    def backend_name(self) -> str:
        """What runs the network: ``"ONNX Runtime"``, ``"ONNX Runtime int8"``, ``"PyTorch"`` or
        ``"PyTorch bfloat16"``."""
        if self.onnx is not None:
            return "ONNX Runtime int8" if self.onnx.precision == "int8" else "ONNX Runtime"
        name = "PyTorch bfloat16" if self.cpu_bf16 else "PyTorch"
        return f"{name}, compiled" if self.compiled is not None else name

    def _autocast(self):
        if self.cpu_bf16:
            return torch.autocast(device_type="cpu", dtype=torch.bfloat16)
        if not self.mixed_precision:
            return nullcontext()
        dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.autocast(device_type="cuda", dtype=dtype)

    def tiles_per_pass(self, batch_size: int, tile_shape: tuple[int, ...] | None = None) -> int:
        """How many of ``batch_size`` tiles (of ``tile_shape``, when known) go through the
        network together (:func:`tiles_per_pass`)."""
        return tiles_per_pass(self.device, batch_size, tile_shape, onnx=self.onnx is not None)

    def unet_probabilities(self, batch: np.ndarray, tta: int = 1) -> np.ndarray:
        """(B, C_in, H, W) float32 → (B, C_out, H, W) float32 probabilities.

        With ``tta`` > 1 they are the mean of :meth:`unet_copy` over the first ``tta`` of
        :data:`TTA_TRANSFORMS`.
        """
        total = self.unet_copy(batch, 0)
        for index in range(1, tta):
            total += self.unet_copy(batch, index)
        return total / tta if tta > 1 else total

    def unet_copy(self, batch: np.ndarray, index: int) -> np.ndarray:
        """Probabilities of copy ``index`` of :data:`TTA_TRANSFORMS`, mapped back onto the tiles.

        Copy 0 is the batch as it is. Inference calls this once per copy, so that progress
        and Cancel come between copies.
        """
        return self._in_passes(batch, index, self._unet_pass, np.concatenate)

    def _unet_pass(self, batch: np.ndarray, transform: tuple[bool, bool, bool]) -> np.ndarray:
        transpose, flip_rows, flip_columns = transform
        dims = [d for d, flip in ((-2, flip_rows), (-1, flip_columns)) if flip]
        if self.onnx is not None:  # ONNX Runtime on the CPU: the same copies, in numpy
            x = np.swapaxes(batch, -1, -2) if transpose else batch
            x = np.flip(x, dims) if dims else x
            with torch.inference_mode():
                probs = self._activation(torch.from_numpy(self.onnx(x))).numpy()
            probs = np.flip(probs, dims) if dims else probs
            return np.ascontiguousarray(np.swapaxes(probs, -1, -2) if transpose else probs)
        x = to_device(batch, self.device)  # from pinned memory on CUDA
        return self._unet_tensor_pass(x, transform).cpu().numpy()

    def unet_copy_on_device(self, batch: torch.Tensor, index: int) -> torch.Tensor:
        """:meth:`unet_copy` for a ``(B, C_in, H, W)`` tensor already on this runner's device:
        float32 probabilities left on the device (PyTorch backends only)."""
        return self._in_passes(batch, index, self._unet_tensor_pass, torch.cat)

    def _in_passes(self, batch: Any, index: int, run: Callable, join: Callable) -> Any:
        """``run`` copy ``index`` of the batch in passes of :meth:`tiles_per_pass` tiles,
        the passes' outputs joined by ``join`` (numpy or torch)."""
        step = self.tiles_per_pass(len(batch), tuple(batch.shape))
        transform = TTA_TRANSFORMS[index]
        parts = [run(batch[i : i + step], transform) for i in range(0, len(batch), step)]
        return parts[0] if len(parts) == 1 else join(parts)

    @property
    def blends_on_device(self) -> bool:
        """Whether U-Net planes are tiled and blended on the device
        (:mod:`~napari_cellseg.inference.device_blend`): on CUDA with PyTorch, unless
        :attr:`device_blend` says otherwise."""
        if self.onnx is not None:
            return False
        return self.device.type == "cuda" if self.device_blend is None else self.device_blend

    def _unet_tensor_pass(
        self, x: torch.Tensor, transform: tuple[bool, bool, bool]
    ) -> torch.Tensor:
        transpose, flip_rows, flip_columns = transform
        dims = [d for d, flip in ((-2, flip_rows), (-1, flip_columns)) if flip]
        with torch.inference_mode(), self._autocast():
            x = x.transpose(-1, -2) if transpose else x
            x = torch.flip(x, dims) if dims else x
            network = self.model if self.compiled is None else self.compiled
            probs = self._activation(network(self._memory_format(x)))
            probs = torch.flip(probs, dims) if dims else probs  # back onto the tile
            return probs.transpose(-1, -2) if transpose else probs

    def _memory_format(self, x: torch.Tensor) -> torch.Tensor:
        """Tiles in the fast layout of this runner's device (:func:`.device.channels_last`)."""
        return channels_last(x, self.device)

    def _activation(self, logits: torch.Tensor) -> torch.Tensor:
        if self.card.output_activation == "sigmoid":
            return torch.sigmoid(logits.float())
        return torch.softmax(logits.float(), dim=1)

    def maskrcnn_detections(self, batch: list[np.ndarray]) -> list[Detections]:
        """Tiles of (3, h, w) float32 in [0, 1] → detections in tile coordinates.

        Runs the detector's stages itself instead of ``model(images)``: torchvision would
        paste every 28×28 mask into a full-tile float image (500 objects × 512² × 4 bytes =
        0.5 GB per tile); here each mask is resized only into its own box, so memory grows
        with the objects, not with the tile.
        """
        step = self.tiles_per_pass(len(batch))
        if len({tuple(t.shape[-2:]) for t in batch}) > 1:
            step = 1  # tiles of one shape per pass: none is resized (see maskrcnn_stages.unshrunk)
        regions = self.mask_regions or [[] for _ in batch]
        return [
            d
            for i in range(0, len(batch), step)
            for d in self._maskrcnn_pass(batch[i : i + step], regions[i : i + step])
        ]

    def maskrcnn_copy(self, batch: list[np.ndarray], index: int) -> list[Detections]:
        """Detections on copy ``index`` of :data:`TTA_TRANSFORMS`, mapped back onto the tiles.

        Copy 0 is the batch as it is; :func:`~napari_cellseg.inference.tta.fuse_copies`
        merges the copies of a tile. Inference calls this once per copy.
        """
        from napari_cellseg.inference.tta import map_back

        transform = TTA_TRANSFORMS[index]
        if not any(transform):
            return self.maskrcnn_detections(batch)
        transformed = [_transformed(tile, transform) for tile in batch]
        found = self.maskrcnn_detections(transformed)
        return [
            map_back(det, transform, tuple(tile.shape[-2:]))
            for det, tile in zip(found, batch, strict=True)
        ]

    def _maskrcnn_pass(self, batch: list[np.ndarray], regions: list[list]) -> list[Detections]:
        from torchvision.models.detection.transform import resize_boxes

        model = self.model
        tensors = [to_device(t, self.device) for t in batch]  # from pinned memory on CUDA
        sizes = [tuple(int(s) for s in t.shape[-2:]) for t in tensors]
        with torch.inference_mode(), self._autocast():
            images, _ = unshrunk(model.transform, sizes)(tensors)
            backbone = model.backbone if self.compiled is None else self.compiled
            features = backbone(images.tensors)
            if isinstance(features, torch.Tensor):
                features = OrderedDict([("0", features)])
            proposals, _ = model.rpn(images, features)
            keep = MaskChoice(self.mask_min_score, regions, images.image_sizes, sizes)
            detections = roi_heads(model.roi_heads, features, proposals, images, keep)
            out = []
            for det, resized, size in zip(detections, images.image_sizes, sizes, strict=True):
                boxes = resize_boxes(det["boxes"].float(), resized, size)
                out.append(box_detections(boxes, det["scores"], det["labels"], det["masks"], size))
        return out


def _transformed(tile: np.ndarray, transform: tuple[bool, bool, bool]) -> np.ndarray:
    """A (C, H, W) tile transposed, then flipped along rows and/or columns."""
    transpose, flip_rows, flip_columns = transform
    out = tile.swapaxes(-1, -2) if transpose else tile
    out = out[..., ::-1, :] if flip_rows else out
    out = out[..., ::-1] if flip_columns else out
    return np.ascontiguousarray(out)
