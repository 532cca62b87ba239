"""``cellseg predict IMAGE... --weights FILE --out DIR``: segment images into label TIFFs."""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import MISSING, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING

from napari_cellseg.families import family_spec
from napari_cellseg.params import (
    BACKENDS,
    TTA_CHOICES,
    PostprocessParams,
    PredictParams,
    field_info,
)

if TYPE_CHECKING:
    from napari_cellseg.io.slides import SlideOptions
    from napari_cellseg.models.card import ModelCard


def _help(name: str) -> str:
    """The help text of a :class:`PredictParams` field (one place: its metadata)."""
    return field_info(PredictParams, name).help


def add_predict_parser(sub: argparse._SubParsersAction) -> None:
    """Register the ``predict`` subcommand (flags generated from the parameter dataclasses)."""
    p = sub.add_parser("predict", help="segment images into instance label TIFFs")
    p.add_argument("images", nargs="+", type=Path, metavar="IMAGE")
    p.add_argument("--weights", required=True, type=Path, help="weight file or smp folder")
    p.add_argument("--out", required=True, type=Path, help="output folder")
    add_predict_options(p)
    p.set_defaults(func=run_predict)


def add_predict_options(p: argparse.ArgumentParser) -> None:
    """The flags ``predict`` and ``batch`` share: device, tiling, channels and thresholds.

    The threshold flags are generated from :class:`PostprocessParams` (one source of defaults).
    """
    defaults = PredictParams()
    p.add_argument("--device", default=defaults.device, help=_help("device"))
    p.add_argument("--backend", choices=BACKENDS, default=defaults.backend, help=_help("backend"))
    p.add_argument(
        "--compile",
        action="store_true",
        help="PyTorch backends: compile the network with torch.compile first (8-16 s on a "
        "2-core CPU, float32 9 s more at the first image of another size; then faster passes: "
        "for long runs of same-size images); goes on without it, saying so, where it cannot "
        "compile",
    )
    p.add_argument("--tile", type=int, default=defaults.tile_size, help=_help("tile_size"))
    p.add_argument("--overlap", type=int, default=None, help=_help("overlap"))
    p.add_argument("--batch-size", type=int, default=defaults.batch_size, help=_help("batch_size"))
    p.add_argument("--tta", type=int, choices=TTA_CHOICES, default=defaults.tta, help=_help("tta"))
    p.add_argument("--axes", default=None, help=_help("axes"))
    p.add_argument("--channels", default=None, help=_help("channels"))
    p.add_argument("--invert", action="store_true", help=_help("invert"))
    add_diameter_option(p)
    from napari_cellseg.cli.export import add_export_option

    add_export_option(p)
    p.add_argument(
        "--threshold",
        type=float,
        default=None,
        help="main threshold: U-Net foreground probability or Mask R-CNN score",
    )
    for f in fields(PostprocessParams):
        flag = "--" + f.name.replace("_", "-")
        default = f.default if f.default is not MISSING else None
        # None = not given: the model card's own value (cellseg tune), else the default
        if isinstance(default, bool):
            p.add_argument(
                flag,
                action=argparse.BooleanOptionalAction,
                default=None,
                help=f"{field_info(PostprocessParams, f.name).help} "
                f"(default: the model's own, else {default})",
            )
        else:
            p.add_argument(
                flag,
                type=type(default),
                default=None,
                help=f"{field_info(PostprocessParams, f.name).help} "
                f"(default: the model's own, else {default})",
            )
    add_stack_options(p)
    add_slide_options(p)


def add_slide_options(p: argparse.ArgumentParser) -> None:
    """``--level``, ``--pixel-size``, ``--magnification`` and ``--labels-format``."""
    p.add_argument(
        "--level", type=int, default=None,
        help="whole slides / OME-Zarr: the pyramid level to segment (0 = full resolution)",
    )  # fmt: skip
    p.add_argument(
        "--pixel-size", default=None, metavar="SIZE",
        help="whole slides: segment at this pixel size, e.g. 0.5um (nearest finer level, "
        "resampled when no level matches)",
    )  # fmt: skip
    p.add_argument(
        "--magnification", type=float, default=None, metavar="X",
        help="whole slides: segment at this magnification, e.g. 20 (chosen like --pixel-size)",
    )  # fmt: skip
    p.add_argument(
        "--labels-format", choices=("tiff", "zarr"), default="tiff",
        help="label files: tiff (<stem>_labels.tif, default) or zarr (<stem>_labels.ome.zarr, "
        "OME-Zarr with a label pyramid, written chunk by chunk)",
    )  # fmt: skip


def slide_options(args: argparse.Namespace) -> SlideOptions:
    """The :class:`SlideOptions` of :func:`add_slide_options`' flags."""
    from napari_cellseg.io.slides import SlideOptions, parse_pixel_size

    return SlideOptions(
        level=getattr(args, "level", None),
        pixel_size_um=parse_pixel_size(getattr(args, "pixel_size", None)),
        magnification=getattr(args, "magnification", None),
    )


def add_stack_options(p: argparse.ArgumentParser) -> None:
    """``--stitch-3d``, ``--link-time``, ``--stitch-iou``, ``--max-gap``, ``--z-spacing``."""
    defaults = PredictParams()
    p.add_argument("--stitch-3d", action="store_true", help=_help("stitch_3d"))
    p.add_argument("--link-time", action="store_true", help=_help("link_time"))
    p.add_argument(
        "--stitch-iou", type=float, default=defaults.stitch_iou,
        help=f"{_help('stitch_iou')} (default {defaults.stitch_iou:g})",
    )  # fmt: skip
    p.add_argument(
        "--max-gap", type=int, default=defaults.max_gap,
        help=f"{_help('max_gap')} (default {defaults.max_gap})",
    )  # fmt: skip
    p.add_argument("--z-spacing", type=float, default=None, help=_help("z_spacing"))


def stack_values(args: argparse.Namespace) -> dict[str, object]:
    """The :class:`PredictParams` values of :func:`add_stack_options`' flags."""
    names = ("stitch_3d", "link_time", "stitch_iou", "max_gap", "z_spacing")
    defaults = PredictParams()
    return {name: getattr(args, name, getattr(defaults, name)) for name in names}


def add_diameter_option(p: argparse.ArgumentParser) -> None:
    """``--diameter auto|N|Nµm|off`` (``predict``, ``batch`` and ``tune``)."""
    p.add_argument(
        "--diameter", default=None, metavar="auto|N|N\u00b5m|off", help=_help("diameter")
    )


def describe_size(prediction: object) -> str:
    """``", diameter 41 px (x0.44)"`` for a run scaled for a diameter, else ``""``.

    >>> from types import SimpleNamespace as S
    >>> describe_size(S(diameter=41.2, scale=0.437)), describe_size(S(diameter=None, scale=1.0))
    (', diameter 41 px (\u00d70.44)', '')
    >>> describe_size(S(diameter=19.0, scale=1.0))
    ', diameter 19 px (not rescaled)'
    """
    diameter = getattr(prediction, "diameter", None)
    if diameter is None:
        return ""
    scale = float(getattr(prediction, "scale", 1.0))
    how = "not rescaled" if scale == 1.0 else f"\u00d7{scale:.2f}"
    return f", diameter {diameter:.0f} px ({how})"


#: Without a terminal, ``predict`` writes a progress line at most this often (seconds).
LOG_PROGRESS_EVERY_S = 30.0


def params_from_args(args: argparse.Namespace, card: ModelCard) -> PredictParams:
    """Build :class:`PredictParams` from parsed arguments.

    Thresholds the user did not give come from the model card (values chosen by
    ``cellseg tune``), then from the library defaults.
    """
    post = {f.name: getattr(args, f.name) for f in fields(PostprocessParams)}
    post = {name: value for name, value in post.items() if value is not None}
    if args.threshold is not None:
        post[family_spec(card.family).main_threshold] = args.threshold
    channels = _parse_channels(args.channels)
    return PredictParams(
        device=args.device,
        tile_size=args.tile,
        overlap=args.overlap,  # None: the default for this tile size
        batch_size=args.batch_size,
        tta=args.tta,
        axes=args.axes,
        channels=channels,
        diameter=getattr(args, "diameter", None),
        backend=getattr(args, "backend", PredictParams.backend),
        compile=bool(getattr(args, "compile", False)),
        invert=bool(getattr(args, "invert", False)),
        post=replace(card.post_params(), **post),
        **stack_values(args),
    )


def _parse_channels(text: str | None) -> tuple[int, ...] | None:
    """``"0,1,1"`` -> ``(0, 1, 1)``; a clear error for anything else."""
    from napari_cellseg.errors import CellsegError

    if text in (None, ""):
        return None
    try:
        return tuple(int(c) for c in text.split(","))
    except ValueError:
        raise CellsegError(
            f"--channels takes channel numbers separated by commas, e.g. --channels 0,1,1 "
            f"(got {text!r})"
        ) from None


def output_names(images: list[Path], out: Path, labels_format: str = "tiff") -> dict[Path, Path]:
    """The label file of each input: ``<out>/<stem>_labels.tif`` (``.ome.zarr``), unique.

    Inputs whose names differ only in their suffix (``a.png``, ``a.tif``) keep it in the name
    (``a_png_labels.tif``), as ``cellseg batch`` does; the same file given twice is segmented
    once. Two different files that would still share a name (``x/a.png``, ``y/a.png``) are
    refused before anything runs.
    """
    from napari_cellseg.batch.files import LABELS_SUFFIX, ZARR_LABELS_SUFFIX, plan_tasks
    from napari_cellseg.errors import CellsegError

    unique = list(dict.fromkeys(images))
    suffix = ZARR_LABELS_SUFFIX if labels_format == "zarr" else LABELS_SUFFIX
    pairs = [(path, path.name) for path in unique]
    tasks = plan_tasks(pairs, out, measure=False, labels_suffix=suffix)
    names = {path: Path(task.labels) for path, task in zip(unique, tasks, strict=True)}
    seen: dict[Path, Path] = {}
    for path, name in names.items():
        if name in seen and seen[name].resolve() != path.resolve():
            raise CellsegError(
                f"{seen[name]} and {path} would both be written to {name}: segment them into "
                f"different --out folders, or use `cellseg batch`, which keeps the sub-folders"
            )
        seen[name] = path
    return names


def run_predict(args: argparse.Namespace) -> int:
    """Segment each image; one line per image; bad images are reported and skipped."""
    from napari_cellseg.cli.export import write_exports
    from napari_cellseg.device import resolve_device
    from napari_cellseg.errors import CellsegError
    from napari_cellseg.events import Notice, Progress, drain
    from napari_cellseg.inference import iter_predict
    from napari_cellseg.inference.joining import with_file_z_spacing
    from napari_cellseg.inference.model_runner import cached_load
    from napari_cellseg.inference.preprocess import label_axes
    from napari_cellseg.io.exports import parse_export_formats
    from napari_cellseg.io.images import apply_axes, read_image, write_labels
    from napari_cellseg.io.ome_zarr import write_labels_zarr
    from napari_cellseg.io.slides import is_slide
    from napari_cellseg.models import read_card

    exports = parse_export_formats(args.export)
    card = read_card(args.weights)
    params = params_from_args(args, card)
    if args.out.exists() and not args.out.is_dir():
        raise CellsegError(f"--out {args.out} is a file; choose a folder for the label files")
    outputs = output_names(list(args.images), args.out, getattr(args, "labels_format", "tiff"))
    slide = slide_options(args)
    loaded, _ = cached_load(args.weights, resolve_device(params.device))
    for note in loaded.notes:
        print(f"note: {note}", file=sys.stderr)
    args.out.mkdir(parents=True, exist_ok=True)
    failures = 0
    show_progress = sys.stderr.isatty()
    for path, labels_path in outputs.items():
        start = last_line = time.perf_counter()
        try:
            if is_slide(path):  # a whole slide or OME-Zarr: one level, lazily, block by block
                line = predict_slide(path, labels_path, loaded, params, slide)
                print(f"{line}, {time.perf_counter() - start:.2f} s")
                continue
            image = apply_axes(read_image(path), params.axes)  # --axes: the file's own order
            run_params = params if params.axes else _with_axes(params, image.axes)
            run_params = with_file_z_spacing(run_params, image)  # the file's z step

            def show(event: object, path: Path = path) -> None:
                nonlocal last_line
                if isinstance(event, Notice) and event.level == "warning":
                    print(f"\n{path.name}: {event.message}", file=sys.stderr)
                elif isinstance(event, Progress) and event.stage != "load":
                    if show_progress:
                        print(f"\r{path.name}: {event.fraction:5.0%}", end="", file=sys.stderr)
                    elif time.perf_counter() - last_line >= LOG_PROGRESS_EVERY_S:
                        # a log file (cluster job): a line now and then, not a carriage return
                        print(f"{path.name}: {event.fraction:.0%}", file=sys.stderr, flush=True)
                        last_line = time.perf_counter()

            prediction = drain(
                iter_predict(image.data, loaded, run_params, pixel_size_um=image.pixel_size_um),
                show,
            )
            if labels_path.name.endswith(".zarr"):
                out = write_labels_zarr(
                    labels_path,
                    prediction.labels,
                    None,
                    label_axes(prediction.axes),
                    image.pixel_size_um,
                )
            else:
                out = write_labels(
                    labels_path,
                    prediction.labels,
                    pixel_size_um=image.pixel_size_um,
                    axes=label_axes(prediction.axes),
                )
            extra = write_exports(
                out,
                prediction.labels,
                exports,
                image=image.data,
                image_axes=run_params.axes,
                axes=label_axes(prediction.axes),
                pixel_size_um=image.pixel_size_um,
            )
        except CellsegError as error:
            failures += 1
            print(f"{path}: FAILED: {error}", file=sys.stderr)
            continue
        if show_progress:
            print("\r", end="", file=sys.stderr)
        seconds = time.perf_counter() - start
        size = describe_size(prediction)
        also = "".join(f", {p.name}" for p in extra)
        print(f"{path}: {prediction.n_objects} objects{size}, {seconds:.2f} s -> {out}{also}")
    return 0 if failures == 0 else 1


def _with_axes(params: PredictParams, axes: str) -> PredictParams:
    from dataclasses import replace

    return replace(params, axes=axes)


def predict_slide(
    path: Path, labels_path: Path, model: object, params: PredictParams, slide: SlideOptions
) -> str:
    """Segment one level of a whole slide block by block; the line ``predict`` prints."""
    from napari_cellseg.batch.large import remove_scratch, segment_large, write_label_output
    from napari_cellseg.events import Notice, drain
    from napari_cellseg.io.images import apply_axes
    from napari_cellseg.io.slides import read_slide
    from napari_cellseg.params import BlockOptions

    level, choice = read_slide(path, slide)  # the level, lazily, and why it was chosen
    image = apply_axes(level, params.axes)
    run_params = params if params.axes else _with_axes(params, image.axes)

    def show(event: object) -> None:
        if isinstance(event, Notice) and event.level == "warning":
            print(f"{path.name}: {event.message}", file=sys.stderr)

    prediction = drain(
        segment_large(image, model, run_params, labels_path, measure=False, blocks=BlockOptions()),
        show,
    )
    try:
        out = write_label_output(
            labels_path,
            prediction.labels,
            prediction.n_objects,
            prediction.axes,
            image.pixel_size_um,
        )
    finally:
        remove_scratch(prediction)
    return f"{path}: {prediction.n_objects} objects ({choice.reason}) -> {out}"
