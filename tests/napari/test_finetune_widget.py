"""The Fine-tune dock: a real tiny run, stop and resume, the base-vs-new verdict, throttling."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

pytest.importorskip("napari")
pytest.importorskip("pytestqt")


from napari_cellseg._napari import finetune_widget as fw
from napari_cellseg._napari._finetune_monitor import LOSS_STEPS
from napari_cellseg._napari._finetune_parts import params_from
from napari_cellseg._napari._session import session_for
from napari_cellseg._napari.finetune_widget import FineTuneWidget
from napari_cellseg.events import EpochEnd, StepLoss, TrainingFinished
from napari_cellseg.io.samples import sample_data_dir
from napari_cellseg.models import ModelCard, build_model, save_weights
from napari_cellseg.training.checkpoints import checkpoint_path_for
from tiny_models import TINY_UNET

pytestmark = pytest.mark.gui

RUN_TIMEOUT_MS = 120_000


@pytest.fixture(scope="module")
def base_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import torch

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("base") / "base.safetensors"
    save_weights(build_model("unet", **TINY_UNET), ModelCard.for_model("unet", TINY_UNET), path)
    return path


@pytest.fixture
def training_set(tmp_path: Path) -> Path:
    folder = tmp_path / "set"
    shutil.copytree(sample_data_dir(), folder, ignore=shutil.ignore_patterns("models"))
    return folder


@pytest.fixture
def shown(monkeypatch: pytest.MonkeyPatch) -> dict[str, list[str]]:
    messages: dict[str, list[str]] = {"error": [], "warning": [], "info": []}
    for kind in messages:
        monkeypatch.setattr(fw, f"show_{kind}", messages[kind].append)
    return messages


def make_widget(make_napari_viewer, qtbot, base: Path, folder: Path) -> FineTuneWidget:
    viewer = make_napari_viewer()
    session = session_for(viewer)
    session.weights = base
    session.training_set = folder
    widget = FineTuneWidget(viewer)
    qtbot.addWidget(widget.root_native_widget)
    return widget


def tiny_settings(widget: FineTuneWidget, epochs: int, out: Path) -> None:
    widget.stop_by.value = "epochs"
    widget.epochs.value = epochs
    widget.patch_size.value = 64
    widget.batch_size.value = 2
    widget.samples_per_epoch.value = 4
    widget.val_fraction.value = 0.34
    widget.device.value = "cpu"
    widget.output.value = out


def wait_done(qtbot, widget: FineTuneWidget) -> None:
    qtbot.waitUntil(lambda: not widget.running, timeout=RUN_TIMEOUT_MS)


def table_column(widget: FineTuneWidget, title: str) -> dict[str, str]:
    value = widget.comparison.value
    j = value["columns"].index(title)
    return {key: row[j] for key, row in zip(value["index"], value["data"], strict=True)}


def test_fields_follow_the_session(make_napari_viewer, qtbot, base_weights, training_set) -> None:
    widget = make_widget(make_napari_viewer, qtbot, base_weights, training_set)
    session = session_for(widget._viewer)
    assert widget.training_set.value == training_set
    assert widget.base_weights.value == base_weights
    out = widget.output.value
    assert out.parent == training_set / "models" and out.name.startswith("finetuned-")
    assert out.suffix == ".safetensors"
    other = training_set / "other.safetensors"
    shutil.copy(base_weights, other)
    session.weights = other
    assert widget.base_weights.value == other  # follows until the user picks one
    widget.base_weights.value = base_weights
    session.weights = training_set / "third.safetensors"
    assert widget.base_weights.value == base_weights
    new_set = training_set.parent / "set2"
    new_set.mkdir()
    session.training_set = new_set
    assert widget.training_set.value == new_set
    assert widget.output.value.parent == new_set / "models"
    assert widget.epochs.value == 30 and widget.augment.value is True  # TrainParams defaults
    # the fast recipe by default: 5 minutes, its numbers; classic brings back the old ones
    assert widget.recipe.value == "fast" and widget.stop_by.value == "minutes"
    assert widget.minutes.value == 5.0 and widget.patch_size.value == 128
    assert widget.learning_rate.value == pytest.approx(1e-3)
    params = params_from(widget, "unet")
    assert params.recipe == "fast" and params.adapt_batchnorm and params.minutes == 5.0
    assert widget.invert.value == "auto" and params.invert is None  # the fine-tune chooses
    for choice, invert in (("on", True), ("off", False), ("auto", None)):
        widget.invert.value = choice
        assert params_from(widget, "unet").invert is invert
    widget.recipe.value = "classic"
    assert widget.patch_size.value == 256 and widget.learning_rate.value == pytest.approx(1e-4)
    assert params_from(widget, "unet").recipe == "classic"
    assert not params_from(widget, "unet").adapt_batchnorm
    widget.show()
    assert widget.minutes.visible
    widget.stop_by.value = "epochs"
    assert not widget.minutes.visible and widget.epochs.label == "Epochs"


def test_one_epoch_then_use_new_weights(
    make_napari_viewer, qtbot, base_weights, training_set, tmp_path, shown
) -> None:
    widget = make_widget(make_napari_viewer, qtbot, base_weights, training_set)
    out = tmp_path / "models" / "new.safetensors"
    tiny_settings(widget, 1, out)
    widget.start.clicked.emit()
    assert widget.running and widget.stop.enabled and not widget.start.enabled
    wait_done(qtbot, widget)
    assert shown["error"] == []
    result = widget.result
    assert result is not None and result.epochs_run == 1 and out.is_file()
    assert widget.status.value.startswith("finished (epochs) after 1 epochs")
    assert list(widget.comparison.value["columns"]) == ["base", "new"]
    base_col, new_col = table_column(widget, "base"), table_column(widget, "new")
    assert base_col["dsb_ap"] == f"{result.baseline_metrics['dsb_ap']:.3f}"
    assert new_col["dsb_ap"] == f"{widget.outcome.new_metrics['dsb_ap']:.3f}"
    assert new_col["n_images"] == base_col["n_images"] == "1"  # the same validation image
    assert widget.curves.series[LOSS_STEPS].ys  # the loss curve was drawn
    assert not widget.resume.enabled  # the run ended: nothing to resume
    widget.confirm = lambda message: pytest.fail("asked although the model is not worse")
    widget.use_weights.clicked.emit()
    assert session_for(widget._viewer).weights == out


def test_stop_after_first_epoch_then_resume(
    make_napari_viewer, qtbot, base_weights, training_set, tmp_path, shown
) -> None:
    widget = make_widget(make_napari_viewer, qtbot, base_weights, training_set)
    out = tmp_path / "models" / "stop.safetensors"
    tiny_settings(widget, 3, out)
    widget.start_training()

    def stop_after_epoch_1(event: object) -> None:
        if isinstance(event, EpochEnd) and event.epoch == 1:
            widget.stop_training()

    widget.worker.yielded.connect(stop_after_epoch_1)
    wait_done(qtbot, widget)
    ckpt = checkpoint_path_for(out)
    assert widget.status.value == f"stopped — last checkpoint kept: {ckpt}"
    assert widget.result is None and ckpt.is_file()
    assert widget.resume.enabled and not widget.use_weights.enabled
    widget.resume.clicked.emit()
    wait_done(qtbot, widget)
    assert shown["error"] == []
    result = widget.result
    assert result.epochs_run == 3
    assert [h["epoch"] for h in result.history if h["epoch"] > 0] == [1, 2, 3]
    assert "base" in widget.comparison.value["columns"]  # the baseline survives the resume
    assert max(widget.curves.series[LOSS_STEPS].xs) == pytest.approx(3.0)


def fake_run(weights: Path, base_ap: float, new_ap: float, *, kept_base: bool = False):
    """An ``iter_train`` whose new model scores ``new_ap`` against the base's ``base_ap``.

    ``kept_base``: the run reports that no epoch beat the base (the file holds the base).
    """

    def iter_train(*_args, **_kwargs):
        weights.write_bytes(b"not read in this test")
        base = {"dsb_ap": base_ap, "f1@0.5": 0.9, "n_images": 2}
        new = {"dsb_ap": new_ap, "f1@0.5": 0.5, "n_images": 2}
        yield EpochEnd(0, 1, None, base, False, 0.1)
        yield StepLoss(1, 1, 1, 0.7, 1e-3)
        yield EpochEnd(1, 1, 0.7, new, False, 0.1)
        history = [{"epoch": 0, "train_loss": None, **base}, {"epoch": 1, "train_loss": 0.7, **new}]
        return TrainingFinished(
            str(weights),
            str(checkpoint_path_for(weights)),
            1,
            0,
            {},
            base,
            "epochs",
            history,
            kept_base=kept_base,
        )

    return iter_train


def test_worse_model_warns_and_asks_before_use(
    make_napari_viewer, qtbot, base_weights, training_set, tmp_path, shown, monkeypatch
) -> None:
    out = tmp_path / "worse.safetensors"
    monkeypatch.setattr(fw, "iter_train", fake_run(out, base_ap=0.8, new_ap=0.3))
    widget = make_widget(make_napari_viewer, qtbot, base_weights, training_set)
    widget.output.value = out
    widget.start_training()
    wait_done(qtbot, widget)
    assert widget.outcome.worse
    assert "LOWER than the base model" in widget.verdict.value
    assert len(shown["warning"]) == 1 and "0.300 < 0.800" in shown["warning"][0]
    assert table_column(widget, "base")["dsb_ap"] == "0.800"
    assert table_column(widget, "new")["dsb_ap"] == "0.300"
    assert "the file holds the last epoch (1)" in widget.verdict.value
    session = session_for(widget._viewer)
    asked: list[str] = []
    widget.confirm = lambda message: asked.append(message) or False
    widget.use_new_weights()
    assert len(asked) == 1 and session.weights == base_weights  # declined: nothing changes
    widget.confirm = lambda message: asked.append(message) or True
    widget.use_new_weights()
    assert len(asked) == 2 and session.weights == out


def test_no_epoch_beat_the_base_says_the_file_holds_the_base(
    make_napari_viewer, qtbot, base_weights, training_set, tmp_path, shown, monkeypatch
) -> None:
    out = tmp_path / "kept.safetensors"
    monkeypatch.setattr(fw, "iter_train", fake_run(out, base_ap=0.8, new_ap=0.3, kept_base=True))
    widget = make_widget(make_napari_viewer, qtbot, base_weights, training_set)
    widget.output.value = out
    widget.start_training()
    wait_done(qtbot, widget)
    line = f"no epoch beat the base model (DSB AP 0.800); {out} holds the base weights unchanged"
    assert widget.verdict.value == "N" + line[1:] + "."
    assert widget._status.value.endswith(line)
    assert not widget.outcome.worse and shown["warning"] == []
    assert table_column(widget, "new")["dsb_ap"] == "0.800"  # the file is the base model
    assert "last epoch" not in widget.verdict.value


def test_bad_settings_show_an_error_and_do_not_start(
    make_napari_viewer, qtbot, base_weights, training_set, shown
) -> None:
    widget = make_widget(make_napari_viewer, qtbot, base_weights, training_set)
    widget.output.value = base_weights
    widget.start_training()
    assert not widget.running
    assert shown["error"] == ["the output file is the base weight file: choose another name"]
    widget.output.value = training_set / "x.safetensors"
    widget.samples_per_epoch.value = 1  # fewer crops than the batch size
    widget.start_training()
    assert not widget.running and "batch size" in shown["error"][-1]


def test_a_flood_of_steps_is_drawn_a_few_times_a_second(
    make_napari_viewer, qtbot, base_weights, training_set
) -> None:
    widget = make_widget(make_napari_viewer, qtbot, base_weights, training_set)
    widget.show()
    widget.monitor.begin(2)
    for step in range(1, 2001):
        widget.monitor.add(StepLoss(1, step, 2000, 1.0 / step, 1e-3))
    assert widget.monitor.updates == 0  # recording only
    qtbot.wait(600)
    widget.monitor.end()
    assert 1 <= widget.monitor.updates <= 5
    assert widget.curves.repaints <= 5
    assert widget.progress.value == 2000 and widget.progress.max == 4000
    assert len(widget.curves.series[LOSS_STEPS].xs) == 2000


def test_closing_the_viewer_stops_training_and_keeps_the_checkpoint(
    make_napari_viewer, qtbot, base_weights, training_set, tmp_path
) -> None:
    """napari's task status lists the run and cancels it on close: no orphan worker."""
    widget = make_widget(make_napari_viewer, qtbot, base_weights, training_set)
    out = tmp_path / "models" / "closed.safetensors"
    tiny_settings(widget, 1000, out)
    widget.start_training()
    worker = widget.worker
    epochs: list[int] = []
    worker.yielded.connect(lambda e: epochs.append(e.epoch) if isinstance(e, EpochEnd) else None)
    manager = widget._viewer.window._task_status_manager
    assert any("fine-tuning" in line for line in manager.get_status())
    qtbot.waitUntil(lambda: len(epochs) >= 2, timeout=RUN_TIMEOUT_MS)
    with qtbot.waitSignal(worker.finished, timeout=RUN_TIMEOUT_MS):
        widget._viewer.close()
    assert not worker.is_running and max(epochs) < 1000
    assert checkpoint_path_for(out).is_file()
    assert not manager.is_busy()
