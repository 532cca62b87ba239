"""Training and fine-tuning: ``iter_train`` yields events; ``fit`` drains it.

Every epoch: optimise on random augmented crops, validate on whole images with the inference
engine (DSB AP and F1), keep the best weights in the output ``.safetensors`` (with a model
card carrying config, data manifest and history) and write a resumable checkpoint, both
atomically. Stopping at any yield leaves the last good checkpoint and weights.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Generator, Sequence
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch

from napari_cellseg.device import resolve_device
from napari_cellseg.errors import CellsegError
from napari_cellseg.events import (
    CancelledError,
    CheckpointSaved,
    EpochEnd,
    Notice,
    StepLoss,
    TrainingFinished,
    drain,
)
from napari_cellseg.models import ModelCard, save_weights
from napari_cellseg.models.polarity import fine_tune_hint, with_polarity
from napari_cellseg.params import TrainParams, fine_tune_learning_rate
from napari_cellseg.training.adaptation import adapted
from napari_cellseg.training.auto_invert import choose_invert, inverted_card
from napari_cellseg.training.averaging import averaged_module, update_average, weight_average
from napari_cellseg.training.budget import shared_cores_notice
from napari_cellseg.training.checkpoints import (
    checkpoint_path_for,
    load_checkpoint,
    restore_rng_state,
    restore_training_state,
    rng_state,
    save_checkpoint,
)
from napari_cellseg.training.losses import build_loss
from napari_cellseg.training.provenance import kept_base_card, trained_card, with_lineage
from napari_cellseg.training.scale import diameter_stats, scale_mismatch, training_diameter
from napari_cellseg.training.start import starting_model
from napari_cellseg.training.steps import (
    Stepper,
    freeze_batchnorm,
    make_loader,
    make_optimizer,
    make_scheduler,
    scheduler_per_step,
)
from napari_cellseg.training.validation import (
    KEY_METRIC,
    ValidationImage,
    at_training_scale,
    beats_base,
    count_objects,
    epoch_score,
    evaluate_model,
    few_objects,
    weak_evidence,
)


def fit(*args: Any, **kwargs: Any) -> TrainingFinished:
    """Run :func:`iter_train` to the end and return its :class:`TrainingFinished`."""
    return drain(iter_train(*args, **kwargs))


def iter_train(
    data: Sequence[str | Path] | None,
    out: str | Path | None,
    params: TrainParams | None = None,
    *,
    init: str | Path | None = None,
    val: Sequence[str | Path] | None = None,
    resume: str | Path | None = None,
    model: torch.nn.Module | None = None,
    card: ModelCard | None = None,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
    optimizer: torch.optim.Optimizer | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> Generator[Any, None, TrainingFinished]:
    """Train or fine-tune a model on instance-labelled folders, yielding events.

    Parameters
    ----------
    data : sequence of paths
        Training folders, each with ``images/`` and ``masks/`` (matched by stem).
    out : path
        The ``.safetensors`` weight file to write (best weights + model card). The
        resumable checkpoint goes beside it (``<name>.ckpt``).
    params : TrainParams
        Epochs / time budget, batch and patch size, optimiser, schedule, loss, validation.
    init : path, optional
        Start from this weight file (fine-tuning); a head with another class count is
        re-initialised with a notice.
    val : sequence of paths, optional
        Validation folders; otherwise ``params.val_fraction`` of ``data`` (by seed).
    resume : path, optional
        A checkpoint to continue exactly where it stopped (data, out and params default to
        the checkpoint's).
    model, card, loss_fn, optimizer : optional
        Injected components (tests pass tiny ones).
    should_stop : callable, optional
        Polled at every yield; True raises :class:`CancelledError` (the last checkpoint stays).

    Yields
    ------
    StepLoss, EpochEnd, CheckpointSaved, Notice

    Returns
    -------
    TrainingFinished
    """
    from napari_cellseg.training.manifest import file_manifest
    from napari_cellseg.training.pairs import scan_training_folders
    from napari_cellseg.training.stable_split import (
        TRAIN,
        VALIDATION,
        earlier_roles,
        kept_roles_notice,
        split_after,
    )
    from napari_cellseg.training.validation import read_validation_images

    def checkpoint(event: Any) -> Any:
        if should_stop is not None and should_stop():
            raise CancelledError("training was stopped; the last checkpoint is kept")
        return event

    state = load_checkpoint(resume) if resume else None
    if state is not None:
        params = params or TrainParams(**state["params"])
        data = data or state["data"]
        val = val or state["val"] or None
        out = out or state["out"]
        card = card or ModelCard.from_json(state["card"])
    params = params or TrainParams()
    if not data:
        raise CellsegError(
            "no training data given: pass at least one folder with images/ and masks/"
        )
    if out is None or not str(out).endswith(".safetensors"):
        raise CellsegError(f"the output weight file must end in .safetensors, got {out}")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    ckpt_path = checkpoint_path_for(out)
    device = resolve_device(params.device)
    torch.manual_seed(params.seed)

    model, card, notices = starting_model(params, model, card, init, state)
    if init is not None and state is None:  # the base's identity, history and data
        card = with_lineage(card, init)
    for notice in notices:
        yield checkpoint(Notice(notice))
    model = model.to(device)

    pairs = scan_training_folders([Path(d) for d in data])
    hashes: dict[Path, str] = {}  # each file read once, for the split and the manifest
    if val:
        train_pairs, val_pairs = pairs, scan_training_folders([Path(v) for v in val])
    else:  # the base's roles first: never validate on an image it was trained on
        base = card.lineage[-1].get("data_manifest", []) if card.lineage else []
        train_pairs, val_pairs, kept = split_after(
            pairs, params.val_fraction, params.seed, earlier_roles(base), hashes
        )
        if kept and state is None:
            yield checkpoint(Notice(kept_roles_notice(kept, len(val_pairs))))
    manifest = file_manifest(train_pairs, TRAIN, hashes) + file_manifest(
        val_pairs, VALIDATION, hashes
    )
    if state is None:  # a checkpoint's params hold the diameter it resolved
        fine_tuning = init is not None
        diameter = training_diameter(params.object_diameter, card, fine_tuning=fine_tuning)
        if params.object_diameter is None and fine_tuning:
            yield checkpoint(
                Notice(f"fine-tuning at the base model's object diameter, {diameter:g} px")
            )
        params = replace(params, object_diameter=diameter)
    raw_val = read_validation_images(val_pairs)
    val_images, val_diameters = at_training_scale(raw_val, params.object_diameter)
    few = few_objects(count_objects(raw_val), len(raw_val))
    if few and state is None:
        yield checkpoint(Notice(few, level="warning"))
    judge = partial(  # the base model's validation metrics with a card
        evaluate_model, model, images=val_images, device=device, tile_size=params.val_tile_size
    )
    chose = scored = None  # invert=None: a fine-tune chooses from the images (auto_invert.py)
    if params.invert is None and init is not None and state is None:
        flip, chose, scored = choose_invert(card, train_pairs, judge if val_images else None)
        params = replace(params, invert=flip)
    if params.invert and state is None:  # in the card: its predictions invert as training did
        card = inverted_card(card)
    loader, dataset = make_loader(train_pairs, card, params)
    manifest = with_polarity(manifest, dataset.images)  # as the network got them (inverted…)
    train_diameters = diameter_stats(dataset.diameters)
    mismatch = scale_mismatch(train_diameters["median"], params.object_diameter)
    way = chose or fine_tune_hint(card, manifest, bool(params.invert))  # learned the other way
    for warning in filter(None, (mismatch, way) if init is not None and state is None else ()):
        yield checkpoint(Notice(warning, level="warning"))
    object_size = {
        "object_diameter": params.object_diameter,
        "scale_jitter": params.scale_jitter,
        "train_diameters": train_diameters,
        "val_diameters": diameter_stats(val_diameters),
    }
    steps_per_epoch = len(loader)

    if init is not None and params.learning_rate is None and state is None:
        params = replace(params, learning_rate=fine_tune_learning_rate(card.family))
        yield checkpoint(Notice(f"fine-tuning with learning rate {params.learning_rate:g}"))
    optimizer = optimizer or make_optimizer(model, params)
    scheduler = make_scheduler(optimizer, params, steps_per_epoch)
    use_amp = params.mixed_precision and device.type == "cuda"
    amp_dtype = torch.bfloat16 if use_amp and torch.cuda.is_bf16_supported() else torch.float16
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp and amp_dtype == torch.float16)
    loss_fn = loss_fn or build_loss(params.loss)
    stepper = Stepper(
        model, card.family, device, loss_fn, optimizer, scaler, use_amp, amp_dtype, params.grad_clip
    )

    history: list[dict[str, Any]] = []
    start_epoch, best_score, best_epoch, best_metrics, baseline = 0, -math.inf, 0, {}, None
    if state is not None:
        restore_training_state(resume, out, state, model, optimizer, scheduler, scaler)
        restore_rng_state(state["rng"])
        history, start_epoch = list(state["history"]), int(state["epoch"])
        best_score, best_epoch = float(state["best_score"]), int(state["best_epoch"])
        best_metrics, baseline = dict(state["best_metrics"]), state.get("baseline")
        yield checkpoint(Notice(f"resumed from {resume} after epoch {start_epoch}"))
    elif init is not None and val_images:
        t0 = time.perf_counter()
        baseline = scored if scored is not None else judge(card)  # choose_invert's, if judged
        history.append({"epoch": 0, "train_loss": None, **baseline})
        best_score = epoch_score(baseline, [])
        # Until an epoch beats it, the output holds the base model (stopped or not).
        save_weights(model, kept_base_card(card, params, manifest, history, baseline, init), out)
        yield checkpoint(
            EpochEnd(0, params.epochs, None, baseline, False, time.perf_counter() - t0)
        )

    if params.adapt_batchnorm and state is None and (said := adapted(model, dataset, device)):
        yield checkpoint(Notice(said))
    average = weight_average(model, params.ema_decay, state)  # after AdaBN: its statistics
    judged = averaged_module(model, average)  # the weights validated and saved
    freeze_bn = params.freeze_batchnorm
    if freeze_bn is None:
        freeze_bn = init is not None or bool(state and state.get("fine_tuning"))
    started, cpu_started = time.perf_counter(), time.process_time()
    stopped_reason, epoch, stale = "epochs", start_epoch, 0
    for epoch in range(start_epoch + 1, params.epochs + 1):
        t0 = time.perf_counter()
        dataset.set_epoch(epoch)
        model.train()
        if freeze_bn:
            freeze_batchnorm(model)
        losses: list[float] = []
        out_of_time = False
        for step, (images, targets) in enumerate(loader, start=1):
            loss = stepper.step(images, targets)
            if not math.isfinite(loss):
                raise CellsegError(
                    f"training diverged: the loss became {loss} at epoch {epoch}, step {step}; "
                    "lower the learning rate or check the masks (the last checkpoint is kept)"
                )
            losses.append(loss)
            update_average(average, model)
            if scheduler_per_step(params):
                scheduler.step()
            yield checkpoint(
                StepLoss(epoch, step, steps_per_epoch, loss, optimizer.param_groups[0]["lr"])
            )
            if params.minutes is not None and time.perf_counter() - started > params.minutes * 60:
                out_of_time = True
                break
        if not scheduler_per_step(params):
            scheduler.step()
        metrics = (
            evaluate_model(judged, card, val_images, device=device, tile_size=params.val_tile_size)
            if val_images
            else {}
        )
        score = epoch_score(metrics, losses)
        improved = score > best_score and beats_base(metrics, baseline, few=few is not None)
        record = {"epoch": epoch, "train_loss": float(np.mean(losses)), **metrics}
        history.append(record)
        if improved:
            best_score, best_epoch, best_metrics, stale = score, epoch, metrics, 0
            best_card = trained_card(
                card, params, manifest, history, best_epoch, best_metrics, init, object_size
            )
            save_weights(judged, best_card, out)
        else:
            stale += 1
        save_checkpoint(
            ckpt_path,
            {
                "epoch": epoch,
                "model": model.state_dict(),
                "average": average.state_dict() if average is not None else None,
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "scaler": scaler.state_dict() if scaler.is_enabled() else None,
                "params": params.to_dict(),
                "card": card.to_json(),
                "data": [str(d) for d in data],
                "val": [str(v) for v in (val or [])],
                "out": str(out),
                "history": history,
                "best_score": best_score,
                "best_epoch": best_epoch,
                "best_metrics": best_metrics,
                "baseline": baseline,
                "rng": rng_state(),
                "fine_tuning": bool(freeze_bn),
            },
        )
        yield checkpoint(
            EpochEnd(
                epoch,
                params.epochs,
                record["train_loss"],
                metrics,
                improved,
                time.perf_counter() - t0,
            )
        )
        yield checkpoint(CheckpointSaved(str(ckpt_path), epoch, str(out) if improved else None))
        if out_of_time:
            stopped_reason = "time budget"
            break
        patience = params.early_stopping_patience
        if patience is not None and val_images and stale >= patience:
            stopped_reason = "early stopping"
            yield checkpoint(Notice(f"early stopping: no better {KEY_METRIC} for {stale} epochs"))
            break
    if stopped_reason == "time budget" and device.type == "cpu":  # did it get the cores?
        cpu, wall = time.process_time() - cpu_started, time.perf_counter() - started
        if shared := shared_cores_notice(cpu, wall, torch.get_num_threads()):
            yield checkpoint(Notice(shared, level="warning"))
    kept_base = baseline is not None and best_epoch == 0
    if kept_base:  # no epoch beat the base: ``out`` still holds its weights; full history
        from safetensors.torch import load_file

        model.load_state_dict(load_file(out, device=str(device)))
        save_weights(model, kept_base_card(card, params, manifest, history, baseline, init), out)
    elif not out.exists():  # e.g. resumed after the last epoch: keep a weight file anyway
        save_weights(
            judged,
            trained_card(card, params, manifest, history, epoch, best_metrics, init, object_size),
            out,
        )
    weak = (weak_evidence(best_metrics, baseline) or few) if not kept_base else None
    if weak:
        yield checkpoint(Notice(weak, level="warning"))
    if params.tune_thresholds and val_images:
        yield checkpoint(Notice(f"tuning the thresholds on {len(val_images)} validation images…"))
        from napari_cellseg.training.tuning import iter_tune_saved

        note = yield from iter_tune_saved(out, val_images, params, device, should_stop)
        yield checkpoint(Notice(note))
    return TrainingFinished(
        str(out),
        str(ckpt_path),
        epoch,
        best_epoch,
        best_metrics,
        baseline,
        stopped_reason,
        history,
        kept_base=kept_base,
        invert=bool(card.normalisation.get("invert")) if params.invert else None,  # flipped
    )


__all__ = ["ValidationImage", "fit", "iter_train"]
