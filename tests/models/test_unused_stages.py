"""Encoder stages a shallow U-Net never runs are not kept, yet its state dict stays smp's."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import segmentation_models_pytorch as smp
import torch
from safetensors.torch import load_file

from napari_cellseg.models import build_model, load_weights, save_weights
from napari_cellseg.models.unused_stages import DROPPED_ATTR

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "sample_data" / "models" / "unet_dsb.safetensors"


def _as_float(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.float() if v.is_floating_point() else v for k, v in state.items()}


def _full_smp(builder_args: dict) -> torch.nn.Module:
    """The plain smp U-Net, every stage kept (as smp builds it)."""
    return smp.Unet(encoder_weights=None, **builder_args).eval()


def test_the_demo_unet_drops_its_unused_stage_and_gives_the_same_outputs() -> None:
    loaded = load_weights(DEMO)
    file_state = load_file(str(DEMO))
    full = _full_smp(loaded.card.builder_args)
    full.load_state_dict(_as_float(file_state), strict=True)
    kept = sum(p.numel() for p in loaded.model.parameters())
    whole = sum(p.numel() for p in full.parameters())
    assert isinstance(loaded.model.encoder.layer4, torch.nn.Identity)
    assert whole - kept == sum(p.numel() for p in full.encoder.layer4.parameters())
    assert kept < 0.35 * whole  # the demo U-Net ran 3.6 M of its 12.0 M parameters
    assert set(loaded.model.state_dict()) == set(file_state)
    x = torch.rand(2, 3, 96, 128, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(loaded.model(x), full(x))


def test_a_saved_model_loads_into_plain_smp_strictly_and_back(tmp_path: Path) -> None:
    loaded = load_weights(DEMO)
    path = save_weights(loaded.model, loaded.card, tmp_path / "again.safetensors", half=True)
    saved = load_file(str(path))
    assert set(saved) == set(load_file(str(DEMO)))
    assert saved["encoder.layer4.0.conv1.weight"].dtype == torch.float16
    assert not saved["encoder.layer4.1.bn2.running_var"].any()  # zeros: never run
    plain = _full_smp(loaded.card.builder_args)
    plain.load_state_dict(_as_float(saved), strict=True)  # bioimage.io / smp users
    again = load_weights(path)
    again.model.load_state_dict(loaded.model.state_dict(), strict=True)
    x = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert torch.equal(again.model(x), loaded.model(x))
        assert torch.equal(plain(x), loaded.model(x))


def test_state_dict_zeros_follow_the_model_dtype() -> None:
    model = build_model(
        "unet",
        encoder_name="resnet18",
        in_channels=1,
        classes=3,
        encoder_depth=3,
        decoder_channels=[32, 16, 8],
    )
    assert set(getattr(model.encoder, DROPPED_ATTR)) >= {"layer3.0.conv1.weight"}
    model = model.to(torch.bfloat16)
    state = model.state_dict()
    assert state["encoder.layer3.0.conv1.weight"].dtype == torch.bfloat16
    assert state["encoder.layer4.0.bn1.num_batches_tracked"].dtype == torch.int64
    assert tuple(state["encoder.layer4.0.conv1.weight"].shape) == (512, 256, 3, 3)


@pytest.mark.parametrize(("encoder", "depth"), [("resnet18", 5), ("mobilenet_v2", 3)])
def test_full_depth_and_other_encoders_are_left_whole(encoder: str, depth: int) -> None:
    decoder = [16 * 2**i for i in range(depth)][::-1]
    model = build_model(
        "unet",
        encoder_name=encoder,
        in_channels=3,
        classes=3,
        encoder_depth=depth,
        decoder_channels=decoder,
    )
    full = _full_smp(
        dict(
            encoder_name=encoder,
            in_channels=3,
            classes=3,
            encoder_depth=depth,
            decoder_channels=decoder,
        )
    )
    assert not hasattr(model.encoder, DROPPED_ATTR)
    assert sum(p.numel() for p in model.parameters()) == sum(p.numel() for p in full.parameters())


def test_the_benchmark_baseline_loads_every_stage_as_before() -> None:
    sys.path.insert(0, str(ROOT / "bench"))
    from _baseline import baseline_loading

    with baseline_loading():
        old = load_weights(DEMO)
    new = load_weights(DEMO)
    assert not isinstance(old.model.encoder.layer4, torch.nn.Identity)
    assert isinstance(new.model.encoder.layer4, torch.nn.Identity)
    x = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        assert torch.equal(old.model(x), new.model(x))


def test_a_fine_tune_that_changes_the_architecture_copies_no_placeholder() -> None:
    from napari_cellseg.params import TrainParams
    from napari_cellseg.training.start import starting_model

    deeper = {"encoder_depth": 5, "decoder_channels": [256, 128, 64, 32, 16]}
    params = TrainParams(family="unet", builder_args=deeper)
    model, card, notices = starting_model(params, None, None, DEMO, None)
    assert card.builder_args["encoder_depth"] == 5
    layer4 = model.encoder.layer4[0].conv1.weight  # run now: its own initialisation, not zeros
    assert layer4.abs().sum() > 0
    demo = load_weights(DEMO).model
    assert torch.equal(model.encoder.layer1[0].conv1.weight, demo.encoder.layer1[0].conv1.weight)
    two = TrainParams(family="unet", builder_args={"classes": 2})
    _, _, notices = starting_model(two, None, None, DEMO, None)
    (notice,) = [n for n in notices if "re-initialised" in n]
    assert "re-initialised 2 tensors" in notice  # the head's weight and bias, no placeholder


def test_the_resnet_style_names_are_smps_resnet_encoders() -> None:
    import segmentation_models_pytorch as smp
    from segmentation_models_pytorch.encoders.resnet import ResNetEncoder

    from napari_cellseg.models.unused_stages import RESNET_STYLE_ENCODERS

    registry = smp.encoders.encoders
    assert {n for n, e in registry.items() if issubclass(e["encoder"], ResNetEncoder)} == set(
        RESNET_STYLE_ENCODERS
    )
