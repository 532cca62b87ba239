"""The fast-adaptation recipe: its values, AdaBN, per-part learning rates and warm-up."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_cellseg.errors import CellsegError
from napari_cellseg.events import Notice, drain
from napari_cellseg.io.samples import sample_data_dir
from napari_cellseg.models import build_model, read_card
from napari_cellseg.params import TrainParams, fine_tune_learning_rate
from napari_cellseg.training.adaptation import adapt_batchnorm, tiles_for_statistics
from napari_cellseg.training.loop import iter_train
from napari_cellseg.training.recipes import FAST_RECIPE, recipe_params
from napari_cellseg.training.steps import make_optimizer, make_scheduler, parameter_groups

BASE = sample_data_dir() / "models" / "unet_dsb.safetensors"
MASKRCNN = sample_data_dir() / "models" / "maskrcnn_dsb.safetensors"
TINY_UNET = {"encoder_name": "resnet18", "encoder_depth": 3, "decoder_channels": [16, 8, 8]}


def test_fast_recipe_values_and_overrides() -> None:
    fast = recipe_params("fast", "unet")
    assert fast.recipe == "fast" and fast.adapt_batchnorm and fast.freeze_batchnorm
    assert fast.patch_size == 128 and fast.encoder_lr_factor == 0.3 and fast.warmup_steps > 0
    assert fast.learning_rate == FAST_RECIPE["unet"]["learning_rate"]
    # None means "the recipe's value"; anything else wins
    mine = recipe_params("fast", "unet", patch_size=None, learning_rate=2e-4, minutes=5.0)
    assert mine.patch_size == 128 and mine.learning_rate == 2e-4 and mine.minutes == 5.0
    classic = recipe_params("classic", "unet")
    assert classic.learning_rate == fine_tune_learning_rate("unet")
    assert not classic.adapt_batchnorm and classic.encoder_lr_factor == 1.0
    assert recipe_params("fast", "maskrcnn").optimizer is None  # the family's SGD


def test_unknown_recipe_and_parameter_are_refused() -> None:
    with pytest.raises(CellsegError, match="unknown training recipe 'quick'; use fast or classic"):
        recipe_params("quick", "unet")
    with pytest.raises(CellsegError, match="unknown training parameters: speed"):
        recipe_params("fast", "unet", speed=2)


def test_tiles_cover_the_rescaled_image() -> None:
    image = np.arange(2 * 50 * 70, dtype=np.float32).reshape(2, 50, 70)
    tiles = tiles_for_statistics(image, 1.0, 32, 100)
    assert tiles.shape == (6, 2, 32, 32)  # 2 x 3 grid over the reflected 64 x 96
    assert np.array_equal(tiles[0], image[:, :32, :32])
    assert tiles_for_statistics(image, 0.5, 32, 100).shape == (2, 2, 32, 32)  # 25 x 35
    assert len(tiles_for_statistics(image, 4.0, 32, 5)) == 5  # spread, at most the limit


@pytest.mark.parametrize("family", ["unet", "maskrcnn"])
def test_adabn_replaces_the_statistics_with_the_new_images(family) -> None:
    torch.manual_seed(0)
    args = TINY_UNET if family == "unet" else read_card(MASKRCNN).builder_args  # BatchNorm
    model = build_model(family, **args)
    layer = next(m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d))
    layer.running_mean.fill_(123.0)
    model.train()
    rng = np.random.default_rng(0)
    images = [rng.normal(5.0, 2.0, (3, 96, 80)).astype(np.float32) for _ in range(2)]
    n = adapt_batchnorm(model, family, images, [1.0, 0.5], tile=64)
    assert n == sum(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())
    assert model.training and layer.momentum == 0.1  # mode and momentum restored
    assert float(layer.running_mean.abs().max()) < 50  # the 123s are gone
    if family == "unet":  # the first BatchNorm sees conv1 of the images: matches its mean
        first = model.encoder.bn1
        with torch.no_grad():
            tiles = torch.cat(
                [
                    torch.from_numpy(tiles_for_statistics(i, f, 64, 8))
                    for i, f in zip(images, [1.0, 0.5], strict=True)
                ]
            )
            expected = model.encoder.conv1(tiles).mean((0, 2, 3))
        assert torch.allclose(first.running_mean, expected, atol=0.05 * float(expected.abs().max()))


def test_the_encoder_gets_its_own_learning_rate_and_warm_up() -> None:
    model = build_model("unet", **TINY_UNET)
    params = TrainParams(learning_rate=1e-3, encoder_lr_factor=0.25, warmup_steps=4, epochs=2,
                         recipe="fast")  # fmt: skip
    groups = parameter_groups(model, params)
    encoder = {id(p) for n, p in model.named_parameters() if n.startswith("encoder.")}
    assert {id(p) for p in groups[1]["params"]} == encoder
    assert groups[0]["lr"] == 1e-3 and groups[1]["lr"] == 2.5e-4
    optimizer = make_optimizer(model, params)
    scheduler = make_scheduler(optimizer, params, steps_per_epoch=10)
    lrs = []
    for _ in range(20):
        lrs.append([g["lr"] for g in optimizer.param_groups])
        optimizer.step()
        scheduler.step()
    assert lrs[0][0] == pytest.approx(1e-3 / 5) and lrs[4][0] == pytest.approx(1e-3)
    assert all(abs(a / b - 4.0) < 1e-9 for a, b in lrs)  # the ratio holds all along
    assert lrs[-1][0] < 0.05 * 1e-3  # decayed towards 0 by the last step
    one = parameter_groups(model, TrainParams(learning_rate=1e-3))
    assert len(one) == 1


def test_fast_fine_tune_runs_adabn_and_keeps_the_base_file_until_beaten(tmp_path) -> None:
    out = tmp_path / "fast.safetensors"
    params = recipe_params(
        "fast", "unet", epochs=1, samples_per_epoch=2, batch_size=2, patch_size=64,
        val_fraction=0.34, device="cpu",
    )  # fmt: skip
    events: list = []
    finished = drain(iter_train([sample_data_dir()], out, params, init=BASE), events.append)
    notices = [e.message for e in events if isinstance(e, Notice)]
    assert any("AdaBN" in n for n in notices), notices
    assert out.exists() and finished.baseline_metrics
    assert finished.history[0]["epoch"] == 0  # the base was scored before AdaBN touched it


@pytest.mark.parametrize(
    ("extra", "expected"),
    [([], "cosine"), (["--schedule", "constant"], "constant"), (["--recipe", "classic"], None)],
)
def test_cli_schedule_reaches_the_training(extra, expected, tmp_path, monkeypatch) -> None:
    from napari_cellseg.cli import main
    from napari_cellseg.training import loop

    class Seen(Exception):
        pass

    seen = {}

    def fake_iter_train(data, out, params, **kwargs):
        seen["schedule"] = params.schedule
        raise Seen
        yield  # a generator, as iter_train is

    monkeypatch.setattr(loop, "iter_train", fake_iter_train)
    args = ["train", "--data", str(sample_data_dir()), "--init", str(BASE)]
    with pytest.raises(Seen):
        main([*args, "--out", str(tmp_path / "o.safetensors"), *extra])
    assert seen["schedule"] == expected
