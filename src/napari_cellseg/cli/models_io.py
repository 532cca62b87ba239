"""``cellseg export-model`` and ``cellseg import-model``: bioimage.io model packages.

``export-model W --to bioimageio --out model.zip`` writes a U-Net weight file as a validated
bioimage.io package; ``import-model PKG --out W.safetensors`` turns a package into a native
weight file (after checking that it reproduces the package's own test output).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

__all__ = ["add_models_io_parsers", "run_export_model", "run_import_model"]

#: Largest difference from a package's test output (probabilities) that counts as the same.
TEST_TOLERANCE = 1e-3


def add_models_io_parsers(sub: argparse._SubParsersAction) -> None:
    """Register the ``export-model`` and ``import-model`` subcommands."""
    p = sub.add_parser(
        "export-model",
        help="export a U-Net weight file as a bioimage.io model package (.zip)",
        description=(
            "Write a U-Net weight file as a bioimage.io model package: state-dict weights "
            "(smp Unet), a test input/output pair computed by the model, a cover, a README "
            "from the card and the card's normalisation as preprocessing; validated offline "
            "with bioimageio.spec. Needs the extra: pip install 'napari-cellseg[bioimageio]'."
        ),
    )
    p.add_argument("weights", type=Path, metavar="WEIGHTS", help="a U-Net weight file")
    p.add_argument("--to", default="bioimageio", choices=["bioimageio"], help="package format")
    p.add_argument("--out", type=Path, required=True, help="the package to write (.zip)")
    p.add_argument(
        "--author",
        action="append",
        default=[],
        metavar="NAME",
        help="an author of the model (repeat for several; default 'napari-cellseg user')",
    )
    p.add_argument(
        "--license", default="CC-BY-4.0", help="SPDX licence of the package (default CC-BY-4.0)"
    )
    p.add_argument(
        "--test-image",
        type=Path,
        default=None,
        help="image to cut the test input from (default: the bundled fluorescence sample)",
    )
    p.add_argument(
        "--torchscript", action="store_true", help="also store TorchScript weights (2× size)"
    )
    p.set_defaults(func=run_export_model)

    q = sub.add_parser(
        "import-model",
        help="import a bioimage.io model package as a napari-cellseg weight file",
        description=(
            "Read a bioimage.io package (.zip or folder) with smp U-Net state-dict weights, "
            "check that it reproduces the package's test output, and write it as a "
            ".safetensors weight file with a model card. Packages can also be given "
            "directly to --weights. Needs the extra: pip install 'napari-cellseg[bioimageio]'."
        ),
    )
    q.add_argument("package", type=Path, metavar="PACKAGE", help="bioimage.io package")
    q.add_argument("--out", type=Path, default=None, help="the .safetensors file to write")
    q.add_argument(
        "--trust-torchscript",
        action="store_true",
        help="allow a package with only TorchScript weights (runs its compiled code; "
        "only for packages from authors you trust); checked, but not written with --out",
    )
    q.set_defaults(func=run_import_model)


def run_export_model(args: argparse.Namespace) -> int:
    """Export one weight file; prints the package written and the validator's verdict."""
    from napari_cellseg.events import drain
    from napari_cellseg.models.bioimageio_export import iter_export_bioimageio

    work = iter_export_bioimageio(
        args.weights,
        args.out,
        authors=args.author,
        license=args.license,
        test_image=args.test_image,
        torchscript=args.torchscript,
    )
    out = drain(work, lambda event: print(f"  {event.message}", file=sys.stderr))
    size = out.stat().st_size / 2**20
    print(f"{args.weights} -> {out} ({size:.1f} MiB, valid bioimage.io model package)")
    if not args.author:
        print("  hint: name the model's authors with --author 'First Last'", file=sys.stderr)
    return 0


def run_import_model(args: argparse.Namespace) -> int:
    """Import one package: check it against its test tensors, then write it if asked."""
    from napari_cellseg.errors import CellsegError
    from napari_cellseg.models import save_weights
    from napari_cellseg.models.bioimageio_import import check_test_tensors, import_bioimageio

    loaded = import_bioimageio(args.package, trust_torchscript=args.trust_torchscript)
    diff = check_test_tensors(loaded, args.package)
    verdict = "reproduces" if diff <= TEST_TOLERANCE else "DOES NOT reproduce"
    print(f"{args.package}: {loaded.card.name} ({loaded.source})")
    print(f"  {verdict} the package's test output (largest difference {diff:.2g})")
    print("\n".join("  " + line for line in loaded.card.summary().splitlines()))
    if diff > TEST_TOLERANCE:
        raise CellsegError(
            f"{args.package}: napari-cellseg's normalisation and model do not reproduce the "
            f"package's test output (difference {diff:.2g} > {TEST_TOLERANCE}); not imported"
        )
    if args.out is None:
        return 0
    if loaded.source.endswith("torchscript"):
        raise CellsegError(
            f"{args.package}: TorchScript weights cannot become a .safetensors weight file; "
            "use the package from Python: import_bioimageio(path, trust_torchscript=True)"
        )
    written = save_weights(loaded.model, loaded.card, args.out)
    print(f"  -> {written}")
    return 0
