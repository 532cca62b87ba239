"""A fine-tune that never beats its base keeps the base weights (and says so).

The loss is replaced by one that pushes every pixel to background, so every epoch scores
worse than the bundled U-Net on the validation image.
"""

from __future__ import annotations

import torch

from napari_cellseg.events import TrainingFinished, drain
from napari_cellseg.io.samples import sample_data_dir
from napari_cellseg.models import load_weights, read_card
from napari_cellseg.params import TrainParams
from napari_cellseg.training import loop
from napari_cellseg.training.loop import iter_train

BASE = sample_data_dir() / "models" / "unet_dsb.safetensors"
PARAMS = {
    "family": "unet",
    "epochs": 2,
    "batch_size": 2,
    "patch_size": 64,
    "samples_per_epoch": 2,
    "val_fraction": 0.34,
    "device": "cpu",
    "seed": 3,
    "learning_rate": 0.05,
}


def all_background(logits: torch.Tensor, _targets: torch.Tensor) -> torch.Tensor:
    """Minimised by calling every pixel background: training makes the model worse."""
    return -torch.log_softmax(logits, 1)[:, 0].mean()


def assert_holds_the_base(out) -> None:
    base, kept = load_weights(BASE).model.state_dict(), load_weights(out).model.state_dict()
    assert set(kept) == set(base)
    for name, tensor in base.items():
        assert torch.equal(kept[name], tensor), name
    card, base_card = read_card(out), read_card(BASE)
    assert card.postprocess == base_card.postprocess
    assert card.normalisation == base_card.normalisation
    assert card.builder_args == base_card.builder_args
    prov = card.provenance
    assert prov["kept_base"] is True and prov["epochs"] == 0
    assert prov["note"].startswith("no epoch beat the base model")
    assert [h["epoch"] for h in prov["history"]] == [0, 1, 2]
    assert prov["base_provenance"] == base_card.provenance


def test_no_epoch_beats_the_base_so_the_output_is_the_base(tmp_path) -> None:
    out = tmp_path / "worse.safetensors"
    events: list = []
    gen = iter_train(
        [sample_data_dir()], out, TrainParams(**PARAMS), init=BASE, loss_fn=all_background
    )
    finished = drain(gen, events.append)
    assert isinstance(finished, TrainingFinished)
    assert finished.best_epoch == 0 and finished.kept_base
    base_ap = finished.baseline_metrics["dsb_ap"]
    assert base_ap > 0.05
    assert all(h["dsb_ap"] < base_ap for h in finished.history[1:])  # every epoch worse
    assert finished.kept_base_message() == (
        f"no epoch beat the base model (DSB AP {base_ap:.3f}); {out} holds the base "
        "weights unchanged"
    )
    assert_holds_the_base(out)


def test_a_kept_base_set_to_invert_says_so(tmp_path) -> None:
    """The file holds the base's weights but its card inverts: its predictions differ from
    the base's, so the line says Invert is on (issue 19, auto invert)."""
    out = tmp_path / "worse_inverted.safetensors"
    params = TrainParams(**{**PARAMS, "invert": True})
    finished = drain(
        iter_train([sample_data_dir()], out, params, init=BASE, loss_fn=all_background)
    )
    assert finished.kept_base and finished.invert is True
    line = finished.kept_base_message()
    assert line.startswith("no epoch beat the base model with Invert on (DSB AP ")
    assert line.endswith(
        f"{out} holds the base weights unchanged, with Invert on as the base was scored"
    )
    assert read_card(out).normalisation == {**read_card(BASE).normalisation, "invert": True}
    base, kept = load_weights(BASE).model.state_dict(), load_weights(out).model.state_dict()
    assert all(torch.equal(kept[name], tensor) for name, tensor in base.items())


def test_an_epoch_that_beats_the_base_does_not_claim_it_kept_it(tmp_path) -> None:
    finished = TrainingFinished("o.safetensors", "o.ckpt", 1, 1, {"dsb_ap": 0.5}, {}, "epochs", [])
    assert not finished.kept_base and finished.kept_base_message() == ""


def test_cli_says_the_base_was_kept(tmp_path, monkeypatch, capsys) -> None:
    from napari_cellseg.cli import main

    monkeypatch.setattr(loop, "build_loss", lambda _name: all_background)
    out = tmp_path / "cli.safetensors"
    args = ["train", "--data", str(sample_data_dir()), "--init", str(BASE), "--out", str(out)]
    args += ["--epochs", "2", "--batch-size", "2", "--patch-size", "64", "--lr", "0.05"]
    args += ["--samples-per-epoch", "2", "--device", "cpu", "--seed", "3"]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "best epoch 0" not in printed
    line = printed.strip().splitlines()[-1]
    assert "no epoch beat the base model (DSB AP 0." in line
    assert f"; {out} holds the base weights unchanged" in line
    assert_holds_the_base(out)


def _scripted_validation(monkeypatch, scores: list[dict], objects: int = 20) -> None:
    """``evaluate_model`` returns ``scores`` in turn: the base first, then each epoch; the
    validation images count ``objects`` objects (20: enough to raise no warning)."""
    calls = iter(scores)
    monkeypatch.setattr(loop, "evaluate_model", lambda *a, **k: dict(next(calls)))
    monkeypatch.setattr(loop, "count_objects", lambda images: objects)


def test_a_better_pixel_dice_alone_does_not_replace_the_base(tmp_path, monkeypatch) -> None:
    """Both score DSB AP 0 on the validation image (no object found right); the epochs'
    higher pixel Dice breaks ties between epochs, never against the base."""
    _scripted_validation(
        monkeypatch,
        [{"dsb_ap": 0.0, "pixel_dice": 0.1}] + [{"dsb_ap": 0.0, "pixel_dice": 0.4}] * 2,
    )
    out = tmp_path / "tie.safetensors"
    events: list = []
    finished = drain(iter_train([sample_data_dir()], out, TrainParams(**PARAMS), init=BASE),
                     events.append)  # fmt: skip
    assert finished.kept_base and finished.best_epoch == 0
    assert_holds_the_base(out)
    assert not [e for e in events if getattr(e, "level", "") == "warning"]
    assert finished.kept_base_message() == (
        "no epoch beat the base model (DSB AP 0.000): the validation images could not tell "
        "the models apart (DSB AP 0 for the base and every epoch); validate on an image where "
        f"the base model finds some objects, or correct more of it; {out} holds the base "
        "weights unchanged"
    )


def test_a_win_at_a_very_low_score_is_kept_with_a_warning(tmp_path, monkeypatch) -> None:
    _scripted_validation(
        monkeypatch,
        [{"dsb_ap": 0.0, "pixel_dice": 0.1}, {"dsb_ap": 0.014, "pixel_dice": 0.2},
         {"dsb_ap": 0.01, "pixel_dice": 0.3}],
    )  # fmt: skip
    out = tmp_path / "weak.safetensors"
    events: list = []
    finished = drain(iter_train([sample_data_dir()], out, TrainParams(**PARAMS), init=BASE),
                     events.append)  # fmt: skip
    assert not finished.kept_base and finished.best_epoch == 1
    warnings = [e.message for e in events if getattr(e, "level", "") == "warning"]
    assert warnings == [
        "the fine-tuned model beat the base on the validation images only at a low score "
        "(DSB AP 0.014 against 0.000): little evidence either way; check it on other images, "
        "or validate on an image where the base model finds some objects"
    ]


A_WIN = [{"dsb_ap": 0.1, "pixel_dice": 0.5}, {"dsb_ap": 0.3, "pixel_dice": 0.6},
         {"dsb_ap": 0.2, "pixel_dice": 0.6}]  # fmt: skip


def _run(tmp_path, monkeypatch, scores: list[dict], objects: int = 20) -> tuple:
    """A scripted fine-tune of two epochs: its TrainingFinished, events and warnings."""
    _scripted_validation(monkeypatch, scores, objects)
    events: list = []
    gen = iter_train([sample_data_dir()], tmp_path / "o.safetensors", TrainParams(**PARAMS),
                     init=BASE)  # fmt: skip
    finished = drain(gen, events.append)
    warnings = [e.message for e in events if getattr(e, "level", "") == "warning"]
    return finished, events, warnings


def test_few_validation_objects_are_warned_before_and_after(tmp_path, monkeypatch) -> None:
    """A validation set of 4 objects (GlaS's train_50 held 4 glands) cannot tell a better
    model from a lucky epoch: the user is told before training and again when an epoch
    replaces the base."""
    finished, events, warnings = _run(tmp_path, monkeypatch, A_WIN, objects=4)
    assert not finished.kept_base and finished.best_epoch == 1
    assert len(warnings) == 2 and warnings[0] == warnings[1]
    assert warnings[0].startswith("the validation image holds only 4 objects: each is about 25 %")
    first_epoch = next(i for i, e in enumerate(events) if type(e).__name__ == "EpochEnd")
    first_warning = next(i for i, e in enumerate(events) if getattr(e, "level", "") == "warning")
    assert first_warning < first_epoch


def test_enough_validation_objects_raise_no_warning(tmp_path, monkeypatch) -> None:
    finished, _, warnings = _run(tmp_path, monkeypatch, A_WIN, objects=20)
    assert not finished.kept_base and warnings == []


LUCKY = [{"dsb_ap": 0.03, "pixel_dice": 0.5}, {"dsb_ap": 0.18, "pixel_dice": 0.3},
         {"dsb_ap": 0.05, "pixel_dice": 0.2}]  # fmt: skip
"""GlaS seed 0's pattern: an epoch wins on the DSB AP of 4 glands while it finds less of
the foreground (pixel Dice down): it was worse than the base on every test metric."""


def test_with_few_objects_a_lower_pixel_dice_keeps_the_base(tmp_path, monkeypatch) -> None:
    finished, _, warnings = _run(tmp_path, monkeypatch, LUCKY, objects=4)
    assert finished.kept_base and finished.best_epoch == 0
    assert_holds_the_base(tmp_path / "o.safetensors")
    assert "keeps the base's pixel Dice" in warnings[0]


def test_with_enough_objects_the_dsb_ap_alone_decides(tmp_path, monkeypatch) -> None:
    finished, _, _ = _run(tmp_path, monkeypatch, LUCKY, objects=20)
    assert not finished.kept_base and finished.best_epoch == 1


def test_the_last_line_says_why_a_lucky_epoch_was_refused(tmp_path, monkeypatch) -> None:
    finished, _, _ = _run(tmp_path, monkeypatch, LUCKY, objects=4)
    assert finished.kept_base_message() == (
        "no epoch beat the base model (DSB AP 0.030): epoch 1 scored a higher DSB AP (0.180) "
        "but found less of the foreground (pixel Dice 0.300 against 0.500), which decides when "
        f"the validation images hold so few objects; {tmp_path / 'o.safetensors'} holds the "
        "base weights unchanged"
    )
