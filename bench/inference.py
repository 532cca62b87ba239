"""Inference throughput: our pipeline vs a naive one, in the same run.

For each model family and image size (real DSB / GlaS images tiled into a mosaic up to
4096×4096) it measures

- end to end: numpy image in → instance labels out (MPix/s), ours (`predict`) and naive
  (tiles one at a time, fp32, plain average blending, the same post-processing);
- model only: forward passes on 512×512 tiles (MPix/s), ours (batched, autocast and
  channels-last on CUDA) and naive (batch 1, fp32);
- peak memory (host RSS above the start, and CUDA max allocated);
- on CUDA, the U-Net also with its tiles blended on the host (``host_blend_*``): the
  device-side blending against the host path, same image, same run, interleaved;
- each end-to-end time is the best of ``--repeats`` calls; the first call at a size is kept
  too (``*_first_seconds``: with ``--autotune`` on CUDA it pays cuDNN's autotuning of
  new tile shapes, which is off by default).

It writes JSON to bench/results/ and prints a Markdown table. Usage:

    .venv/bin/python bench/inference.py --sizes 512 1024 --families unet maskrcnn
    .venv/bin/python bench/inference.py --device cuda --sizes 1024 2048 4096   # on a GPU

``--compare-baseline`` instead times the pipeline before issue 21 (``_baseline.py``: fixed
tiles with the last one shifted inwards, one percentile pass per channel, pass-by-pass
post-processing) against today's, interleaved (new, old, new, old, ...) on the same real
DSB images (one 256², one 520×696 and one 1024² image, a 2048² mosaic) with the demo U-Net,
and on the sample brightfield image with the demo Mask R-CNN; it records the seconds per
stage, the speed-up and how far the labels agree (``inference_speed_<device>.json``):

    nice -n 19 .venv/bin/python bench/inference.py --compare-baseline --repeats 2
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import TypeVar

import numpy as np
import torch
from _baseline import baseline_pipeline, label_agreement
from _common import PeakRSS, pack_mosaic

from napari_cellseg.device import resolve_device
from napari_cellseg.inference import unet_strategy
from napari_cellseg.inference.detections import Detections
from napari_cellseg.inference.model_runner import ModelRunner
from napari_cellseg.inference.onnx_backend import choose_backend, cpu_bf16_supported
from napari_cellseg.inference.planes import predict_planes as predict  # whole planes
from napari_cellseg.inference.postprocess import maskrcnn_instances, unet_instances
from napari_cellseg.inference.preprocess import to_model_input
from napari_cellseg.inference.tiling import plan_tiles
from napari_cellseg.models import ModelCard, build_model, load_weights
from napari_cellseg.models.weights import LoadedModel
from napari_cellseg.params import PredictParams, default_overlap

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATA = ROOT.parent / "shared" / "data"
DSB_BY_SHAPE = {  # real DSB stage1_train images of the sizes asked for in issue 21
    "256x256": "003cee89357d9fe13516167fd67b609a164651b21934585648c740d2c3d86dc1",
    "520x696": "07fb37aafa6626608af90c1e18f6a743f29b6b233d2e427dcd1102df6a916cf5",
    "1024x1024": "091944f1d2611c916b98c020bd066667e33f4639159b2a92407fe5a40788856d",
}


MOSAIC_FOLDERS = {"dsb": "dsb2018/stage1_train/images", "glas": "glas/train/images"}


def mosaic_source(source: str, data_root: Path) -> tuple[str, list[Path]]:
    """``(what the mosaic is made of, its first 16 files)`` for ``source`` ("dsb" or "glas").

    A missing folder falls back to the other real source (the GPU machine may carry only
    the DSB images) and, only when neither is there, to noise, which is said in the name and
    on stderr: a timing on noise is not a timing on images.
    """
    for name in (source, *(other for other in MOSAIC_FOLDERS if other != source)):
        files = sorted((data_root / MOSAIC_FOLDERS[name]).glob("*.png"))[:16]
        if files:
            label = f"{name} mosaic" if name == source else f"{name} mosaic ({source} missing)"
            return label, files
    warning = f"warning: no DSB or GlaS images under {data_root}: timing synthetic noise"
    print(warning, file=sys.stderr)
    return "synthetic noise (no images found)", []


def mosaic(size: int, source: str, data_root: Path) -> np.ndarray:
    """A size×size RGB uint8 mosaic of real images (:func:`mosaic_source`), else noise."""
    import imageio.v3 as iio

    _, files = mosaic_source(source, data_root)
    if not files:
        rng = np.random.default_rng(0)
        return (rng.random((size, size, 3)) * 255).astype(np.uint8)
    tiles = [np.asarray(iio.imread(f))[..., :3] for f in files]
    return pack_mosaic(tiles, size)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


T = TypeVar("T")


def timed(device: torch.device, work: Callable[..., T], *args: object) -> tuple[T, float]:
    """``work(*args)`` and its seconds, read after ``device`` has finished (:func:`sync`)."""
    start = time.perf_counter()
    result = work(*args)
    sync(device)
    return result, time.perf_counter() - start


def naive_predict(
    loaded: LoadedModel, image: np.ndarray, tile: int, device: torch.device, post
) -> np.ndarray:
    """Tiles one at a time, fp32, plain averaging of overlaps, the same post-processing."""
    card = loaded.card
    model = loaded.model.to(device).float().eval()
    x = to_model_input(
        image,
        input_channels=card.input_channels,
        channel_handling=card.channel_handling,
        normalisation=card.normalisation,
    )
    h, w = x.shape[-2:]
    overlap = default_overlap(tile)
    if card.family == "maskrcnn":  # tiles at the detector's own scale, as ``predict`` does
        tile = min(tile, int(card.builder_args.get("min_size", 800)))
        overlap = min(overlap, tile // 4)
    tiles = plan_tiles((h, w), tile, overlap)
    if card.family == "unet":
        acc = np.zeros((len(card.outputs), h, w), np.float32)
        count = np.zeros((h, w), np.float32)
        for t in tiles:
            crop = torch.from_numpy(np.ascontiguousarray(x[:, t.y0 : t.y1, t.x0 : t.x1]))[None]
            ph, pw = (-crop.shape[-2]) % 32, (-crop.shape[-1]) % 32
            crop = torch.nn.functional.pad(crop, (0, pw, 0, ph), mode="reflect")
            with torch.no_grad():
                logits = model(crop.to(device))
            act = (
                torch.sigmoid
                if card.output_activation == "sigmoid"
                else (lambda z: torch.softmax(z, 1))
            )
            prob = act(logits)[0].cpu().numpy()[:, : t.y1 - t.y0, : t.x1 - t.x0]
            acc[:, t.y0 : t.y1, t.x0 : t.x1] += prob
            count[t.y0 : t.y1, t.x0 : t.x1] += 1
        return unet_instances(acc / count, card.outputs, post)
    from napari_cellseg.inference.tile_merge import merge_tile_detections

    parts = []
    for t in tiles:
        crop = torch.from_numpy(np.ascontiguousarray(x[:, t.y0 : t.y1, t.x0 : t.x1])).to(device)
        with torch.no_grad():
            (out,) = model([crop])
        found = torchvision_detections(out, tuple(crop.shape[-2:]))
        parts.append((t, found.shifted(t.y0, t.x0)))
    det = parts[0][1] if len(parts) == 1 else merge_tile_detections(parts, (h, w))
    return maskrcnn_instances(det, (h, w), post)[0]


def torchvision_detections(out: dict, shape: tuple[int, int]) -> Detections:
    """torchvision's own Mask R-CNN output (every mask pasted at full tile size) as Detections.

    The naive path: torchvision pastes each mask into a full-size plane, and each object's
    box is cut back out of it here (integer box, clipped to the tile).
    """
    h, w = shape
    if len(out["boxes"]) == 0:
        return Detections()
    b = out["boxes"].float().cpu().numpy()
    x0 = np.clip(np.floor(b[:, 0]), 0, w - 1).astype(np.int64)
    y0 = np.clip(np.floor(b[:, 1]), 0, h - 1).astype(np.int64)
    x1 = np.clip(np.ceil(b[:, 2]), x0 + 1, w).astype(np.int64)
    y1 = np.clip(np.ceil(b[:, 3]), y0 + 1, h).astype(np.int64)
    full = out["masks"][:, 0].float().cpu().numpy()
    crops = [full[i, y0[i] : y1[i], x0[i] : x1[i]].copy() for i in range(len(b))]
    return Detections(
        np.stack([y0, x0, y1, x1], axis=1),
        out["scores"].float().cpu().numpy(),
        out["labels"].cpu().numpy(),
        crops,
    )


def model_only(runner: ModelRunner, batch: int, tile: int, repeats: int, naive: bool) -> float:
    """MPix/s of forward passes on tile×tile inputs."""
    device = runner.device
    x = np.random.default_rng(0).random(
        (batch, runner.card.input_channels, tile, tile), dtype=np.float32
    )

    def once() -> None:
        if runner.card.family == "unet":
            if naive:
                with torch.no_grad():
                    runner.model.float()(torch.from_numpy(x).to(device)).cpu()
            else:
                runner.unet_probabilities(x)
        else:
            if naive:
                with torch.no_grad():
                    runner.model.float()([torch.from_numpy(x[0]).to(device)])
            else:
                runner.maskrcnn_detections(list(x))

    once()
    sync(device)
    start = time.perf_counter()
    for _ in range(repeats):
        once()
    sync(device)
    seconds = time.perf_counter() - start
    return batch * repeats * tile * tile / 1e6 / seconds


def load_or_build(
    family: str,
    weights: Path | None,
    encoder: str,
    min_size: int | None = None,
    detections: int | None = None,
) -> LoadedModel:
    if weights is not None:
        return load_weights(weights)
    args = (
        {"encoder_name": encoder, "in_channels": 3, "classes": 3}
        if family == "unet"
        else {
            "backbone": "resnet50" if encoder == "resnet34" else encoder,
            **({"min_size": min_size, "max_size": max(min_size, 1024)} if min_size else {}),
            **({"detections_per_img": detections} if detections else {}),
        }
    )
    model = build_model(family, **args).eval()
    card = ModelCard.for_model(family, args, name=f"random-{family}")
    return LoadedModel(model=model, card=card, path=Path("<random>"), source="random")


def compare_images(data_root: Path, shapes: list[str]) -> list[tuple[str, np.ndarray]]:
    """``(name, RGB uint8 image)`` for each shape: the DSB image of that shape, else a mosaic."""
    import imageio.v3 as iio

    folder = data_root / "dsb2018" / "stage1_train" / "images"
    images = []
    for shape in shapes:
        h, w = (int(v) for v in shape.split("x"))
        path = folder / f"{DSB_BY_SHAPE.get(shape, '-')}.png"
        if path.exists():
            images.append((f"dsb {shape}", np.asarray(iio.imread(path))[..., :3]))
        else:
            square = mosaic(max(h, w), "dsb", data_root)[:h, :w]
            images.append((f"dsb mosaic {shape}", np.ascontiguousarray(square)))
    return images


def compare_baseline(
    args: argparse.Namespace, device: torch.device, save: Callable[[list[dict]], None]
) -> list[dict]:
    """Old vs new pipeline, interleaved, per image: seconds, stages, speed-up, agreement."""
    from napari_cellseg.io.images import read_image
    from napari_cellseg.io.samples import get_sample

    unet = load_weights(args.weights_unet or ROOT / "sample_data/models/unet_dsb.safetensors")
    mrcnn = load_weights(
        args.weights_maskrcnn or ROOT / "sample_data/models/maskrcnn_dsb.safetensors"
    )
    brightfield = np.asarray(read_image(get_sample("dsb_brightfield").image_path).data)[..., :3]
    runs = [(unet, name, image) for name, image in compare_images(args.data_root, args.shapes)]
    runs += [(mrcnn, "sample dsb_brightfield", brightfield)] if args.maskrcnn_sample else []
    rows = []
    for loaded, name, image in runs:
        params = PredictParams(
            device=str(device), tile_size=args.tile, overlap=None, batch_size=args.batch_size
        )
        predict(image[:64, :64], loaded, params)  # warm-up
        predict(image[:64, :64], loaded, replace(params, backend="torch"))
        # new: today's pipeline with its default backend (ONNX Runtime on the CPU when the
        # onnx extra is installed); torch: today's pipeline on PyTorch; bf16: today's pipeline
        # with backend="bf16" (only where the CPU has bfloat16 instructions); old: before
        # issue 21
        # with backend="int8" (U-Nets, ONNX Runtime on the CPU) too
        extra = [
            backend
            for backend, applies in (
                ("bf16", device.type == "cpu" and cpu_bf16_supported()),
                ("int8", choose_backend("int8", loaded.card.family, device)[0] == "int8"),
            )
            if applies
        ]
        for backend in extra:
            predict(image[:64, :64], loaded, replace(params, backend=backend))
        variants = ("new", "torch", *extra, "old")
        times: dict[str, list[float]] = {k: [] for k in variants}
        stages: dict[str, list[dict]] = {k: [] for k in variants}
        labels = {}
        for _ in range(args.repeats):
            for which in variants:  # interleaved: the machine's load hits all alike
                context = baseline_pipeline() if which == "old" else _nothing()
                backend = {"new": params.backend, "bf16": "bf16", "int8": "int8"}.get(
                    which, "torch"
                )
                run = replace(params, backend=backend)
                with context:
                    prediction, seconds = timed(device, predict, image, loaded, run)
                    times[which].append(seconds)
                stages[which].append(prediction.timings)
                labels[which] = prediction.labels
        best = {k: min(v) for k, v in times.items()}
        untiled = {}
        if loaded.card.family == "unet" and max(image.shape[:2]) <= args.untiled_up_to:
            whole = replace(params, tile_size=-(-max(image.shape[:2]) // 32) * 32)
            reference = predict(image, loaded, whole).labels  # one tile: no seams at all
            untiled = {k: label_agreement(reference, v) for k, v in labels.items()}
        row = {
            "family": loaded.card.family,
            "image": name,
            "shape": list(image.shape[:2]),
            "device": str(device),
            "tile": args.tile,
            "threads": torch.get_num_threads(),
            "backend_new": params.backend,
            "onnx_used": bool(ModelRunner(loaded, device, backend=params.backend).onnx),
            "seconds_new": times["new"],
            "seconds_torch": times["torch"],
            "seconds_old": times["old"],
            "stages_new": stages["new"],
            "stages_torch": stages["torch"],
            "stages_old": stages["old"],
            "speedup_best": best["old"] / best["new"],
            "speedup_median": float(np.median(times["old"]) / np.median(times["new"])),
            "speedup_torch_best": best["old"] / best["torch"],
            "backend_gain_best": best["torch"] / best["new"],
            "agreement": label_agreement(labels["old"], labels["new"]),
            "agreement_backends": label_agreement(labels["torch"], labels["new"]),
            "agreement_with_untiled": untiled,
        }
        for which in extra:  # bfloat16 / int8 against today's default (float32) labels
            row[f"seconds_{which}"] = times[which]
            row[f"stages_{which}"] = stages[which]
            row[f"speedup_{which}_best"] = best["old"] / best[which]
            row[f"speedup_{which}_median"] = float(
                np.median(times["old"]) / np.median(times[which])
            )
            row[f"agreement_{which}"] = label_agreement(labels["new"], labels[which])
        rows.append(row)
        save(rows)
        print(
            f"{row['family']} {name}: old {best['old']:.2f} s, new on PyTorch "
            f"{best['torch']:.2f} s, new {best['new']:.2f} s, x{row['speedup_best']:.2f}; "
            + "".join(f"{w} {best[w]:.2f} s, x{row[f'speedup_{w}_best']:.2f}; " for w in extra)
            + f"{row['agreement']}",
            flush=True,
        )
    return rows


class _nothing:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


def _stage(row: dict, which: str, stage: str) -> float:
    return float(np.median([t[stage] for t in row[f"stages_{which}"]]))


def _untiled(row: dict) -> str:
    u = row["agreement_with_untiled"]
    return f"{u['old']['mean_iou']:.3f} / {u['new']['mean_iou']:.3f}" if u else "–"


def print_compare_table(rows: list[dict]) -> None:
    print(
        "| family | image | old s | new PyTorch s | new s (engine) | speed-up (best / median) "
        "| ONNX gain | labels ONNX = PyTorch | network s old / new "
        "| post-processing s old / new | objects old / new | identical | mean / min IoU "
        "| mean IoU with untiled old / new |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        a = r["agreement"]
        engine = "ONNX Runtime" if r.get("onnx_used") else "PyTorch"
        same = "yes" if r["agreement_backends"]["identical"] else "no"
        print(
            f"| {r['family']} | {r['image']} | {min(r['seconds_old']):.2f} | "
            f"{min(r['seconds_torch']):.2f} | {min(r['seconds_new']):.2f} ({engine}) | "
            f"{r['speedup_best']:.2f} / {r['speedup_median']:.2f} | "
            f"{r['backend_gain_best']:.2f} | {same} | "
            f"{_stage(r, 'old', 'network'):.2f} / {_stage(r, 'new', 'network'):.2f} | "
            f"{_stage(r, 'old', 'postprocess'):.3f} / {_stage(r, 'new', 'postprocess'):.3f} | "
            f"{a['objects_old']} / {a['objects_new']} | {'yes' if a['identical'] else 'no'} | "
            f"{a['mean_iou']:.3f} / {a['min_iou']:.3f} | {_untiled(r)} |"
        )
    for which in ("bf16", "int8"):
        print_precision_table(rows, which)


def print_precision_table(rows: list[dict], which: str) -> None:
    """The rows run with ``backend=which`` (bf16, int8) against the old and today's default."""
    chosen = [r for r in rows if f"seconds_{which}" in r]
    if not chosen:
        return
    print(
        f"\n| family | image | old s | new s | {which} s | {which} speed-up (best / median) "
        f"| network s {which} | objects new / {which} | matched | mean / min IoU with new |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in chosen:
        a = r[f"agreement_{which}"]
        print(
            f"| {r['family']} | {r['image']} | {min(r['seconds_old']):.2f} | "
            f"{min(r['seconds_new']):.2f} | {min(r[f'seconds_{which}']):.2f} | "
            f"{r[f'speedup_{which}_best']:.2f} / {r[f'speedup_{which}_median']:.2f} | "
            f"{_stage(r, which, 'network'):.2f} | {a['objects_old']} / {a['objects_new']} | "
            f"{a['matched']} | {a['mean_iou']:.3f} / {a['min_iou']:.3f} |"
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--compare-baseline",
        action="store_true",
        help="time the pipeline before issue 21 against today's (see the module docstring)",
    )
    parser.add_argument(
        "--shapes",
        nargs="*",
        default=["256x256", "520x696", "1024x1024", "2048x2048"],
        help="--compare-baseline: image shapes HxW (real DSB images where one has the shape)",
    )
    parser.add_argument(
        "--no-maskrcnn-sample",
        dest="maskrcnn_sample",
        action="store_false",
        help="--compare-baseline: skip the demo Mask R-CNN on the sample brightfield image",
    )
    parser.add_argument("--out-name", default=None, help="JSON file name in --out")
    parser.add_argument(
        "--autotune",
        action="store_true",
        help="on CUDA, turn cuDNN's autotuner on (unet_strategy.CUDNN_AUTOTUNE; off by default)",
    )
    parser.add_argument(
        "--untiled-up-to",
        type=int,
        default=1024,
        help="--compare-baseline: also compare both with one-tile labels up to this size",
    )
    parser.add_argument("--families", nargs="+", default=["unet", "maskrcnn"])
    parser.add_argument("--sizes", nargs="+", type=int, default=[512, 1024])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--tile", type=int, default=512)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument(
        "--encoder",
        default="resnet34",
        help="encoder of the random-init models (U-Net; Mask R-CNN: resnet50 for resnet34)",
    )
    parser.add_argument(
        "--maskrcnn-min-size",
        type=int,
        default=None,
        help="the random-init Mask R-CNN's resize size (default: the builder's, 512)",
    )
    parser.add_argument(
        "--maskrcnn-detections",
        type=int,
        default=None,
        help="the random-init Mask R-CNN's detections per tile (default: the builder's)",
    )
    parser.add_argument("--weights-unet", type=Path, default=None)
    parser.add_argument("--weights-maskrcnn", type=Path, default=None)
    parser.add_argument("--repeats", type=int, default=3, help="also: old/new pairs")
    parser.add_argument("--data-root", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    parser.add_argument(
        "--skip-naive-above",
        type=int,
        default=4096,
        help="skip the naive end-to-end run for larger images",
    )
    args = parser.parse_args()
    device = resolve_device(args.device)
    if args.autotune:
        unet_strategy.CUDNN_AUTOTUNE = True
    if args.compare_baseline:
        args.out.mkdir(parents=True, exist_ok=True)
        path = args.out / (args.out_name or f"inference_speed_{device.type}.json")
        hardware = {
            "device": str(device),
            "gpu": torch.cuda.get_device_name(0) if device.type == "cuda" else None,
            "cpu": platform.processor() or platform.machine(),
            "cores": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "torch": torch.__version__,
        }

        def save(rows: list[dict]) -> None:  # after every image: a cut-short run keeps its rows
            path.write_text(json.dumps({"hardware": hardware, "results": rows}, indent=2))

        rows = compare_baseline(args, device, save)
        print(f"wrote {path}")
        print_compare_table(rows)
        return 0
    results = []
    for family in args.families:
        weights = args.weights_unet if family == "unet" else args.weights_maskrcnn
        loaded = load_or_build(
            family, weights, args.encoder, args.maskrcnn_min_size, args.maskrcnn_detections
        )
        runner = ModelRunner(loaded, device)
        ours_model = model_only(runner, args.batch_size, args.tile, args.repeats, naive=False)
        naive_model = model_only(runner, 1, args.tile, args.repeats * args.batch_size, naive=True)
        runner.move_to(device)
        print(f"{family}: model only {ours_model:.2f} MPix/s ours vs {naive_model:.2f} naive")
        for size in args.sizes:
            source = "dsb" if family == "maskrcnn" or size <= 1024 else "glas"
            image_name, _ = mosaic_source(source, args.data_root)
            image = mosaic(size, source, args.data_root)
            params = PredictParams(
                device=str(device),
                tile_size=args.tile,
                overlap=None,
                batch_size=args.batch_size,
            ).resolved(loaded.card.post_params())  # the model's own thresholds, for both
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats()
            predict(image[:256, :256], loaded, params)  # warm-up
            # On CUDA the host path of the U-Net (tiles blended on the host) is timed in the
            # same loop, interleaved: ours, host, ours, host, ... The first call at a size is
            # kept apart (``*_first_seconds``; with ``--autotune`` it pays cuDNN's tuning of
            # new tile shapes, as one image of a new size would, and the host path's first
            # call then runs on shapes ours already tuned); the best of ``--repeats`` is the
            # steady state.
            host_too = family == "unet" and device.type == "cuda"
            ours_times: list[float] = []
            host_times: list[float] = []
            host = None
            with PeakRSS(interval=0.01) as rss:
                for _ in range(max(1, args.repeats)):
                    prediction, seconds = timed(device, predict, image, loaded, params)
                    ours_times.append(seconds)
                    if host_too:
                        ModelRunner.device_blend = False  # the host path, same image
                        try:
                            host, seconds = timed(device, predict, image, loaded, params)
                            host_times.append(seconds)
                        finally:
                            ModelRunner.device_blend = None
            ours_s = min(ours_times)
            cuda_peak = torch.cuda.max_memory_allocated() / 2**20 if device.type == "cuda" else None
            row = {
                "family": family,
                "size": size,
                "image": image_name,
                "device": str(device),
                "model": loaded.card.name,
                "tile": args.tile,
                "batch_size": args.batch_size,
                "cudnn_autotune": bool(torch.backends.cudnn.benchmark)
                if device.type == "cuda"
                else None,
                "objects": prediction.n_objects,
                "ours_seconds": ours_s,
                "ours_first_seconds": ours_times[0],
                "ours_all_seconds": ours_times,
                "ours_mpix_s": size * size / 1e6 / ours_s,
                "ours_peak_rss_mib": rss.mib,
                "ours_cuda_peak_mib": cuda_peak,
                "ours_timings": prediction.timings,
                "model_only_ours_mpix_s": ours_model,
                "model_only_naive_mpix_s": naive_model,
            }
            if host is not None:
                host_s = min(host_times)
                row.update(
                    host_blend_seconds=host_s,
                    host_blend_first_seconds=host_times[0],
                    host_blend_all_seconds=host_times,
                    host_blend_timings=host.timings,
                    host_blend_objects=host.n_objects,
                    host_blend_labels_identical=bool(
                        np.array_equal(host.labels, prediction.labels)
                    ),
                    device_blend_speedup=host_s / ours_s,
                )
            if size <= args.skip_naive_above:
                naive_times = []
                with PeakRSS(interval=0.01) as rss:
                    for _ in range(max(1, min(args.repeats, 2))):
                        _, seconds = timed(
                            device, naive_predict, loaded, image, args.tile, device, params.post
                        )
                        naive_times.append(seconds)
                naive_s = min(naive_times)
                row.update(
                    naive_seconds=naive_s,
                    naive_mpix_s=size * size / 1e6 / naive_s,
                    naive_peak_rss_mib=rss.mib,
                    speedup=naive_s / ours_s,
                )
                runner.move_to(device)
            results.append(row)
            print(
                f"{family} {size}²: ours {row['ours_mpix_s']:.3f} MPix/s"
                + (
                    f", naive {row['naive_mpix_s']:.3f} MPix/s, x{row['speedup']:.2f}"
                    if "naive_mpix_s" in row
                    else ""
                )
            )
    hardware = {
        "device": str(device),
        "gpu": torch.cuda.get_device_name(0) if device.type == "cuda" else None,
        "cpu": platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "torch": torch.__version__,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / (args.out_name or f"inference_{device.type}.json")
    path.write_text(json.dumps({"hardware": hardware, "results": results}, indent=2))
    print(f"wrote {path}")
    print(
        "| family | size | device | ours MPix/s | naive MPix/s | speed-up | model-only ours / naive"
        " MPix/s | peak RSS MiB ours / naive |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for r in results:
        print(
            f"| {r['family']} | {r['size']}² | {r['device']} | {r['ours_mpix_s']:.3f} | "
            f"{r.get('naive_mpix_s', float('nan')):.3f} | {r.get('speedup', float('nan')):.2f} | "
            f"{r['model_only_ours_mpix_s']:.2f} / {r['model_only_naive_mpix_s']:.2f} | "
            f"{r['ours_peak_rss_mib']:.0f} / {r.get('naive_peak_rss_mib', float('nan')):.0f} |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
