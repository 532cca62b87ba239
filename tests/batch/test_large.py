"""Large images in a batch: block by block into an on-disk array, tiled label TIFFs."""

from __future__ import annotations

import csv
import json

import numpy as np
import tifffile
from batch_helpers import PARAMS, disk_image, tmp_files, write_png, write_tif

from event_helpers import collect
from napari_cellseg.batch import run_batch
from napari_cellseg.batch.large import labels_readable, write_labels_tiled
from napari_cellseg.io.images import read_image, read_labels
from napari_cellseg.params import BlockOptions

BLOCKS = {"block_pixels": 100 * 100, "block_size": 96, "halo": 32}
SMALL = BlockOptions(**BLOCKS)


def _mosaic(seed: int, n: int = 2) -> np.ndarray:
    return np.block([[disk_image(seed + 3 * i + j) for j in range(n)] for i in range(n)])


def _rows(path) -> list[dict[str, str]]:
    with open(path) as fh:
        return list(csv.DictReader(fh))


def test_large_planes_go_block_by_block_with_consistent_outputs(tmp_path, weights) -> None:
    write_tif(tmp_path / "in" / "big.tif", _mosaic(0), resolution=(2e4, 2e4), resolutionunit=3)
    write_png(tmp_path / "in" / "small.png", disk_image(9))  # 96 x 96: the usual path
    write_tif(tmp_path / "in" / "stack.tif", np.stack([_mosaic(1), _mosaic(2)]))
    out = tmp_path / "out"
    from napari_cellseg.batch import iter_batch

    summary, events = collect(
        iter_batch(tmp_path / "in", out, weights, PARAMS, measure=True, blocks=SMALL)
    )
    assert (summary.done, summary.failed) == (3, 0), summary.errors
    assert any(getattr(e, "stage", "") == "blocks" for e in events)
    manifest = json.loads((out / "batch_manifest.json").read_text())
    assert manifest["large_images"] == BLOCKS
    for stem, shape in (("big", (192, 192)), ("stack", (2, 192, 192)), ("small", (96, 96))):
        labels = read_labels(out / f"{stem}_labels.tif")
        entry = manifest["files"][f"{stem}.{'png' if stem == 'small' else 'tif'}"]
        assert labels.shape == shape and labels.dtype == np.uint16
        planes = labels.reshape((-1, *labels.shape[-2:]))
        ids = [sorted(set(np.unique(p).tolist()) - {0}) for p in planes]  # per plane
        assert entry["objects"] == sum(map(len, ids)) > 0
        rows = _rows(out / f"{stem}_measurements.csv")
        for z, plane_ids in enumerate(ids):
            mine = [int(r["label"]) for r in rows if r.get("z", "0") == str(z)]
            assert sorted(mine) == plane_ids
    with tifffile.TiffFile(out / "big_labels.tif") as tif:
        assert tif.pages[0].is_tiled  # written tile by tile
    assert read_image(out / "big_labels.tif").pixel_size_um == (0.5, 0.5)
    big = read_labels(out / "big_labels.tif")
    image = _mosaic(0)
    for row in _rows(out / "big_measurements.csv")[::5]:
        ys, xs = np.nonzero(big == int(row["label"]))
        assert float(row["area"]) == len(ys)
        assert float(row["area_um2"]) == len(ys) * 0.25
        assert abs(float(row["centroid_x"]) - xs.mean()) < 1e-6
        assert float(row["max_intensity_c0"]) == image[ys, xs].max()
    assert {r["z"] for r in _rows(out / "stack_measurements.csv")} == {"0", "1"}
    assert not tmp_files(out)  # no scratch folder or temporary file left
    again = run_batch(tmp_path / "in", out, weights, PARAMS, measure=True, blocks=SMALL)
    assert (again.skipped, again.done) == (3, 0)  # tiled outputs verify on resume


def test_a_killed_runs_scratch_folder_is_removed_and_the_file_redone(tmp_path, weights) -> None:
    write_tif(tmp_path / "in" / "big.tif", _mosaic(4))
    out = tmp_path / "out"
    first = run_batch(tmp_path / "in", out, weights, PARAMS, blocks=SMALL)
    assert first.done == 1
    (out / "big_labels.tif").unlink()  # as if killed before the labels were written
    stale = out / ".big_labels.tif.0a1b2c3d.tmp" / "labels.zarr"
    stale.mkdir(parents=True)
    (stale / "zarr.json").write_text("{}")
    again = run_batch(tmp_path / "in", out, weights, PARAMS, blocks=SMALL)
    assert again.done == 1 and not tmp_files(out)
    assert not (out / ".big_labels.tif.0a1b2c3d.tmp").exists()


def test_bad_block_settings_are_refused_before_any_work(tmp_path, weights) -> None:
    import pytest

    from napari_cellseg.errors import CellsegError

    write_png(tmp_path / "in" / "a.png", disk_image(1))
    for bad in ({"block_size": 8}, {"halo": -1}, {"block_size": 128, "halo": 500}):
        with pytest.raises(CellsegError, match="block size .* halo"):
            run_batch(
                tmp_path / "in", tmp_path / "out", weights, PARAMS, blocks=BlockOptions(**bad)
            )
    assert not (tmp_path / "out").exists()


def test_tiled_writer_round_trips_and_the_checker_catches_damage(tmp_path) -> None:
    labels = np.random.default_rng(0).integers(0, 70000, (3, 700, 600)).astype(np.uint32)
    path = write_labels_tiled(tmp_path / "l.tif", labels, 70000, "ZYX")
    np.testing.assert_array_equal(read_labels(path), labels)  # uint32 when needed
    assert labels_readable(path, [3, 700, 600])
    assert not labels_readable(path, [3, 700, 601])
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    assert not labels_readable(path, [3, 700, 600])


def test_a_large_compressed_tiff_is_read_lazily_with_the_same_result(tmp_path, weights) -> None:
    from napari_cellseg.batch import read_input

    image = _mosaic(6)
    write_tif(tmp_path / "in" / "slide.tif", image, tile=(64, 64), compression="zlib")
    lazy = read_input(tmp_path / "in" / "slide.tif", memmap_pixels=100)
    assert not isinstance(lazy.data, np.ndarray) and lazy.data.shape == image.shape
    np.testing.assert_array_equal(lazy.data[50:70, 10:200], image[50:70, 10:200])
    kwargs = {"blocks": SMALL, "measure": True}
    loaded = run_batch(tmp_path / "in", tmp_path / "o1", weights, PARAMS, **kwargs)
    streamed = run_batch(
        tmp_path / "in", tmp_path / "o2", weights, PARAMS, memmap_pixels=100, **kwargs
    )
    assert loaded.done == streamed.done == 1 and loaded.objects == streamed.objects > 0
    a, b = (read_labels(tmp_path / o / "slide_labels.tif") for o in ("o1", "o2"))
    np.testing.assert_array_equal(a, b)
    assert (tmp_path / "o1" / "slide_measurements.csv").read_text() == (
        tmp_path / "o2" / "slide_measurements.csv"
    ).read_text()


def test_a_damaged_lazily_read_tiff_fails_alone_with_a_clear_reason(tmp_path, weights) -> None:
    path = write_tif(tmp_path / "in" / "cut.tif", _mosaic(7), tile=(64, 64), compression="zlib")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    write_png(tmp_path / "in" / "fine.png", disk_image(3))
    out = tmp_path / "out"
    summary = run_batch(tmp_path / "in", out, weights, PARAMS, memmap_pixels=100, blocks=SMALL)
    assert (summary.done, summary.failed) == (1, 1)
    ((file, reason),) = summary.errors
    assert file.endswith("cut.tif") and "truncated or damaged" in reason
    assert not (out / "cut_labels.tif").exists() and not tmp_files(out)
