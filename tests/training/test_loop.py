"""Training with tiny models on the bundled sample crops (CPU, seconds)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import tifffile
import torch

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
from napari_cellseg.io.samples import sample_data_dir
from napari_cellseg.models import load_weights, read_card
from napari_cellseg.params import TrainParams
from napari_cellseg.training.checkpoints import checkpoint_path_for, load_checkpoint
from napari_cellseg.training.loop import fit, iter_train
from tiny_models import TINY_UNET, tiny_train_params


def _params(family: str = "unet", **kw) -> TrainParams:
    return tiny_train_params(family, **kw)


@pytest.fixture(scope="module")
def data() -> list:
    return [sample_data_dir()]


@pytest.mark.parametrize("family", ["unet", "maskrcnn"])
def test_two_epochs_write_weights_card_and_checkpoint(tmp_path, data, family) -> None:
    out = tmp_path / f"{family}.safetensors"
    events: list = []
    finished = drain(iter_train(data, out, _params(family)), events.append)
    steps = [e for e in events if isinstance(e, StepLoss)]
    epochs = [e for e in events if isinstance(e, EpochEnd)]
    saved = [e for e in events if isinstance(e, CheckpointSaved)]
    assert isinstance(finished, TrainingFinished)
    assert not any(isinstance(e, TrainingFinished) for e in events)  # returned, not yielded
    assert [(s.epoch, s.step) for s in steps] == [(1, 1), (1, 2), (2, 1), (2, 2)]
    assert all(math.isfinite(s.loss) for s in steps)
    assert [e.epoch for e in epochs] == [1, 2]
    assert "dsb_ap" in epochs[0].val_metrics and epochs[0].val_metrics["n_images"] == 1
    assert [s.epoch for s in saved] == [1, 2]
    assert finished.epochs_run == 2 and finished.stopped_reason == "epochs"
    card = read_card(out)
    assert card.family == family
    prov = card.provenance
    assert prov["source"] == "napari-cellseg training"
    assert {m["name"] for m in prov["data_manifest"]} == {
        "dsb_fluorescence",
        "dsb_brightfield",
        "dsb_he",
    }
    assert all(len(m["image_sha256"]) == 64 for m in prov["data_manifest"])
    # each training image's polarity, as the network got it (models/polarity.py)
    way = {"dsb_fluorescence": "bright", "dsb_brightfield": "dark", "dsb_he": "dark"}
    for m in prov["data_manifest"]:
        assert m.get("polarity") == (way[m["name"]] if m["role"] == "train" else None)
    assert prov["training"]["learning_rate"] == (1e-3 if family == "unet" else 0.005)
    assert prov["history"][0]["epoch"] == 1
    assert set(prov["metrics"]) >= {"dsb_ap", "f1@0.5"}
    assert "torch" in card.library_versions
    load_weights(out)  # the card rebuilds the model and the weights fit
    ckpt = load_checkpoint(checkpoint_path_for(out))
    assert ckpt["epoch"] == 2 and set(ckpt) >= {"model", "optimizer", "scheduler", "rng"}


def test_stop_mid_epoch_then_resume_continues_the_curve(tmp_path, data) -> None:
    full = fit(data, tmp_path / "full.safetensors", _params(epochs=3))
    out = tmp_path / "stopped.safetensors"
    seen = []

    def stop_in_epoch_2() -> bool:
        return any(isinstance(e, StepLoss) and e.epoch == 2 for e in seen)

    gen = iter_train(data, out, _params(epochs=3), should_stop=stop_in_epoch_2)
    with pytest.raises(CancelledError):
        for event in gen:
            seen.append(event)
    ckpt_path = checkpoint_path_for(out)
    assert load_checkpoint(ckpt_path)["epoch"] == 1  # the last good checkpoint is kept
    assert out.exists()
    resumed: list = []
    finished = drain(iter_train(None, None, resume=ckpt_path), resumed.append)
    assert any(isinstance(e, Notice) and "resumed" in e.message for e in resumed)
    assert finished.epochs_run == 3
    assert [h["epoch"] for h in finished.history] == [1, 2, 3]
    first = [h["train_loss"] for h in full.history]
    again = [h["train_loss"] for h in finished.history]
    np.testing.assert_allclose(again, first, rtol=1e-4)  # exactly where it stopped


def test_non_finite_loss_raises_a_clear_error(tmp_path, data) -> None:
    def nan_loss(logits, target):
        return logits.sum() * float("nan")

    with pytest.raises(CellsegError, match="training diverged: the loss became nan"):
        fit(data, tmp_path / "n.safetensors", _params(), loss_fn=nan_loss)


def test_time_budget_stops_after_the_first_step(tmp_path, data) -> None:
    result = fit(data, tmp_path / "t.safetensors", _params(epochs=50, minutes=1e-6))
    assert result.stopped_reason == "time budget" and result.epochs_run == 1


@pytest.mark.parametrize(
    ("cpu_rate", "epochs", "minutes", "warned"),
    [(0.0, 50, 1e-6, True), (4.0, 50, 1e-6, False), (0.0, 1, None, False)],
    ids=["cores-taken", "cores-free", "no-budget"],
)
def test_a_budgeted_cpu_training_says_when_other_programs_took_its_cores(
    tmp_path, data, monkeypatch, cpu_rate, epochs, minutes, warned
) -> None:
    import time

    from napari_cellseg.training import budget

    monkeypatch.setattr(budget, "MIN_SECONDS", 0.0)  # judge even this tiny run
    wall = time.perf_counter
    # the process's CPU time advancing at ``cpu_rate`` times the wall clock (0: none of it)
    monkeypatch.setattr(time, "process_time", lambda: cpu_rate * wall())
    events: list = []
    params = _params(epochs=epochs, minutes=minutes)
    drain(iter_train(data, tmp_path / "b.safetensors", params), events.append)
    shared = [e for e in events if isinstance(e, Notice) and "CPU threads" in e.message]
    assert len(shared) == int(warned)
    if warned:
        assert shared[0].level == "warning"
        threads = torch.get_num_threads()
        assert shared[0].message.startswith(f"training had 0 % of the {threads} CPU threads")


def test_fine_tune_reports_baseline_and_reinitialises_a_new_head(tmp_path, data) -> None:
    base = tmp_path / "base.safetensors"
    fit(data, base, _params(epochs=1))
    events: list = []
    finished = drain(
        iter_train(
            data,
            tmp_path / "ft.safetensors",
            _params(epochs=1, builder_args={"classes": 2}),
            init=base,
        ),
        events.append,
    )
    notices = [e.message for e in events if isinstance(e, Notice)]
    assert any("classes changed from 3 to 2: re-initialised" in n for n in notices)
    baseline = [e for e in events if isinstance(e, EpochEnd) and e.epoch == 0]
    assert baseline and baseline[0].train_loss is None
    assert finished.baseline_metrics is not None
    card = read_card(tmp_path / "ft.safetensors")
    assert card.builder_args["classes"] == 2 and card.provenance["init"] == "base.safetensors"
    assert card.object_diameter == read_card(base).object_diameter == 20.0  # the base's scale


def test_a_checkpoint_whose_state_does_not_fit_says_so_in_one_line(tmp_path, data) -> None:
    from napari_cellseg.training.checkpoints import save_checkpoint

    out = tmp_path / "m.safetensors"
    fit(data, out, _params(epochs=1))
    path = checkpoint_path_for(out)
    state = load_checkpoint(path)
    # as one written before session 22, when the model still held its unused encoder stages
    group = state["optimizer"]["param_groups"][0]
    group["params"] = [*group["params"], max(group["params"]) + 1]
    save_checkpoint(path, {k: v for k, v in state.items() if k not in ("format", "version")})
    with pytest.raises(CellsegError) as caught:
        drain(iter_train(None, None, resume=path))
    message = str(caught.value)
    assert "\n" not in message and "does not fit" in message and "without --resume" in message
    assert out.exists()  # nothing the user made is lost


def test_bad_training_input_is_clear(tmp_path) -> None:
    with pytest.raises(CellsegError, match="no training data"):
        fit([], tmp_path / "x.safetensors", _params())
    with pytest.raises(CellsegError, match="must end in .safetensors"):
        fit([sample_data_dir()], tmp_path / "x.pth", _params())
    with pytest.raises(CellsegError, match="patch size 100"):
        TrainParams(patch_size=100)


def test_cli_train_and_evaluate(tmp_path, data, capsys) -> None:
    from napari_cellseg.cli import main

    out = tmp_path / "cli.safetensors"
    rc = main(
        [
            "train",
            "--data",
            str(data[0]),
            "--model",
            "unet",
            "--builder-args",
            json.dumps(TINY_UNET),
            "--out",
            str(out),
            "--epochs",
            "1",
            "--batch-size",
            "2",
            "--patch-size",
            "64",
            "--samples-per-epoch",
            "2",
            "--device",
            "cpu",
        ]
    )
    assert rc == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("epoch 1/1 loss ") and "dsb_ap" in lines[0]
    assert lines[-1].startswith("done (epochs) after 1 epochs")
    pred_dir = tmp_path / "pred"
    rc = main(
        [
            "predict",
            str(data[0] / "images" / "dsb_he.png"),
            "--weights",
            str(out),
            "--out",
            str(pred_dir),
            "--tile",
            "128",
        ]
    )
    assert rc == 0
    report = tmp_path / "metrics.json"
    assert (
        main(["evaluate", "--pred", str(pred_dir), "--gt", str(data[0]), "--json", str(report)])
        == 0
    )
    result = json.loads(report.read_text())
    keys = {
        "n_images",
        "dsb_ap",
        "ap@0.5",
        "f1@0.5",
        "glas_object_f1",
        "glas_object_dice",
        "glas_object_hausdorff",
        "pixel_iou",
        "pixel_dice",
        "per_image",
    }
    assert keys <= set(result)
    assert result["n_images"] == 1 and result["per_image"][0]["name"] == "dsb_he"
    assert set(result["per_image"][0]) == (keys - {"n_images", "per_image"}) | {"name"}
    # the two samples without a prediction are named, not silently left out
    assert result["unscored_ground_truth"] == ["dsb_brightfield", "dsb_fluorescence"]
    assert "2 ground-truth image(s) have no prediction" in capsys.readouterr().err

    # a binary mask given as ground truth: scored, with a note that says what is wrong
    binary = tmp_path / "binary_gt"
    binary.mkdir()
    truth = tifffile.imread(data[0] / "masks" / "dsb_he.tif")
    tifffile.imwrite(binary / "dsb_he.tif", ((truth > 0) * 255).astype(np.uint8))
    assert main(["evaluate", "--pred", str(pred_dir), "--gt", str(binary)]) == 0
    assert "hold one value for several separate objects (dsb_he.tif)" in capsys.readouterr().err

    # resuming the finished run: the options it cannot apply are named
    ckpt = checkpoint_path_for(out)
    assert main(["train", "--resume", str(ckpt), "--epochs", "5", "--lr", "0.1"]) == 0
    assert "ignored: --epochs, --lr" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["train", "--data", "DATA", "--out", "o.safetensors", "--epochs", "0"], "at least 1"),
        (
            ["train", "--data", "DATA", "--out", "o.safetensors", "--samples-per-epoch", "0"],
            "samples per epoch must be at least 1",
        ),
        (["evaluate", "--pred", "NOPE", "--gt", "DATA"], "--pred NOPE: folder not found"),
        (["evaluate", "--pred", "DATA", "--gt", "DATA", "--json", "DATA"], "is a folder"),
        (["evaluate", "--pred", "DATA", "--gt", "DATA", "--json", "NOPE/m.json"], "does not exist"),
    ],
)
def test_cli_train_and_evaluate_refuse_bad_options(tmp_path, data, capsys, args, message) -> None:
    from napari_cellseg.cli import main

    nope = str(tmp_path / "nope")
    args = [a.replace("DATA", str(data[0])).replace("NOPE", nope) for a in args]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("cellseg: error:") and message.replace("NOPE", nope) in err


def test_a_checkpoint_that_carries_code_is_refused_unexecuted(tmp_path) -> None:
    import os

    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    path = tmp_path / "evil.ckpt"
    torch.save({"format": "napari-cellseg-checkpoint", "x": Evil()}, path)
    with pytest.raises(CellsegError, match="refused: the file is a pickle that carries code") as e:
        load_checkpoint(path)
    assert "weights_only" not in str(e.value)  # no advice to switch the safety off
    assert not marker.exists()


def test_fine_tuning_freezes_batchnorm_statistics(tmp_path, data) -> None:
    base = tmp_path / "base.safetensors"
    fit(data, base, _params(epochs=1))
    before = {
        k: v.clone()
        for k, v in load_weights(base).model.state_dict().items()
        if "running_mean" in k
    }
    fit(data, tmp_path / "ft.safetensors", _params(epochs=1, val_fraction=0.0), init=base)
    after = load_weights(tmp_path / "ft.safetensors").model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # statistics kept
    fit(
        data,
        tmp_path / "ft2.safetensors",
        _params(epochs=1, val_fraction=0.0, freeze_batchnorm=False),
        init=base,
    )
    changed = load_weights(tmp_path / "ft2.safetensors").model.state_dict()
    assert any(not torch.equal(before[k], changed[k]) for k in before)


def test_tune_thresholds_at_the_end_stores_them_in_the_card(tmp_path, data) -> None:
    from napari_cellseg.events import Progress

    out = tmp_path / "tuned.safetensors"
    events: list = []
    finished = drain(iter_train(data, out, _params(epochs=1, tune_thresholds=True)), events.append)
    notes = [e.message for e in events if isinstance(e, Notice)]
    assert "tuning the thresholds on 1 validation images…" in notes
    tuning = [e for e in events if isinstance(e, Progress) and e.stage == "tuning"]
    assert [e.done for e in tuning] == [1]  # one validation image
    assert isinstance(finished, TrainingFinished)
    card = read_card(out)
    if card.postprocess:  # a better setting was found: it is stored with how it was found
        record = card.provenance["postprocess_tuning"]
        assert record["data"] == "1 validation images" and record["n_images"] == 1
        assert record["score"] > record["base_score"]
        assert notes[-1].startswith("thresholds tuned on the validation images: ")
    else:
        assert notes[-1].startswith("thresholds: none of ")
    load_weights(out)  # still a loadable weight file


def test_cli_train_tune_thresholds(tmp_path, data, capsys) -> None:
    from napari_cellseg.cli import main

    out = tmp_path / "cli.safetensors"
    args = ["train", "--data", str(data[0]), "--model", "unet", "--out", str(out)]
    args += ["--builder-args", json.dumps(TINY_UNET), "--epochs", "1", "--batch-size", "2"]
    args += ["--patch-size", "64", "--samples-per-epoch", "2", "--device", "cpu"]
    assert main([*args, "--tune-thresholds"]) == 0
    err = capsys.readouterr().err
    assert "note: tuning the thresholds on 1 validation images…" in err
    assert "note: thresholds tuned on the validation images: " in err or (
        "note: thresholds: none of " in err
    )
    tuned = "postprocess_tuning" in read_card(out).provenance
    assert tuned == ("thresholds tuned on the validation images" in err)
