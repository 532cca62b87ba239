"""``cellseg batch IN... OUT --weights FILE``: segment a folder of images, resumably.

Exit status: 0 when every file was segmented (or already was), 1 when some files failed
(listed in ``OUT/errors.csv``), 2 for user errors (bad weights, parameters or folders).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def add_batch_parser(sub: argparse._SubParsersAction) -> None:
    """Register the ``batch`` subcommand."""
    from napari_cellseg.cli.predict import add_predict_options
    from napari_cellseg.params import BlockOptions

    blocks = BlockOptions()
    p = sub.add_parser(
        "batch",
        help="segment every image of a folder (resumable, with measurements)",
        description=(
            "Segment a folder (or a list) of images into OUT/<subfolder>/<stem>_labels.tif. "
            "Rerunning skips files already done; failures are listed in OUT/errors.csv."
        ),
    )
    p.add_argument("inputs", nargs="+", type=Path, metavar="IN", help="a folder, or image files")
    p.add_argument("out", type=Path, metavar="OUT", help="output folder")
    p.add_argument("--weights", required=True, type=Path, help="weight file or smp folder")
    p.add_argument("--recursive", action="store_true", help="also segment images in subfolders")
    p.add_argument(
        "--include", action="append", default=None, metavar="PAT", help="glob, e.g. '*.tif'"
    )
    p.add_argument(
        "--exclude", action="append", default=[], metavar="PAT", help="glob of files to skip"
    )
    p.add_argument(
        "--measure", action="store_true", help="write per-object measurements (CSV per image)"
    )
    p.add_argument(
        "--scheduler",
        default="none",
        help="none (this process, default), local (worker processes) or tcp://host:port",
    )
    p.add_argument("--workers", type=int, default=None, help="worker processes for local")
    p.add_argument(
        "--overwrite", action="store_true", help="replace results of another recipe in OUT"
    )
    p.add_argument("--prefetch", type=int, default=2, help="images read ahead (default 2)")
    p.add_argument(
        "--block-size",
        type=int,
        default=blocks.block_size,
        help=f"planes above 4096² go block by block in blocks of this edge "
        f"(default {blocks.block_size})",
    )
    p.add_argument(
        "--halo",
        type=int,
        default=blocks.halo,
        help=f"margin around each block; objects larger than this may be cut "
        f"(default {blocks.halo})",
    )
    add_predict_options(p)
    p.set_defaults(func=run_batch_command)


def _status_line(total: int, name: str, counts: dict[str, int]) -> str:
    return (
        f"\r[{sum(counts.values())}/{total}] {counts['done']} done, {counts['skipped']} "
        f"skipped, {counts['failed']} failed  {name[-40:]:<40}"
    )


def run_batch_command(args: argparse.Namespace) -> int:
    """Run the batch; a progress line on a terminal, failures and a summary line always."""
    from napari_cellseg.batch import FileResult, iter_batch
    from napari_cellseg.batch.jobs import estimated_sizes
    from napari_cellseg.cli.predict import params_from_args, slide_options
    from napari_cellseg.events import Notice, Progress, drain
    from napari_cellseg.inference.object_size import estimates_each_image
    from napari_cellseg.io.exports import parse_export_formats
    from napari_cellseg.models import read_card
    from napari_cellseg.params import BlockOptions

    if not args.weights.exists():
        from napari_cellseg.errors import WeightFileError

        raise WeightFileError(args.weights, "weight file not found; check the path")
    exports = parse_export_formats(args.export)
    card = read_card(args.weights)
    params = params_from_args(args, card)
    inputs = args.inputs[0] if len(args.inputs) == 1 else args.inputs
    tty = sys.stderr.isatty()
    counts = {"done": 0, "skipped": 0, "failed": 0}
    estimated = not isinstance(params.diameter, float)  # a diameter per image: shown
    auto = estimates_each_image(card, params)  # not a micrometre value converted per image
    sizes: list[float] = []
    files_event: Progress | None = None

    def show(event: object) -> None:
        nonlocal files_event
        if isinstance(event, FileResult):
            counts[event.status] += 1
            if event.status == "failed":
                print(("\r" if tty else "") + f"FAILED {event.message()}", file=sys.stderr)
            elif event.status == "done" and event.diameter is not None and estimated:
                if auto:
                    sizes.append(event.diameter)
                size = f"diameter {event.diameter:.0f} px (\u00d7{event.scale:.2f})"
                print(("\r" if tty else "") + f"{event.file}: {size}", file=sys.stderr)
        elif isinstance(event, Progress) and tty:
            if event.stage == "files":
                files_event = event
            if files_event is not None:
                name = event.message if event.stage in ("tiles", "blocks") else ""
                extra = f" {event.fraction:4.0%}" if event.stage in ("tiles", "blocks") else ""
                line = _status_line(files_event.total, name + extra, counts)
                print(line, end="", file=sys.stderr)
        elif isinstance(event, Notice) and (event.level == "warning" or tty):
            print(("\r" if tty else "") + f"note: {event.message}", file=sys.stderr)

    summary = drain(
        iter_batch(
            inputs,
            args.out,
            args.weights,
            params,
            recursive=args.recursive,
            include=args.include,
            exclude=args.exclude,
            measure=args.measure,
            exports=exports,
            scheduler=args.scheduler,
            workers=args.workers,
            overwrite=args.overwrite,
            prefetch=args.prefetch,
            blocks=BlockOptions(block_size=args.block_size, halo=args.halo),
            slide=slide_options(args),
            labels_format=args.labels_format,
        ),
        show,
    )
    if tty:
        print("\r" + " " * 100 + "\r", end="", file=sys.stderr)
    print(summary.line())
    found = estimated_sizes(sizes)
    if found is not None:  # the estimate was most of each image's time: say what to give
        median, low, high = found
        print(
            f"note: object diameters estimated per image: median {median:.0f} px ({low:.0f}-"
            f"{high:.0f} px, {len(sizes)} images); for images alike, --diameter {median:.0f} "
            "skips the estimate (about 80 % of each image's time on DSB images)",
            file=sys.stderr,
        )
    return 1 if summary.failed else 0
