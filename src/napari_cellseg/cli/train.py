"""``cellseg train`` and ``cellseg evaluate``."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from napari_cellseg.params import TrainParams, field_info
from napari_cellseg.training.recipes import RECIPES, recipe_params


def _help(name: str) -> str:
    """The help text of a :class:`TrainParams` field (one place: its metadata)."""
    return field_info(TrainParams, name).help


def _diameter(text: str) -> float | None:
    """``--object-diameter``: px, ``0``/``none``/``off`` (no rescaling) or ``auto`` (None)."""
    word = text.strip().lower()
    if word in ("none", "off"):
        return 0.0
    if word == "auto":
        return None
    try:
        return float(word)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a diameter: give pixels, 0/none (off) or auto"
        ) from None


def add_train_parsers(sub: argparse._SubParsersAction) -> None:
    """Register ``train`` and ``evaluate``."""
    from napari_cellseg.families import family_names

    d = TrainParams()
    t = sub.add_parser("train", help="train or fine-tune a model on images/ + masks/ folders")
    t.add_argument(
        "--data",
        action="append",
        type=Path,
        default=[],
        metavar="DIR",
        help="training folder with images/ and masks/ (repeatable)",
    )
    t.add_argument("--model", choices=family_names(), default=d.family)
    t.add_argument("--encoder", default=None, help="U-Net encoder (e.g. resnet18, resnet34)")
    t.add_argument("--backbone", default=None, help="Mask R-CNN backbone (resnet18/34/50)")
    t.add_argument(
        "--builder-args",
        default=None,
        metavar="JSON",
        help='full builder arguments as JSON, e.g. \'{"encoder_name": "resnet18", '
        '"encoder_depth": 4, "decoder_channels": [128, 64, 32, 16]}\'',
    )
    t.add_argument("--init", type=Path, default=None, help="start from this weight file")
    t.add_argument("--out", type=Path, default=None, help="output .safetensors weight file")
    group = t.add_mutually_exclusive_group()
    group.add_argument(
        "--epochs", type=int, default=None, help=f"{_help('epochs')} (default {d.epochs})"
    )
    group.add_argument("--minutes", type=float, default=None, help=_help("minutes"))
    t.add_argument(
        "--val-fraction",
        type=float,
        default=d.val_fraction,
        help=f"{_help('val_fraction')} (default {d.val_fraction})",
    )
    t.add_argument(
        "--val",
        action="append",
        type=Path,
        default=[],
        metavar="DIR",
        help="validation folder instead of a split (repeatable)",
    )
    t.add_argument("--device", default=d.device, help=_help("device"))
    t.add_argument("--resume", type=Path, default=None, help="continue from a .ckpt file")
    t.add_argument(
        "--recipe",
        choices=RECIPES,
        default=None,
        help=f"{_help('recipe')} (with --init; default fast: AdaBN, small crops on the objects, "
        "warm-up, encoder at 0.3x the learning rate; classic: a tenth of the family's learning "
        "rate, BatchNorm frozen)",
    )
    t.add_argument(
        "--invert", action=argparse.BooleanOptionalAction, default=None,
        help=f"{_help('invert')}; the new model's card keeps it, so it inverts by itself "
        "(default: a fine-tune turns it on when its images are the other way round for the "
        "base model and the base scores no worse on the validation images inverted)",
    )  # fmt: skip
    for flag, name, kind in (
        ("--encoder-lr-factor", "encoder_lr_factor", float),
        ("--warmup-steps", "warmup_steps", int),
        ("--foreground-bias", "foreground_bias", float),
        ("--ema-decay", "ema_decay", float),
    ):
        t.add_argument(flag, type=kind, default=None, help=f"{_help(name)} (default: the recipe's)")
    for flag, name in (
        ("--batch-size", "batch_size"),
        ("--patch-size", "patch_size"),
        ("--samples-per-epoch", "samples_per_epoch"),
    ):
        default = getattr(d, name)
        t.add_argument(
            flag, type=int, default=None, help=f"{_help(name)} (default {default}; the recipe's)"
        )
    t.add_argument("--lr", type=float, default=None, help=_help("learning_rate"))
    t.add_argument(
        "--optimizer",
        choices=field_info(TrainParams, "optimizer").choices,
        default=None,
        help=_help("optimizer"),
    )
    t.add_argument(
        "--schedule",
        choices=("cosine", "step", "constant"),
        default=None,
        help="learning-rate schedule: cosine (per step; with a warm-up it decays over the "
        "minutes of a time budget), step (x0.1 at each third of the epochs) or constant "
        "(default: the family's, U-Net cosine and Mask R-CNN step; the fast recipe's cosine)",
    )
    t.add_argument("--loss", default=d.loss, help=_help("loss"))
    t.add_argument("--no-augment", action="store_true", help="switch augmentation off")
    t.add_argument("--seed", type=int, default=d.seed, help=_help("seed"))
    t.add_argument("--workers", type=int, default=d.num_workers, help=_help("num_workers"))
    t.add_argument(
        "--patience",
        type=int,
        default=None,
        help=_help("early_stopping_patience"),
    )
    t.add_argument("--tune-thresholds", action="store_true", help=_help("tune_thresholds"))
    t.add_argument(
        "--object-diameter",
        type=_diameter,
        default=d.object_diameter,
        metavar="PX",
        help=f"{_help('object_diameter')} (default auto)",
    )
    t.add_argument(
        "--scale-jitter",
        type=float,
        default=d.scale_jitter,
        help=f"{_help('scale_jitter')} (default {d.scale_jitter:g})",
    )
    t.set_defaults(func=run_train)
    t.set_defaults(train_defaults=vars(t.parse_args([])))  # to name options --resume ignores

    e = sub.add_parser("evaluate", help="score predicted label files against ground truth")
    e.add_argument("--pred", required=True, type=Path, help="folder of <stem>_labels.tif")
    e.add_argument("--gt", required=True, type=Path, help="folder of <stem>.tif (or masks/)")
    e.add_argument("--json", type=Path, default=None, help="write the metrics JSON here")
    e.set_defaults(func=run_evaluate)


def run_train(args: argparse.Namespace) -> int:
    """Drain ``iter_train`` with a progress line and one line per epoch."""
    from napari_cellseg.errors import CellsegError
    from napari_cellseg.events import EpochEnd, Notice, StepLoss, drain
    from napari_cellseg.training.loop import iter_train

    params = None
    if args.resume is None:
        if not args.data:
            raise CellsegError("give at least one --data folder (or --resume a checkpoint)")
        if args.out is None:
            raise CellsegError("give --out FILE.safetensors for the trained weights")
        builder = None
        if args.encoder:
            builder = {"encoder_name": args.encoder, "in_channels": 3, "classes": 3}
        if args.backbone:
            builder = {"backbone": args.backbone, "num_classes": 2}
        if args.builder_args:
            try:
                builder = {**(builder or {}), **json.loads(args.builder_args)}
            except json.JSONDecodeError as error:
                raise CellsegError(f"--builder-args is not valid JSON: {error.msg}") from None
        if args.recipe and not args.init:
            raise CellsegError("--recipe chooses how to fine-tune: give --init WEIGHTS with it")
        settings = dict(
            family=args.model,
            builder_args=builder if not args.init else None,
            epochs=(
                args.epochs
                if args.epochs is not None
                else (10_000 if args.minutes else TrainParams().epochs)
            ),
            minutes=args.minutes,
            batch_size=args.batch_size,
            patch_size=args.patch_size,
            samples_per_epoch=args.samples_per_epoch,
            learning_rate=args.lr,
            optimizer=args.optimizer,
            schedule=args.schedule,
            loss=args.loss,
            augment=not args.no_augment,
            val_fraction=args.val_fraction,
            seed=args.seed,
            device=args.device,
            num_workers=args.workers,
            early_stopping_patience=args.patience,
            tune_thresholds=args.tune_thresholds,
            object_diameter=args.object_diameter,
            scale_jitter=args.scale_jitter,
        )
        tweaks = {
            name: getattr(args, name)
            for name in ("encoder_lr_factor", "warmup_steps", "foreground_bias", "ema_decay")
            if getattr(args, name) is not None
        }
        settings.update(tweaks, **({} if args.invert is None else {"invert": args.invert}))
        if args.init:
            from napari_cellseg.models import load_weights

            family = load_weights(args.init).card.family
            settings.pop("family")
            params = recipe_params(args.recipe or "fast", family, **settings)
        else:
            defaults = TrainParams()
            for name in ("batch_size", "patch_size", "samples_per_epoch"):
                if settings[name] is None:
                    settings[name] = getattr(defaults, name)
            if settings["early_stopping_patience"] is None:
                settings["early_stopping_patience"] = defaults.early_stopping_patience
            params = TrainParams(**settings)
    else:
        ignored = [
            "--" + name.replace("_", "-")
            for name, default in args.train_defaults.items()
            if name not in ("resume", "func", "train_defaults") and getattr(args, name) != default
        ]
        if ignored:
            print(
                f"note: --resume continues with the checkpoint's own settings; ignored: "
                f"{', '.join(ignored)}",
                file=sys.stderr,
            )
    tty = sys.stderr.isatty()
    start = time.perf_counter()

    def show(event: object) -> None:
        if isinstance(event, StepLoss) and tty:
            print(
                f"\repoch {event.epoch} step {event.step}/{event.steps_per_epoch} "
                f"loss {event.loss:.4f}",
                end="",
                file=sys.stderr,
            )
        elif isinstance(event, EpochEnd):
            if tty:
                print("\r", end="", file=sys.stderr)
            metrics = " ".join(
                f"{k} {v:.3f}"
                for k, v in event.val_metrics.items()
                if k in ("dsb_ap", "f1@0.5", "glas_object_f1", "pixel_iou")
            )
            loss = f"loss {event.train_loss:.4f} " if event.train_loss is not None else "start "
            print(
                f"epoch {event.epoch}/{event.epochs} {loss}{metrics} "
                f"({event.seconds:.0f} s){' *best' if event.best else ''}",
                flush=True,
            )
        elif isinstance(event, Notice):
            print(f"note: {event.message}", file=sys.stderr)

    finished = drain(
        iter_train(
            args.data or None,
            args.out,
            params,
            init=args.init,
            val=args.val or None,
            resume=args.resume,
        ),
        show,
    )
    outcome = finished.kept_base_message() or (
        f"best epoch {finished.best_epoch} -> {finished.weights_path}"
    )
    print(
        f"done ({finished.stopped_reason}) after {finished.epochs_run} epochs in "
        f"{time.perf_counter() - start:.0f} s: {outcome} (checkpoint {finished.checkpoint_path})"
    )
    return 0


def _ground_truth_for(gt: Path, stem: str) -> Path | None:
    for folder in (gt, gt / "masks"):
        for suffix in (".tif", ".tiff", ".png"):
            candidate = folder / f"{stem}{suffix}"
            if candidate.is_file():
                return candidate
    return None


def _looks_semantic(labels: Any) -> bool:
    """A binary mask passed as labels: one non-zero value over several separate objects."""
    import numpy as np
    from skimage.measure import label

    values = np.unique(labels)
    values = values[values != 0]
    return len(values) == 1 and int(label(labels == values[0]).max()) > 1


def _unpredicted(gt: Path, predicted: set[str]) -> list[str]:
    """Stems of the ground-truth label files in ``gt`` (or ``gt/masks``) not in ``predicted``."""
    stems = {
        p.stem
        for folder in (gt, gt / "masks")
        if folder.is_dir()
        for p in folder.iterdir()
        if p.is_file() and p.suffix.lower() in (".tif", ".tiff", ".png")
    }
    return sorted(stems - predicted)


def run_evaluate(args: argparse.Namespace) -> int:
    """Match ``<stem>_labels.tif`` to ``<stem>.tif``, print a table, write JSON."""
    from napari_cellseg.errors import CellsegError
    from napari_cellseg.io.atomic import atomic_write_text
    from napari_cellseg.io.images import read_labels
    from napari_cellseg.labels.metrics import METRIC_KEYS, evaluate_pair, summarise

    if not args.pred.is_dir():
        raise CellsegError(f"--pred {args.pred}: folder not found; give the folder of label files")
    if not args.gt.is_dir():
        raise CellsegError(f"--gt {args.gt}: folder not found; give the ground-truth folder")
    if args.json is not None and (args.json.is_dir() or not args.json.parent.is_dir()):
        problem = "is a folder" if args.json.is_dir() else "is in a folder that does not exist"
        raise CellsegError(f"--json {args.json} {problem}; give a file name in an existing folder")
    predictions = sorted(args.pred.glob("*_labels.tif"))
    if not predictions:
        raise CellsegError(f"{args.pred}: no <stem>_labels.tif files to evaluate")
    per_image, missing, semantic = [], [], []
    for path in predictions:
        stem = path.name.removesuffix("_labels.tif")
        truth_path = _ground_truth_for(args.gt, stem)
        if truth_path is None:
            missing.append(stem)
            continue
        truth = read_labels(truth_path)
        if _looks_semantic(truth):
            semantic.append(truth_path.name)
        try:
            scores = evaluate_pair(truth, read_labels(path))
        except CellsegError as error:
            raise CellsegError(f"{path.name} vs {truth_path.name}: {error}") from None
        per_image.append({"name": stem, **scores})
    if missing:
        print(
            f"note: no ground truth for {len(missing)} prediction(s): {', '.join(missing[:5])}",
            file=sys.stderr,
        )
    if semantic:
        print(
            f"note: {len(semantic)} ground-truth image(s) hold one value for several separate "
            f"objects ({', '.join(semantic[:5])}): binary masks, not instance labels, so every "
            "object is scored as one; give each object its own id (skimage.measure.label)",
            file=sys.stderr,
        )
    unpredicted = _unpredicted(args.gt, {row["name"] for row in per_image} | set(missing))
    if unpredicted:
        print(
            f"note: {len(unpredicted)} ground-truth image(s) have no prediction and are not "
            f"scored: {', '.join(unpredicted[:5])}",
            file=sys.stderr,
        )
    if not per_image:
        raise CellsegError(f"{args.gt}: no ground truth matches the predictions by stem")
    summary = summarise([{k: v for k, v in row.items() if k != "name"} for row in per_image])
    report = {**summary, "per_image": per_image, "unscored_ground_truth": unpredicted}
    for key in METRIC_KEYS:
        print(f"{key:24s} {summary[key]:.4f}")
    print(f"{'n_images':24s} {summary['n_images']}")
    if args.json:
        atomic_write_text(args.json, json.dumps(report, indent=2))
    return 0
