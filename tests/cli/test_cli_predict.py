"""cellseg predict on real sample images with tiny random models."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from napari_cellseg.cli import main
from napari_cellseg.io.images import read_labels
from napari_cellseg.io.samples import get_sample
from napari_cellseg.models import ModelCard, build_model, save_weights
from tiny_models import TINY_UNET


@pytest.fixture(scope="module")
def weight_files(tmp_path_factory) -> dict[str, object]:
    import torch

    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("weights")
    unet_args = TINY_UNET
    mrcnn_args = {
        "backbone": "resnet18",
        "min_size": 128,
        "max_size": 128,
        "detections_per_img": 20,
    }
    return {
        "unet": save_weights(
            build_model("unet", **unet_args),
            ModelCard.for_model("unet", unet_args),
            folder / "u.safetensors",
        ),
        "maskrcnn": save_weights(
            build_model("maskrcnn", **mrcnn_args),
            ModelCard.for_model("maskrcnn", mrcnn_args),
            folder / "m.safetensors",
            half=True,
        ),
    }


@pytest.mark.parametrize("family", ["unet", "maskrcnn"])
def test_predict_writes_labels_and_prints_one_line_per_image(
    tmp_path, capsys, weight_files, family
) -> None:
    images = []
    for key in ("dsb_fluorescence", "dsb_he"):
        src = get_sample(key).image_path
        dst = tmp_path / f"{key} copy.png"  # a name with a space
        shutil.copy(src, dst)
        images.append(dst)
    out = tmp_path / "out"
    rc = main(
        [
            "predict",
            *map(str, images),
            "--weights",
            str(weight_files[family]),
            "--out",
            str(out),
            "--tile",
            "128",
            "--overlap",
            "16",
            "--threshold",
            "0.0",
        ]
    )
    assert rc == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 2
    for image, line in zip(images, lines, strict=True):
        labels = read_labels(out / f"{image.stem}_labels.tif")
        assert labels.dtype == np.uint16
        assert labels.shape == ((256, 256) if "fluor" in image.name else (256, 320))
        assert line.startswith(str(image)) and " objects, " in line and line.endswith(".tif")


def test_predict_reports_a_bad_image_and_continues(tmp_path, capsys, weight_files) -> None:
    bad = tmp_path / "broken.tif"
    bad.write_text("not an image")
    good = get_sample("dsb_fluorescence").image_path
    rc = main(
        [
            "predict",
            str(bad),
            str(good),
            "--weights",
            str(weight_files["unet"]),
            "--out",
            str(tmp_path / "o"),
            "--tile",
            "256",
        ]
    )
    captured = capsys.readouterr()
    assert rc == 1
    assert "broken.tif: FAILED:" in captured.err
    assert (tmp_path / "o" / "dsb_fluorescence_labels.tif").exists()
    assert not (tmp_path / "o" / "broken_labels.tif").exists()


def test_predict_with_bad_weights_is_one_line(tmp_path, capsys) -> None:
    weights = tmp_path / "w.pth"
    weights.write_text("nope")
    rc = main(
        [
            "predict",
            str(get_sample("dsb_he").image_path),
            "--weights",
            str(weights),
            "--out",
            str(tmp_path / "o"),
        ]
    )
    assert rc == 2
    assert "not a weight file" in capsys.readouterr().err


def test_predict_segments_a_large_plane_in_blocks(tmp_path, capsys, weight_files, monkeypatch):
    from napari_cellseg.inference import api
    from napari_cellseg.inference import blocks as predict_blocks
    from napari_cellseg.params import BlockOptions

    small = BlockOptions(block_size=128, halo=32, block_pixels=100 * 100)  # 256² is large
    monkeypatch.setattr(api, "DEFAULT_BLOCKS", small)
    calls = []
    real = predict_blocks.iter_predict_large

    def spy(*args, **kwargs):
        calls.append(kwargs["blocks"])
        return real(*args, **kwargs)

    monkeypatch.setattr(predict_blocks, "iter_predict_large", spy)
    image = get_sample("dsb_fluorescence").image_path
    args = ["predict", str(image), "--weights", str(weight_files["unet"]), "--out"]
    assert main([*args, str(tmp_path), "--tile", "64", "--overlap", "8"]) == 0
    assert calls == [small]
    labels = read_labels(tmp_path / f"{image.stem}_labels.tif")
    line = capsys.readouterr().out.strip()
    assert labels.shape == (256, 256)
    assert line.endswith(".tif") and f"{len(np.unique(labels)) - 1} objects" in line


def test_predict_with_test_time_augmentation(tmp_path, capsys, weight_files, monkeypatch) -> None:
    from napari_cellseg.inference import model_runner as runner

    seen: list[int] = []
    real = runner.ModelRunner.unet_copy

    def spy(self, batch, index):
        seen.append(index)
        return real(self, batch, index)

    monkeypatch.setattr(runner.ModelRunner, "unet_copy", spy)
    image = get_sample("dsb_fluorescence").image_path
    args = ["predict", str(image), "--weights", str(weight_files["unet"]), "--out"]
    args += [str(tmp_path / "out"), "--tile", "128", "--overlap", "16", "--tta", "4"]
    assert main(args) == 0
    assert seen and set(seen) == {0, 1, 2, 3}  # every copy of every batch
    assert (tmp_path / "out" / f"{image.stem}_labels.tif").is_file()
    with pytest.raises(SystemExit):  # argparse: 3 is not one of 1, 2, 4, 8
        main([*args[:-1], "3"])
    assert "invalid choice: 3" in capsys.readouterr().err


def test_predict_runs_every_copy_of_a_mask_rcnn_and_fuses_them(
    tmp_path, capsys, weight_files, monkeypatch
) -> None:
    from napari_cellseg.inference import maskrcnn_strategy as inference
    from napari_cellseg.inference import model_runner as runner

    seen: list[int] = []
    fused: list[int] = []
    real_copy, real_fuse = runner.ModelRunner.maskrcnn_copy, inference.fuse_copies

    def spy_copy(self, batch, index):
        seen.append(index)
        return real_copy(self, batch, index)

    def spy_fuse(copies, **kwargs):
        fused.append(len(copies))
        return real_fuse(copies, **kwargs)

    monkeypatch.setattr(runner.ModelRunner, "maskrcnn_copy", spy_copy)
    monkeypatch.setattr(inference, "fuse_copies", spy_fuse)
    image = get_sample("dsb_fluorescence").image_path
    args = ["predict", str(image), "--weights", str(weight_files["maskrcnn"])]
    assert main([*args, "--out", str(tmp_path / "out"), "--tile", "128", "--tta", "2"]) == 0
    assert seen and set(seen) == {0, 1} and seen.count(0) == seen.count(1)
    assert fused and set(fused) == {2}  # every tile: its two copies fused
    assert "ignored" not in capsys.readouterr().err
    assert (tmp_path / "out" / f"{image.stem}_labels.tif").is_file()


def test_predict_writes_a_tzyx_stack_with_its_axes(tmp_path, capsys, weight_files) -> None:
    import tifffile

    from napari_cellseg.io.images import read_image

    plane = np.asarray(read_image(get_sample("dsb_fluorescence").image_path).data)[..., 0]
    stack = np.stack([np.stack([plane[:128, :128]] * 3)] * 2)  # T=2, Z=3
    path = tmp_path / "tz.tif"
    tifffile.imwrite(path, stack, imagej=True, metadata={"axes": "TZYX"})
    out = tmp_path / "out"
    rc = main(["predict", str(path), "--weights", str(weight_files["unet"]), "--out", str(out)])
    assert rc == 0, capsys.readouterr().err
    with tifffile.TiffFile(out / "tz_labels.tif") as tif:
        assert tif.series[0].axes == "TZYX"
        assert tif.series[0].shape == (2, 3, 128, 128)


def test_predict_names_inputs_that_differ_only_in_suffix_apart(
    tmp_path, capsys, weight_files
) -> None:
    src = get_sample("dsb_fluorescence").image_path
    png, tif = tmp_path / "a.png", tmp_path / "a.tif"
    shutil.copy(src, png)
    tifffile = pytest.importorskip("tifffile")
    from napari_cellseg.io.images import read_image

    tifffile.imwrite(tif, np.asarray(read_image(src).data)[..., :3])
    out = tmp_path / "out"
    args = ["--weights", str(weight_files["unet"]), "--out", str(out)]
    rc = main(["predict", str(png), str(tif), str(png), *args])  # png twice: segmented once
    assert rc == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 2
    assert sorted(p.name for p in out.iterdir()) == ["a_png_labels.tif", "a_tif_labels.tif"]
    other = tmp_path / "other"
    other.mkdir()
    shutil.copy(src, other / "a.png")
    rc = main(["predict", str(png), str(other / "a.png"), *args])
    assert rc == 2
    assert "would both be written to" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--channels", "a,b"], "--channels takes channel numbers separated by commas"),
        (["--out", "FILE"], "is a file; choose a folder"),
        (["--out", "FILE/sub"], "check the path"),
    ],
)
def test_predict_bad_options_are_one_line(tmp_path, capsys, weight_files, extra, message):
    (tmp_path / "FILE").write_text("x")
    extra = [e.replace("FILE", str(tmp_path / "FILE")) for e in extra]
    args = ["predict", str(get_sample("dsb_fluorescence").image_path)]
    args += ["--weights", str(weight_files["unet"]), "--out", str(tmp_path / "o"), *extra]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("cellseg: error:") and message in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_predict_logs_progress_lines_without_a_terminal(
    tmp_path, capsys, weight_files, monkeypatch
) -> None:
    from napari_cellseg.cli import predict as cli_predict

    monkeypatch.setattr(cli_predict, "LOG_PROGRESS_EVERY_S", 0.0)
    image = get_sample("dsb_fluorescence").image_path
    args = ["predict", str(image), "--weights", str(weight_files["unet"]), "--tile", "128"]
    assert main([*args, "--overlap", "16", "--out", str(tmp_path / "o")]) == 0
    err = capsys.readouterr().err.splitlines()
    progress = [line for line in err if line.startswith("dsb_fluorescence.png: ")]
    assert progress and progress[-1] == "dsb_fluorescence.png: 100%"
    assert not any("\r" in line for line in err)


def test_axes_refer_to_the_files_own_order(tmp_path, capsys, weight_files) -> None:
    """A 3 x Y x X TIFF reads as planar RGB; --axes ZYX / CYX name its stored dimensions."""
    import tifffile

    from napari_cellseg.io.images import apply_axes, read_image

    plane = np.asarray(read_image(get_sample("dsb_fluorescence").image_path).data)[..., 0]
    path = tmp_path / "three.tif"
    stack = np.stack([plane[:96, :128]] * 3)
    tifffile.imwrite(path, stack, photometric="rgb", planarconfig="separate")  # as before 2026
    image = read_image(path)
    assert image.axes == "YXS" and image.data.shape == (96, 128, 3)  # as read: samples last
    assert apply_axes(image, "ZYX").data.shape == (3, 96, 128)
    args = ["--weights", str(weight_files["unet"]), "--out", str(tmp_path / "o")]
    assert main(["predict", str(path), "--axes", "ZYX", *args]) == 0, capsys.readouterr().err
    assert read_labels(tmp_path / "o" / "three_labels.tif").shape == (3, 96, 128)
    assert main(["predict", str(path), "--axes", "CYX", "--channels", "0,1,2", *args]) == 0
    assert read_labels(tmp_path / "o" / "three_labels.tif").shape == (96, 128)


def test_one_channel_of_a_two_channel_image_is_read_as_grey(tmp_path, capsys, weight_files):
    """--channels 1 on a nuclei + membranes TIFF for an RGB model: channel 1 repeated into the
    three inputs (as --channels 1,1,1, and as the dock's signal channel without helper)."""
    import tifffile

    from napari_cellseg.io.images import read_image

    plane = np.asarray(read_image(get_sample("dsb_fluorescence").image_path).data)[..., 0]
    path = tmp_path / "two.tif"
    tifffile.imwrite(path, np.stack([plane[::-1, ::-1], plane]), metadata={"axes": "CYX"})
    args = ["--weights", str(weight_files["unet"]), "--diameter", "off"]
    assert main(["predict", str(path), *args, "--out", str(tmp_path / "a")]) == 1
    err = capsys.readouterr().err
    assert "choose the channel that shows the objects, e.g. --channels 0" in err
    for out, channels in (("b", "1"), ("c", "1,1,1")):
        assert (
            main(
                ["predict", str(path), *args, "--channels", channels, "--out", str(tmp_path / out)]
            )
            == 0
        )
    one = read_labels(tmp_path / "b" / "two_labels.tif")
    assert one.max() > 0
    np.testing.assert_array_equal(one, read_labels(tmp_path / "c" / "two_labels.tif"))
