"""``cellseg tune``: choose a model's thresholds on labelled images and store them in its card."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from napari_cellseg.cli.predict import add_diameter_option
from napari_cellseg.params import TTA_CHOICES, PredictParams, field_info


def add_tune_parser(sub: argparse._SubParsersAction) -> None:
    """Register ``tune``."""
    t = sub.add_parser(
        "tune",
        help="choose a model's post-processing thresholds on labelled images (DSB AP) and "
        "write them into a copy of the weight file",
    )
    t.add_argument("weights", type=Path, help="weight file (any supported format)")
    t.add_argument(
        "--data",
        action="append",
        type=Path,
        default=[],
        required=True,
        metavar="DIR",
        help="labelled folder with images/ and masks/ (repeatable); use images the model was "
        "not trained on",
    )
    t.add_argument(
        "--out",
        type=Path,
        default=None,
        help="output .safetensors file (default: <weights stem>-tuned.safetensors beside it, "
        "or -tuned-2, -tuned-3... when taken)",
    )
    t.add_argument(
        "--max-images",
        type=int,
        default=None,
        help="tune on at most this many images, spread evenly over the sorted folder",
    )
    defaults = PredictParams()
    t.add_argument(
        "--device", default=defaults.device, help=field_info(PredictParams, "device").help
    )
    t.add_argument(
        "--tile",
        type=int,
        default=defaults.tile_size,
        help=f"{field_info(PredictParams, 'tile_size').help} of the network runs",
    )
    t.add_argument(
        "--tta",
        type=int,
        choices=TTA_CHOICES,
        default=defaults.tta,
        help=f"tune for runs with this {field_info(PredictParams, 'tta').help}",
    )
    add_diameter_option(t)
    t.add_argument(
        "--grid",
        default=None,
        metavar="JSON",
        help='candidate values instead of the defaults, e.g. \'{"prob_threshold": [0.5, 0.7], '
        '"min_size": [10, 30]}\'',
    )
    t.set_defaults(func=run_tune)


def run_tune(args: argparse.Namespace) -> int:
    """Tune, print base and best settings, write the tuned copy (never over the input)."""
    from napari_cellseg.device import resolve_device
    from napari_cellseg.errors import CellsegError
    from napari_cellseg.events import Progress, drain
    from napari_cellseg.models import load_weights
    from napari_cellseg.params import PredictParams, describe_post
    from napari_cellseg.training.pairs import scan_training_folders
    from napari_cellseg.training.tuning import iter_tune_postprocess, tuned_copy_path, write_tuned
    from napari_cellseg.training.validation import read_validation_images

    out = args.out or tuned_copy_path(args.weights)
    if out.suffix != ".safetensors":
        raise CellsegError(f"--out {out} must end in .safetensors")
    if out.resolve() == args.weights.resolve():
        raise CellsegError(f"--out {out} is the input file; choose another name")
    grid = _parse_grid(args.grid)
    pairs = scan_training_folders(args.data)
    if args.max_images is not None:
        if args.max_images < 1:
            raise CellsegError(f"--max-images must be at least 1, got {args.max_images}")
        pairs = _spread(pairs, args.max_images)
    device = resolve_device(args.device)
    loaded = load_weights(args.weights, device=device)
    images = read_validation_images(pairs)
    params = PredictParams(
        device=str(device),
        tile_size=args.tile,
        overlap=None,
        tta=args.tta,
        diameter=args.diameter,
    )
    tty = sys.stderr.isatty()

    def show(event: Progress) -> None:
        if tty and event.stage == "tuning":
            print(f"\rtuning {event.done}/{event.total} {event.message}", end="", file=sys.stderr)

    result = drain(iter_tune_postprocess(images, loaded, params=params, grid=grid), show)
    if tty:
        print("", file=sys.stderr)
    base = describe_post(loaded.card.postprocess)
    print(
        f"current thresholds ({base or 'library defaults'}): DSB AP {result.base_score:.4f} "
        f"on {result.n_images} images"
    )
    if not result.changed:
        print(f"no better setting among {result.n_candidates} tried; nothing written")
        return 0
    shown = describe_post(result.changed)
    print(f"best of {result.n_candidates} settings: {shown}: DSB AP {result.score:.4f}")
    data = ", ".join(p.name for p in args.data)
    write_tuned(loaded, result, data, out, like=args.weights, tta=args.tta)
    print(f"written {out}")
    return 0


def _parse_grid(text: str | None) -> dict[str, list[float]] | None:
    from napari_cellseg.errors import CellsegError

    if text is None:
        return None
    try:
        grid = json.loads(text)
    except json.JSONDecodeError as error:
        raise CellsegError(f"--grid is not valid JSON ({error.msg})") from None
    if not isinstance(grid, dict) or not all(
        isinstance(v, list) and all(isinstance(x, (int, float)) for x in v) for v in grid.values()
    ):
        raise CellsegError('--grid must map names to lists of numbers, e.g. {"min_size": [10, 30]}')
    return grid


def _spread(items: list, n: int) -> list:
    """At most ``n`` of ``items``, evenly spaced (first and last included)."""
    import numpy as np

    if n >= len(items):
        return items
    picks = sorted({int(i) for i in np.linspace(0, len(items) - 1, n).round()})
    return [items[i] for i in picks]
