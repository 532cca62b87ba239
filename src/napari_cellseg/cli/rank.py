"""``cellseg rank IN... --weights FILE [--out ranking.csv] [--objects]``: what to correct next.

Every image is segmented as several flipped/rotated copies; each object's doubt grows as the
copies disagree on it (and, per model, as its boundary weakens or its detection score
drops). Images are ranked by the sum of their objects' doubts (``--order total``: where there
is the most to correct) or by the doubt of their worst objects (``--order mean``). The
ranking is written as CSV, first the image to correct first, with the object diameter each
image was segmented at; when none was given, a note says what size the model saw.

Exit status: 0 when every image was ranked, 1 when some could not be read (warned and left
out of the CSV), 2 for user errors (bad weights or parameters, no images).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

DEFAULT_OUT = Path("ranking.csv")


def add_rank_parser(sub: argparse._SubParsersAction) -> None:
    """Register the ``rank`` subcommand."""
    from napari_cellseg.cli.predict import add_predict_options

    p = sub.add_parser(
        "rank",
        help="rank images by the model's uncertainty: what to correct next",
        description=(
            "Segment each image as several flipped/rotated copies (--tta copies, default 4) "
            "and rank the images by how much the copies disagree, how weak the object "
            "boundaries are (U-Net) and how low the detection scores (Mask R-CNN), summed "
            "over each image's objects (--order total) or for its worst ones (--order mean); "
            "--order spread also weighs how typical each image is of the folder and how "
            "unlike the images ranked before it. The CSV's diameter column gives the object "
            "size (px) each image was segmented at; without --diameter the model's own size "
            "is used (its estimate per image, or a fine-tuned model's size) and a note says "
            "what it saw: give your objects' size (--diameter N) when that is wrong, or the "
            "ranking counts the objects this model knows."
        ),
    )
    p.add_argument("inputs", nargs="+", type=Path, metavar="IN", help="a folder, or image files")
    p.add_argument("--weights", required=True, type=Path, help="weight file or smp folder")
    p.add_argument(
        "--out", type=Path, default=DEFAULT_OUT, help=f"CSV file to write (default {DEFAULT_OUT})"
    )
    p.add_argument(
        "--objects",
        action="store_true",
        help="also write one row per object, most uncertain first, to <out>_objects.csv",
    )
    p.add_argument("--recursive", action="store_true", help="also rank images in subfolders")
    p.add_argument(
        "--by-tile",
        type=int,
        default=None,
        metavar="N",
        help="rank the N×N-pixel tiles of each image instead of whole images (large images; "
        "the CSV gets tile_y0/x0/y1/x1 columns)",
    )
    p.add_argument(
        "--order",
        choices=("total", "mean", "spread"),  # batch.ranking.RANK_ORDERS, not imported: torch
        default="total",
        help="total (default): the sum of the objects' doubts first, i.e. where there is the "
        "most to correct; mean: the most doubtful objects first, whatever their number; "
        "spread: the total doubt weighed by how typical an image is of the folder and how "
        "unlike the images ranked before it (a few images to correct and fine-tune on)",
    )
    add_predict_options(p)
    p.set_defaults(func=run_rank)


def objects_path(out: Path) -> Path:
    """Where ``--objects`` writes: ``ranking.csv`` -> ``ranking_objects.csv``.

    >>> objects_path(Path("out/ranking.csv")).as_posix()
    'out/ranking_objects.csv'
    """
    return out.with_name(out.stem + "_objects" + (out.suffix or ".csv"))


def run_rank(args: argparse.Namespace) -> int:
    """Rank the images; a progress line on a terminal, warnings, and the top of the ranking."""
    from napari_cellseg.batch.files import find_inputs
    from napari_cellseg.batch.ranking import iter_rank_images, size_note
    from napari_cellseg.batch.ranking_csv import write_ranking_csv
    from napari_cellseg.cli.predict import params_from_args
    from napari_cellseg.device import resolve_device
    from napari_cellseg.errors import CellsegError
    from napari_cellseg.events import Notice, Progress, drain
    from napari_cellseg.inference.model_runner import cached_load
    from napari_cellseg.models import read_card

    out = Path(args.out)
    if out.is_dir():
        raise CellsegError(f"--out {out} is a folder; give a CSV file name, e.g. {out}/ranking.csv")
    root, files, rejected = find_inputs(args.inputs, out, recursive=args.recursive)
    for path, why in rejected:
        print(f"{path}: not ranked: {why}", file=sys.stderr)
    if not files:
        raise CellsegError("no images to rank: give a folder holding images, or image files")
    card = read_card(args.weights)
    params = params_from_args(args, card)
    loaded, _ = cached_load(args.weights, resolve_device(params.device))
    for note in loaded.notes:
        print(f"note: {note}", file=sys.stderr)
    warnings = 0
    show_progress = sys.stderr.isatty()

    def show(event: object) -> None:
        nonlocal warnings
        if isinstance(event, Notice) and event.level == "warning":
            warnings += "left out" in event.message
            print(f"\r{event.message}", file=sys.stderr)
        elif isinstance(event, Progress) and show_progress:
            line = f"\rranking: {event.fraction:5.0%} {event.message[-40:]:<40}"
            print(line, end="", file=sys.stderr)

    work = iter_rank_images(
        [p for p, _ in files], loaded, params, tile=args.by_tile, order=args.order
    )
    ranked = drain(work, show)
    if show_progress:
        print("\r", end="", file=sys.stderr)
    written = write_ranking_csv(out, ranked, root=root)
    if args.objects:
        write_ranking_csv(objects_path(out), ranked, objects=True, root=root)
    for rank, image in enumerate(ranked[:5], start=1):
        where = " [{}:{}, {}:{}]".format(*_yyxx(image.region)) if image.region else ""
        print(
            f"{rank}. {image.path.name}{where}: total doubt {image.total_doubt:.2f}, "
            f"score {image.score:.3f} ({image.reason})"
        )
    more = f" and {objects_path(out)}" if args.objects else ""
    what = "tile(s)" if args.by_tile else "image(s)"
    print(f"ranked {len(ranked)} {what} -> {written}{more}")
    note = size_note(ranked, params.diameter, "--diameter N")
    if note:
        print(f"note: {note}", file=sys.stderr)
    return 1 if warnings else 0


def _yyxx(region: tuple[int, int, int, int]) -> tuple[int, int, int, int]:
    """``(y0, x0, y1, x1)`` as ``(y0, y1, x0, x1)``, for ``[y0:y1, x0:x1]``."""
    return region[0], region[2], region[1], region[3]
