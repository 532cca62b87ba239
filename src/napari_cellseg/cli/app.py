"""The ``cellseg`` command line: info, predict, train, evaluate, tune, batch, export, rank, models.

The CLI is napari-free: it imports only the core and the models.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from napari_cellseg import __version__


def _cmd_info(args: argparse.Namespace) -> int:
    from napari_cellseg.errors import CellsegError
    from napari_cellseg.models import load_weights, read_card

    failed = 0
    for path in args.files:
        try:
            if args.check:
                loaded = load_weights(path)
                card = loaded.card
                n_params = sum(p.numel() for p in loaded.model.parameters())
            else:
                card, n_params = read_card(path), None
        except CellsegError as error:  # report it and go on with the other files
            print(f"cellseg: error: {error}", file=sys.stderr)
            failed += 1
            continue
        if args.json:
            print(json.dumps({"file": str(path), "card": card.to_dict()}, indent=2, sort_keys=True))
            continue
        print(f"{path}")
        print(card.summary())
        if n_params is not None:
            print(f"  parameters:    {n_params / 1e6:.2f} M (weights loaded and checked)")
        print("  builder args:  " + json.dumps(card.builder_args, sort_keys=True))
        versions = ", ".join(f"{k} {v}" for k, v in card.library_versions.items())
        print(f"  libraries:     {versions}")
    return 2 if failed else 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``cellseg`` (exposed for docs and tests)."""
    parser = argparse.ArgumentParser(
        prog="cellseg",
        description="Segment cells, nuclei and glands with U-Net and Mask R-CNN.",
    )
    parser.add_argument("--version", action="version", version=f"napari-cellseg {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    info = sub.add_parser("info", help="print the model card of weight files")
    info.add_argument("files", nargs="+", metavar="FILE", help="weight file or smp folder")
    info.add_argument("--json", action="store_true", help="print the card as JSON")
    info.add_argument(
        "--check", action="store_true", help="also build the model and load the weights"
    )
    info.set_defaults(func=_cmd_info)
    from napari_cellseg.cli.predict import add_predict_parser

    add_predict_parser(sub)
    from napari_cellseg.cli.train import add_train_parsers

    add_train_parsers(sub)
    from napari_cellseg.cli.tune import add_tune_parser

    add_tune_parser(sub)
    from napari_cellseg.cli.batch import add_batch_parser

    add_batch_parser(sub)
    from napari_cellseg.cli.export import add_export_parser

    add_export_parser(sub)

    from napari_cellseg.cli.rank import add_rank_parser

    add_rank_parser(sub)
    from napari_cellseg.cli.models_io import add_models_io_parsers

    add_models_io_parsers(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit status (2 for a user error, with a one-line message)."""
    from napari_cellseg.errors import CellsegError

    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except CellsegError as error:
        print(f"cellseg: error: {error}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # e.g. `cellseg info --json w | head`: the reader has gone
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except OSError as error:  # a path the system refused (a file where a folder is wanted...)
        where = f": {error.filename}" if error.filename else ""
        print(
            f"cellseg: error: {error.strerror or error}{where} (check the path and try again)",
            file=sys.stderr,
        )
        return 2
    except KeyboardInterrupt:
        print("cellseg: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
