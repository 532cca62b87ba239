"""Human in the loop: adapt a base model to a left-out domain from 3 corrected images.

A domain is left out of everything (base training, thresholds, model choice): the base model
never saw it. Its images are split once (seeded) into a *pool* the user could correct and a
*test* set that only scores. Each run "corrects" 3 pool images (their ground truth stands
in for the corrections) plus 1 more for validation, fine-tunes the base for ``--minutes`` on
this CPU with a recipe (``classic``: the old default; ``fast``: the new one) and scores the
result on the test set. The 3 images are chosen at random (one run per seed) or as the 3
top-ranked by the base model's uncertainty (``napari_cellseg.batch.ranking``): ``top`` in
its default order (total doubt: where there is the most to correct), ``top-mean`` by the
doubt of each image's worst objects (the order before; runs recorded as ``top`` before
2026-12-03 used it and are relabelled ``top-mean``), ``top-spread`` in the ``spread`` order
(total doubt weighed by how typical each image is of the pool and how unlike those picked
before it), ``top-typical`` in the ``spread`` order without the doubt (how typical and
how unlike those picked before: the cold-start choice when the base model is far from the
domain). ``top-spread`` and ``top-typical`` runs rank with ``--diameter``, as they are
scored; the ``top`` and ``top-mean`` runs recorded before ranked with the model's default
diameter (``auto``). ``--rank-diameter N`` ranks at ``N`` px instead (the size of the
domain's objects, as a user would give it), while every run is still scored at
``--diameter``; such runs are tabled apart ("at N px"). Since session 33 a fine-tune left to
choose inverts the images when they are the other way round for the base
(``TrainParams.invert=None``; ``napari_cellseg.training.auto_invert``): each run records
the invert its fine-tune used (``inverted``), tables say ``invert=auto (on in k of n)``, and
``--set invert=false`` gives the default before it.

Domains: ``colour`` (the 83 colour H&E/brightfield tiles of DSB 2018 stage1_train),
``brightfield`` (the 11 grey brightfield ones), ``glas`` (GlaS glands: pool = train,
test = testA), ``em`` (ISBI 2012 EM cell interiors: pool = the first 15 of the 30
consecutive sections, test = the last 15; since session 34, to see the invert a fine-tune
chooses on images whose histogram reads the other way from their objects). Writes
``bench/results/hitl_<domain>.json`` and prints a Markdown table.

    .venv/bin/python bench/hitl.py --base ~/.cache/napari-cellseg/base-fluo.safetensors \\
        --domain colour --minutes 5 --runs classic:random:0 fast:random:0 fast:top:0
    .venv/bin/python bench/hitl.py --report   # the table of every bench/results/hitl_*.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from napari_cellseg.events import EpochEnd, Notice
from napari_cellseg.inference import predict
from napari_cellseg.io.images import read_image, read_labels
from napari_cellseg.labels.metrics import evaluate_pair
from napari_cellseg.models import load_weights, read_card
from napari_cellseg.params import PredictParams
from napari_cellseg.training.budget import cpu_share
from napari_cellseg.training.loop import iter_train
from napari_cellseg.training.pairs import TrainingPair, scan_training_folders
from napari_cellseg.training.recipes import recipe_params

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT.parent / "shared" / "data"


def image_kind(path: Path) -> str:
    """colour / brightfield / fluorescence, as the DSB 2018 tiles split."""
    from skimage.io import imread

    image = imread(path)[..., :3].astype(np.float32)
    grey = np.allclose(image[..., 0], image[..., 1], atol=2) and np.allclose(
        image[..., 1], image[..., 2], atol=2
    )
    if not grey:
        return "colour"
    return "brightfield" if image.mean() > 100 else "fluorescence"


def domain_split(domain: str, n_test: int | None) -> tuple[list[TrainingPair], list[TrainingPair]]:
    """(pool, test) for ``domain``, split once with seed 0."""
    if domain == "glas":
        pool = scan_training_folders([DATA / "glas" / "train"])
        test = scan_training_folders([DATA / "glas" / "testA"])
        if n_test:
            test = test[:: max(1, len(test) // n_test)][:n_test]
        return pool, test
    if domain == "em":  # consecutive sections look alike: the first half for the pool
        slices = scan_training_folders([DATA / "isbi2012_em" / "train"])
        half = len(slices) // 2
        return slices[:half], slices[half:][: n_test or None]
    pairs = scan_training_folders([DATA / "dsb2018" / "stage1_train"])
    chosen = [p for p in pairs if image_kind(p.image_path) == domain]
    random.Random(0).shuffle(chosen)
    n = n_test or len(chosen) // 2
    return chosen[n:], chosen[:n]


def link_folder(pairs: list[TrainingPair], folder: Path) -> Path:
    """A training folder of symlinks (images/, masks/) to ``pairs``."""
    for sub in ("images", "masks"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    for pair in pairs:
        os.symlink(pair.image_path, folder / "images" / pair.image_path.name)
        os.symlink(pair.mask_path, folder / "masks" / pair.mask_path.name)
    return folder


def score(weights: Path, test: list[TrainingPair], diameter, invert: bool = False) -> dict:
    """Mean metrics of ``weights`` on ``test`` (default prediction parameters; ``invert``:
    the images' intensities flipped, ``PredictParams.invert``)."""
    rows, seconds = scored_rows(load_weights(weights), test, diameter, invert)
    out = {k: round(float(np.mean([r[k] for r in rows])), 4) for k in rows[0]}
    out["seconds"] = round(seconds, 1)
    return out


def scored_rows(loaded, pairs, diameter, invert: bool = False) -> tuple[list[dict], float]:
    """Each image's metrics (``evaluate_pair``) of ``loaded`` on ``pairs``, and the seconds."""
    params = PredictParams(device="cpu", diameter=diameter, invert=invert)
    rows, start = [], time.perf_counter()
    for pair in pairs:
        truth = read_labels(pair.mask_path)
        labels = predict(read_image(pair.image_path).data, loaded, params).labels
        rows.append(evaluate_pair(truth, labels))
    return rows, time.perf_counter() - start


def choose(
    pool, how: str, seed: int, base: Path, n: int = 3, diameter=None, paired=False, invert=False
):  # fmt: skip
    """(train, val): ``n`` images chosen ``how`` plus one random validation image.

    The ranking segments with ``diameter``, as the runs are scored (``None``: the model's
    default). Runs recorded before 2026-12-03 (second session) ranked with the default.
    ``paired``: the validation image is drawn first, from the seed alone, so every selection
    of a seed validates on the same image and chooses its ``n`` among the rest (otherwise
    it is drawn after the ``n``, and differs between selections). ``invert``: rank the
    images with their intensities flipped (``PredictParams.invert``).
    """
    rng = random.Random(1000 + seed)
    if paired:
        val = random.Random(2000 + seed).choice(pool)
        pool = [p for p in pool if p is not val]
        train, _, reasons = choose(pool, how, seed, base, n, diameter, invert=invert)
        return train, [val], reasons
    if how == "random":
        picked = rng.sample(pool, n + 1)
        return picked[:n], picked[n:], None
    from napari_cellseg.batch.ranking import rank_images

    loaded = load_weights(base)
    order = {"top-mean": "mean", "top-spread": "spread", "top-typical": "spread"}.get(how, "total")
    params = PredictParams(device="cpu", diameter=diameter, invert=invert)
    ranking = rank_images([p.image_path for p in pool], loaded, params, order=order)
    if how == "top-typical":  # the spread order without the doubt: typical, then unlike
        from napari_cellseg.batch.spread import spread_order

        features = np.stack([np.asarray(r.features, np.float64) for r in ranking])
        ranking = [ranking[i] for i in spread_order(np.ones(len(ranking)), features)]
    by_path = {p.image_path: p for p in pool}
    top = [by_path[Path(r.path)] for r in ranking[:n]]
    rest = [p for p in pool if p not in top]
    reasons = [
        f"{Path(r.path).name[:10]} total {r.total_doubt:.2f} score {r.score:.3f} {r.reason}"
        for r in ranking[:n]
    ]
    return top, [rng.choice(rest)], reasons


def run(
    base: Path, pool, test, recipe: str, how: str, seed: int, minutes: float, diameter,
    object_diameter: float | None = None, paired: bool = False, base_score: dict | None = None,
    rank_diameter=None, overrides: dict | None = None,
):  # fmt: skip
    ranked_at = diameter if rank_diameter is None else rank_diameter
    invert = bool((overrides or {}).get("invert"))  # --set invert=true: ranked inverted too
    train, val, reasons = choose(
        pool, how, seed, base, diameter=ranked_at, paired=paired, invert=invert
    )  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "tuned.safetensors"
        tuned = fine_tune(base, train, val, out, recipe, seed, minutes, object_diameter, overrides)
        flipped = tuned["inverted"] != invert  # the fine-tune chose to invert (invert=None)
        if tuned["kept_base"] and base_score and not flipped:
            # A kept base is the base, tensor for tensor (tests/training/test_never_worse.py).
            metrics = dict(base_score)
        else:
            metrics = score(out, test, diameter)
    return {
        "recipe": recipe,
        "overrides": dict(overrides or {}),
        "selection": how,
        "seed": seed,
        "object_diameter": object_diameter,
        "train_images": [p.name for p in train],
        "val_image": val[0].name,
        "corrected_objects": sum(int(read_labels(p.mask_path).max()) for p in train),
        "ranking_reasons": reasons,
        "ranking_diameter": ranked_at if how != "random" else None,
        "rank_diameter_given": rank_diameter is not None and how != "random",
        "protocol": "paired" if paired else "unpaired",
        **tuned,
        "test": metrics,
    }


def fine_tune(
    init: Path, train, val, out: Path, recipe: str, seed: int, minutes: float,
    object_diameter: float | None = None, overrides: dict | None = None,
    folders: tuple[Path, Path] | None = None,
) -> dict:  # fmt: skip
    """Fine-tune ``init`` on ``train`` (validating on ``val``) into ``out`` with ``recipe``.

    ``val`` ``None``: the training itself splits ``train`` (``TrainParams.val_fraction``), as
    the dock and ``cellseg train`` do. ``folders``: a training and a validation folder made
    beforehand (e.g. with region masks), used instead of ``train`` and ``val``.

    Returns the run's record: ``train_seconds``, ``cpu_share`` (the process's CPU time over
    the wall time of its threads: near 0.9 alone on 2 idle cores, about half when another
    job shared them, which a time budget turns into fewer epochs), the validation DSB AP and
    pixel Dice after each epoch, ``best_epoch``, ``kept_base`` (no epoch beat ``init``:
    ``out`` holds it) and the notices. ``overrides``: TrainParams values that replace the recipe's.
    """
    family = load_weights(init).card.family
    values = {"minutes": minutes, "epochs": 10_000, "seed": seed, **(overrides or {})}
    params = recipe_params(recipe, family, **values)
    if object_diameter is not None:  # else the initial model's
        params = replace(params, object_diameter=object_diameter)
    with tempfile.TemporaryDirectory() as tmp:
        start, cpu_start = time.perf_counter(), time.process_time()
        epochs, dice, notices = [], [], []
        if folders is not None:
            train_dirs, val_dirs = [folders[0]], [folders[1]]
        else:
            train_dirs = [link_folder(train, Path(tmp) / "train")]
            val_dirs = [link_folder(val, Path(tmp) / "val")] if val is not None else None
        gen = iter_train(train_dirs, out, params, init=init, val=val_dirs)
        try:
            while True:
                event = next(gen)
                if isinstance(event, EpochEnd):
                    epochs.append(round(float(event.val_metrics.get("dsb_ap", float("nan"))), 4))
                    dice.append(round(float(event.val_metrics.get("pixel_dice", float("nan"))), 4))
                elif isinstance(event, Notice):
                    notices.append(event.message)
        except StopIteration as stop:
            finished = stop.value
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    return {
        "train_seconds": round(wall, 1),
        "cpu_share": round(cpu_share(cpu, wall, torch.get_num_threads()), 2),
        "epochs_val_dsb_ap": epochs,
        "epochs_val_pixel_dice": dice,
        "best_epoch": finished.best_epoch,
        "kept_base": finished.kept_base,
        "inverted": bool(read_card(out).normalisation.get("invert")),  # given or chosen
        "notices": notices,
    }


def _recipe(row: dict) -> str:
    """A run's recipe as the tables group it, with the values ``--set`` replaced.

    Runs that recorded the invert their fine-tune chose (``TrainParams.invert=None``, the
    default since session 33) say ``invert=auto``.

    >>> _recipe({"recipe": "fast", "overrides": {"ema_decay": 0.97}})
    'fast, ema_decay=0.97'
    >>> _recipe({"recipe": "fast", "overrides": {}, "inverted": True})
    'fast, invert=auto'
    """
    overrides = dict(row.get("overrides", {}))
    if "inverted" in row and "invert" not in overrides:
        overrides["invert"] = "auto"
    return row["recipe"] + "".join(f", {k}={v}" for k, v in sorted(overrides.items()))


def _selection(row: dict) -> str:
    """A run's selection as the tables group it: paired runs apart from the others, ranked
    at a given diameter (``--rank-diameter``) apart from ranked at the model's own."""
    at = row.get("ranking_diameter") if row.get("rank_diameter_given") else None
    return (
        row["selection"]
        + (f" at {at} px" if at is not None else "")
        + (", paired" if row.get("protocol") == "paired" else "")
    )


def report(folder: Path) -> str:
    """A Markdown table of every ``hitl_<domain>.json`` in ``folder`` (mean over seeds)."""
    lines = [
        "| left-out domain (base) | test images | recipe | 3 images chosen | seeds | DSB AP "
        "(mean ± sd) | vs base | training s (mean) | kept base |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for path in sorted(folder.glob("hitl_*.json")):
        result = json.loads(path.read_text())
        if "base_score" not in result:  # another script's (hitl_rounds_*, hitl_split_*, ...)
            continue
        base = result["base_score"]["dsb_ap"]
        head = f"{result['domain']} ({result['base']})"
        encoder = (result.get("base_builder_args") or {}).get("encoder_name")
        if encoder:
            head = head[:-1] + f", {encoder} U-Net)"
        if path.stem != f"hitl_{result['domain']}":  # a re-run kept apart (--out)
            head += f", {path.stem}"
        flipped = ", inverted" if result.get("base_score_inverted") else ""  # --set invert=true
        lines.append(
            f"| {head} | {result['test']} | base model{flipped} | — | — | {base:.3f} | — | — | — |"
        )
        groups: dict[tuple[str, str], list] = {}
        for row in result["runs"]:
            groups.setdefault((_recipe(row), _selection(row)), []).append(row)
        for (recipe, how), rows in groups.items():
            ap = np.array([r["test"]["dsb_ap"] for r in rows])
            seconds = np.mean([r["train_seconds"] for r in rows])
            kept = sum(bool(r["kept_base"]) for r in rows)
            seeds = ",".join(str(r["seed"]) for r in rows)
            if "invert=auto" in recipe:  # how often the fine-tunes chose to invert
                recipe += f" (on in {sum(bool(r['inverted']) for r in rows)} of {len(rows)})"
            chosen = {"top": "top-ranked (total doubt)", "top-mean": "top-ranked (mean doubt)",
                      "top-spread": "top-ranked (spread)",
                      "top-typical": "typical (spread without doubt)"}  # fmt: skip
            plain = how.removesuffix(", paired")
            name, _, at = plain.partition(" at ")
            chosen = chosen.get(name, name) + (f" at {at}" if at else "") + how[len(plain) :]
            lines.append(
                f"| {head} | {result['test']} | {recipe} | {chosen} | {seeds} | {ap.mean():.3f} ± "
                f"{ap.std():.3f} | {ap.mean() - base:+.3f} | {seconds:.0f} | {kept}/{len(rows)} |"
            )
    return "\n".join(lines)


def kept_model(keep: Path | None, tmp: Path, name: str, make) -> tuple[Path, dict]:
    """A model that ``make(path)`` writes to ``path`` (returning its record), or the one
    ``keep`` holds from an earlier run.

    With ``keep`` the model and its record stay there (``<name>.safetensors`` and
    ``<name>.json``) and are reused when both exist (the record then says ``reused``), so that
    a later run can try other second rounds on the same round-1 models; else ``tmp`` holds it.
    """
    if keep is None:
        path = tmp / f"{name}.safetensors"
        return path, make(path)
    path, info = keep / f"{name}.safetensors", keep / f"{name}.json"
    if path.is_file() and info.is_file():
        return path, {**json.loads(info.read_text()), "reused": str(path)}
    keep.mkdir(parents=True, exist_ok=True)
    record = make(path)
    info.write_text(json.dumps(record, indent=1))
    return path, record


def round_one(keep: Path | None, tmp: Path, name: str, base: Path, train, val, test, seed: int,
              minutes: float) -> tuple[Path, dict]:  # fmt: skip
    """:func:`kept_model` of the fast recipe's fine-tune of ``base`` on ``train`` (validating
    on ``val``; ``None``: the training's own split), its record holding the ``test`` scores."""
    return kept_model(
        keep, tmp, name,
        lambda path: {
            **fine_tune(base, train, val, path, "fast", seed, minutes),
            "test": score(path, test, None),
        },
    )  # fmt: skip


def loop_parser(doc: str | None) -> argparse.ArgumentParser:
    """The options every human-in-the-loop script takes: base, domain, minutes, test, out."""
    parser = argparse.ArgumentParser(description=(doc or "").splitlines()[0])
    parser.add_argument("--base", type=Path, required=True)
    parser.add_argument("--domain", choices=("colour", "brightfield", "glas", "em"), required=True)
    parser.add_argument("--minutes", type=float, default=5.0)
    parser.add_argument("--n-test", type=int, default=None)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument(
        "--keep", type=Path, default=None,
        help="keep the round-1 models in DIR/<domain> and reuse them (hitl_rounds, hitl_split; "
        "one folder per base model)",
    )  # fmt: skip
    return parser


def record_seeds(result: dict, out: Path, seeds, work, table) -> None:
    """``work(seed)`` for each seed into ``result["seeds"]``, ``out`` rewritten after each;
    then ``table`` of them printed."""
    result.setdefault("seeds", [])
    for seed in seeds:
        result["seeds"].append(work(seed))
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=1))
    print(table(result["seeds"]))


def header(args: argparse.Namespace, pool: list, test: list) -> dict:
    """What a result file records about its runs: domain, base, split sizes, machine."""
    return {
        "domain": args.domain,
        "base": args.base.name,
        "pool": len(pool),
        "test": len(test),
        "minutes": args.minutes,
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
        "torch_threads": __import__("torch").get_num_threads(),
        "base_builder_args": read_card(args.base).builder_args,
    }


def main() -> None:
    if "--report" in __import__("sys").argv:
        print(report(ROOT / "bench" / "results"))
        return
    parser = loop_parser(__doc__)
    parser.add_argument("--diameter", default=None, help="prediction diameter (default: model's)")
    parser.add_argument(
        "--rank-diameter", default=None,
        help="rank the pool at this diameter (the objects' size as the user gives it; default: "
        "--diameter); scoring keeps --diameter",
    )  # fmt: skip
    parser.add_argument(
        "--runs", nargs="+", default=["classic:random:0", "fast:random:0"],
        help="recipe:selection:seed, selection random, top, top-mean, top-spread or "
        "top-typical, e.g. fast:top:0",
    )  # fmt: skip
    parser.add_argument(
        "--object-diameter", type=float, default=None,
        help="fine-tune at this object diameter (px; default: the base model's)",
    )  # fmt: skip
    parser.add_argument(
        "--paired", action="store_true",
        help="draw each seed's validation image first, the same for every selection",
    )  # fmt: skip
    parser.add_argument(
        "--set", nargs="+", default=[], metavar="NAME=VALUE",
        help="TrainParams values that replace the recipe's in every run, e.g. ema_decay=0.97",
    )  # fmt: skip
    args = parser.parse_args()
    overrides = {k: json.loads(v) for k, _, v in (s.partition("=") for s in args.set)}
    pool, test = domain_split(args.domain, args.n_test)
    out = args.out or ROOT / "bench" / "results" / f"hitl_{args.domain}.json"
    result = json.loads(out.read_text()) if out.exists() else {"runs": []}
    result.update(header(args, pool, test))
    if "base_score" not in result:
        invert = bool(overrides.get("invert"))  # the base scored as the runs rank and train
        result["base_score"] = score(args.base, test, args.diameter, invert)
        result["base_score_inverted"] = invert
        print("base", result["base_score"], flush=True)
    for spec in args.runs:
        recipe, how, seed = spec.split(":")
        if how not in ("random", "top", "top-mean", "top-spread", "top-typical"):
            parser.error(
                f"--runs {spec}: selection must be random, top, top-mean, top-spread or top-typical"
            )
        row = run(
            args.base, pool, test, recipe, how, int(seed), args.minutes, args.diameter,
            args.object_diameter, args.paired, result["base_score"], args.rank_diameter, overrides,
        )  # fmt: skip
        print(json.dumps(row), flush=True)
        result["runs"].append(row)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=1))
    base = result["base_score"]["dsb_ap"]
    print(f"\n| recipe | selection | seeds | DSB AP (mean) | vs base {base:.3f} |")
    print("|---|---|---|---|---|")
    groups: dict[tuple[str, str], list] = {}
    for row in result["runs"]:
        groups.setdefault((_recipe(row), _selection(row)), []).append(row)
    for (recipe, how), rows in groups.items():
        ap = np.mean([r["test"]["dsb_ap"] for r in rows])
        seeds = ",".join(str(r["seed"]) for r in rows)
        print(f"| {recipe} | {how} | {seeds} | {ap:.3f} | {ap - base:+.3f} |")


if __name__ == "__main__":
    main()
