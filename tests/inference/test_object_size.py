"""Object diameter at inference: parsing, rescaling round trip, auto estimate, reapply, blocks."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from skimage.draw import disk

from event_helpers import collect
from known_output_model import known_model
from napari_cellseg.errors import CellsegError
from napari_cellseg.events import Notice
from napari_cellseg.inference import iter_predict, predict, reapply
from napari_cellseg.inference.object_size import to_image_grid
from napari_cellseg.inference.object_table import object_table
from napari_cellseg.inference.planes import predict_planes
from napari_cellseg.models import load_weights
from napari_cellseg.models.card import DIAMETER_RANGE as CARD_RANGE
from napari_cellseg.params import DIAMETER_RANGE, BlockOptions, PredictParams, parse_diameter
from tiny_models import save_tiny

CPU = PredictParams(device="cpu", tile_size=256, overlap=32)


def discs(diameter: float, n: int = 3, gap: float = 2.0) -> np.ndarray:
    """A grey uint8 image of ``n`` x ``n`` bright discs of ``diameter`` px, well apart."""
    step = int(diameter * gap) + 4
    size = step * (n + 1)
    image = np.zeros((size, size), np.uint8)
    for i in range(1, n + 1):
        for j in range(1, n + 1):
            rr, cc = disk((i * step, j * step), diameter / 2, shape=image.shape)
            image[rr, cc] = 200
    return image


def model_with(diameter: float | None):
    model = known_model()
    model.card.object_diameter = diameter
    return model


def assert_table_matches_labels(prediction) -> None:
    fresh = object_table(prediction.labels)
    for key in ("label", "area", "bbox_y0", "bbox_x0", "bbox_y1", "bbox_x1"):
        np.testing.assert_array_equal(prediction.table[key], fresh[key])
    assert prediction.table["label"].tolist() == list(range(1, prediction.n_objects + 1))


# -- parameters ---------------------------------------------------------------------------
def test_the_range_is_the_cards() -> None:
    assert DIAMETER_RANGE == CARD_RANGE == (2.0, 500.0)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, None),
        ("auto", "auto"),
        (" OFF ", "off"),
        (40, 40.0),
        ("40px", 40.0),
        (np.int64(30), 30.0),
        ("12um", "12um"),
        ("12\u00b5m", "12um"),
        ("12.5 \u03bcm", "12.5um"),
    ],
)
def test_diameter_values_are_put_in_their_canonical_form(value, expected) -> None:
    assert PredictParams(diameter=value).diameter == expected


@pytest.mark.parametrize(
    ("value", "pixel_size", "message"),
    [
        (1, None, "diameter 1 px is out of range: use 2 to 500 px"),
        (501, None, "diameter 501 px is out of range: use 2 to 500 px"),
        ("600um", 1.0, "diameter 600 px (600um) is out of range"),
        ("big", None, "diameter takes auto, off, pixels (e.g. 40) or micrometres"),
        (-3, None, "diameter takes auto, off"),
        (True, None, "diameter takes auto, off"),
    ],
)
def test_bad_diameters_are_refused_in_one_line(value, pixel_size, message) -> None:
    with pytest.raises(CellsegError) as error:
        parse_diameter(value, pixel_size)
    assert message in str(error.value) and "\n" not in str(error.value)
    if pixel_size is None:
        with pytest.raises(CellsegError, match="diameter"):
            PredictParams(diameter=value)


def test_micrometres_are_converted_with_the_pixel_size() -> None:
    assert parse_diameter("12um", (0.5, 0.5)) == 24.0
    assert parse_diameter("12um", 0.25) == 48.0
    assert parse_diameter("12um", (0.25, 1.0)) == 24.0  # geometric mean of y and x


def test_micrometres_without_a_pixel_size_say_what_to_do() -> None:
    image = discs(20)
    with pytest.raises(CellsegError) as error:
        predict(image, model_with(None), replace(CPU, diameter="12um"))
    text = str(error.value)
    assert "needs the image's pixel size" in text and "pixels" in text and "\n" not in text
    prediction = predict(image, model_with(None), replace(CPU, diameter="10um"), pixel_size_um=0.5)
    assert prediction.diameter == 20.0 and prediction.scale == pytest.approx(18 / 20)


# -- rescaling ----------------------------------------------------------------------------
def test_the_default_keeps_todays_labels_for_a_card_without_a_diameter() -> None:
    image = discs(40)
    model = model_with(None)
    today = predict_planes(image, model, CPU)
    prediction = predict(image, model, CPU)
    np.testing.assert_array_equal(prediction.labels, today.labels)
    assert prediction.diameter is None and prediction.scale == 1.0
    off = predict(image, model_with(30.0), replace(CPU, diameter="off"))
    np.testing.assert_array_equal(off.labels, today.labels)


@pytest.mark.parametrize("diameter", [8.0, 40.0, 72.0])
def test_a_rescaled_run_returns_whole_objects_on_the_images_grid(diameter) -> None:
    image = discs(diameter)
    model = model_with(None)  # reference 18 px
    native = predict(image, model, CPU)
    prediction = predict(image, model, replace(CPU, diameter=diameter))
    assert prediction.scale == pytest.approx(18 / diameter)
    assert prediction.diameter == diameter
    assert prediction.labels.shape == image.shape
    assert prediction.n_objects == native.n_objects == 9
    assert_table_matches_labels(prediction)
    ratio = prediction.table["area"] / native.table["area"]
    assert np.all(np.abs(ratio - 1) < 0.15)
    assert len(prediction.raw[0]) and prediction.raw[0].shape[-1] == round(
        image.shape[1] * prediction.scale
    )  # the kept output stays at the model's scale


def test_probabilities_come_back_on_the_images_grid() -> None:
    image = discs(40)
    params = replace(CPU, diameter=40, keep_probabilities=True)
    prediction = predict(image, model_with(None), params)
    assert prediction.probabilities.shape == (3, *image.shape)
    assert prediction.probabilities.dtype == np.float16
    interior = prediction.probabilities[1] > 0.5
    assert np.mean(interior == (prediction.labels > 0)) > 0.98


def test_a_diameter_within_ten_percent_is_not_rescaled() -> None:
    prediction = predict(discs(19), model_with(None), replace(CPU, diameter=19))
    assert prediction.diameter == 19.0 and prediction.scale == 1.0


def test_reapply_after_a_rescaled_run_gives_labels_on_the_images_grid() -> None:
    image = discs(40)
    image[image > 0] = 120  # at the edge of the thresholds: a higher one removes objects
    prediction = predict(image, model_with(None), replace(CPU, diameter=40))
    same = reapply(prediction, prediction.params.post)
    np.testing.assert_array_equal(same.labels, prediction.labels)
    stricter = reapply(prediction, replace(prediction.params.post, prob_threshold=0.99))
    assert stricter.labels.shape == image.shape and stricter.scale == prediction.scale
    assert stricter.n_objects < prediction.n_objects
    assert_table_matches_labels(stricter)


def test_vanished_tiny_objects_are_counted() -> None:
    labels = np.zeros((40, 40), np.uint16)
    labels[0, 0], labels[10:30, 10:30] = 1, 2
    small, table, lost = to_image_grid(labels, object_table(labels), (10, 10))
    assert lost == 1 and small.max() == 1 and table["area"].tolist() == [25]


# -- auto ---------------------------------------------------------------------------------
@pytest.mark.parametrize("true_diameter", [10.0, 30.0, 64.0])
def test_auto_estimates_the_diameter_of_discs_within_15_percent(true_diameter) -> None:
    image = discs(true_diameter)
    model = model_with(24.0)
    prediction, events = collect(iter_predict(image, model, replace(CPU, diameter="auto")))
    assert prediction.diameter == pytest.approx(true_diameter, rel=0.15)
    assert prediction.scale == pytest.approx(24.0 / prediction.diameter)
    said = [e.message for e in events if isinstance(e, Notice)]
    assert any(m.startswith("estimated object diameter") for m in said)
    assert any(m.startswith("estimated object diameter") for m in prediction.notices)
    assert prediction.n_objects == 9 and prediction.labels.shape == image.shape


def test_the_default_is_auto_for_a_card_with_a_diameter() -> None:
    prediction = predict(discs(48), model_with(24.0), CPU)
    assert prediction.diameter == pytest.approx(48, rel=0.15)
    assert prediction.scale == pytest.approx(0.5, rel=0.15)


def test_a_fine_tuned_cards_default_diameter_is_used_unless_told() -> None:
    """A fine-tune records its images' object size: new images are rescaled by it without
    an estimate, and said so; ``auto`` and ``off`` still do what they say."""
    model = model_with(24.0)
    model.card.default_diameter = 48.0
    image = discs(48)
    prediction, events = collect(iter_predict(image, model, CPU))
    assert (prediction.diameter, prediction.scale) == (48.0, 0.5)
    said = [e.message for e in events if isinstance(e, Notice)]
    assert any("48 px, the median of the objects this model was fine-tuned on" in m for m in said)
    assert not any(m.startswith("estimated object diameter") for m in said)
    assert prediction.n_objects == 9 and prediction.labels.shape == image.shape
    estimated = predict(discs(30), model, replace(CPU, diameter="auto"))
    assert estimated.diameter == pytest.approx(30, rel=0.15)
    assert predict(image, model, replace(CPU, diameter="off")).scale == 1.0


def test_the_estimate_does_not_follow_the_runs_lower_thresholds() -> None:
    """The quick passes measure confident, unsplit objects: a run with a low probability
    and a high boundary threshold gets the same estimate as one with the strict ones."""
    from napari_cellseg.inference.quick_passes import quick_params

    loose = CPU.with_post(prob_threshold=0.2, boundary_threshold=0.3)
    strict = CPU.with_post(prob_threshold=0.9, boundary_threshold=0.001)
    post = quick_params(loose, model_with(24.0).card).post
    assert (post.prob_threshold, post.boundary_threshold) == (0.7, 0.01)
    post = quick_params(strict, model_with(24.0).card).post
    assert (post.prob_threshold, post.boundary_threshold) == (0.9, 0.001)
    image = discs(48)
    found = [predict(image, model_with(24.0), run).diameter for run in (loose, CPU)]
    assert found[0] == found[1] == pytest.approx(48, rel=0.15)


def test_auto_without_objects_does_not_rescale_and_says_so() -> None:
    blank = np.zeros((96, 96), np.uint8)
    prediction, events = collect(iter_predict(blank, model_with(24.0), CPU))
    assert prediction.diameter is None and prediction.scale == 1.0
    warnings = [e.message for e in events if isinstance(e, Notice) and e.level == "warning"]
    assert any("no objects found to estimate the object diameter" in m for m in warnings)


# -- both families, blocks ----------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_maskrcnn(tmp_path_factory):
    path = save_tiny("maskrcnn", tmp_path_factory.mktemp("m") / "m.safetensors")
    return load_weights(path, device="cpu")


def test_a_mask_rcnn_run_is_rescaled_and_reapplied_on_the_images_grid(tiny_maskrcnn) -> None:
    image = np.stack([discs(20, n=2)] * 3, axis=-1)
    params = replace(CPU, tile_size=128, overlap=16, diameter=36).with_post(score_threshold=0.0)
    prediction = predict(image, tiny_maskrcnn, params)
    assert prediction.scale == pytest.approx(0.5)
    assert prediction.labels.shape == image.shape[:2] and prediction.n_objects > 0
    assert_table_matches_labels(prediction)
    assert len(prediction.table["score"]) == prediction.n_objects
    again = reapply(prediction, prediction.params.post)
    np.testing.assert_array_equal(again.labels, prediction.labels)
    np.testing.assert_array_equal(again.table["score"], prediction.table["score"])


def test_block_by_block_rescales_each_block_with_its_halo() -> None:
    image = discs(36, n=5)  # 372 px: large for these block options
    small = BlockOptions(block_size=128, halo=64, block_pixels=200 * 200)
    model = model_with(None)
    params = replace(CPU, diameter=36)
    whole = predict(image, model, params)
    blockwise = predict(image, model, params, blocks=small)
    assert any("px blocks" in n for n in blockwise.notices)
    assert blockwise.scale == whole.scale == pytest.approx(0.5)
    assert blockwise.labels.shape == image.shape
    assert blockwise.n_objects == whole.n_objects == 25
    assert sorted(blockwise.table["area"]) == pytest.approx(sorted(whole.table["area"]), rel=0.05)


def test_auto_on_a_large_plane_reads_a_central_crop() -> None:
    image = discs(40, n=5)
    small = BlockOptions(block_size=128, halo=64, block_pixels=200 * 200)
    prediction = predict(image, model_with(20.0), CPU, blocks=small)
    assert prediction.diameter == pytest.approx(40, rel=0.15)
    assert prediction.labels.shape == image.shape and prediction.n_objects == 25


def _scripted_passes(monkeypatch, seen_at: dict[float, float | None]) -> list[float]:
    """Replace the model's quick passes by what each scale 'sees' (diameters in image px)."""
    from napari_cellseg.inference import diameter as diameter_module

    scales: list[float] = []

    def fake_pass(image, axes, model, quick, scale, should_stop, keep=None, seen=None):
        scales.append(round(scale, 3))
        yield from ()
        return seen_at(scale) if callable(seen_at) else seen_at.get(round(scale, 3))

    monkeypatch.setattr(diameter_module, "quick_pass", fake_pass)
    return scales


def test_unconfirmed_specks_do_not_hide_large_objects(monkeypatch) -> None:
    """A first pass that finds 5 px 'objects' which the enlarged passes do not confirm
    (texture: they look 5 px at every scale, never the model's 18) must not win over large
    objects found whole when the image is shrunk (40 px, seen at ×0.5)."""
    from napari_cellseg.events import drain
    from napari_cellseg.inference.diameter import iter_estimate_diameter
    from napari_cellseg.params import PredictParams

    def seen(scale: float) -> float:
        # texture looks 5 px at any scale (5 / scale image px); at ×0.5 the nuclei (40 px)
        # are seen whole, as long as they are not shrunk below the model's size
        return 40.0 if scale <= 0.5 and 40.0 * scale >= 18 / 1.25 else 5.0 / scale

    scales = _scripted_passes(monkeypatch, seen)
    image = np.zeros((512, 512), np.float32)
    found = drain(iter_estimate_diameter(image, known_model(), PredictParams(axes="YX"), 18.0))
    assert found == 40.0
    assert scales[0] == 1.0 and 0.5 in scales


def test_confirmed_small_objects_are_kept(monkeypatch) -> None:
    """8 px objects that look 18 px once enlarged ×2.25 are the estimate; no halving."""
    from napari_cellseg.events import drain
    from napari_cellseg.inference.diameter import iter_estimate_diameter
    from napari_cellseg.params import PredictParams

    scales = _scripted_passes(monkeypatch, lambda scale: 8.0)
    image = np.zeros((512, 512), np.float32)
    found = drain(iter_estimate_diameter(image, known_model(), PredictParams(axes="YX"), 18.0))
    assert found == 8.0
    assert all(s >= 1.0 for s in scales)


def test_objects_unseen_at_the_native_scale_are_looked_for_at_smaller_ones(monkeypatch) -> None:
    """Nuclei 150 px across: the model finds nothing at ×1, nor whole objects at ×0.5; at
    ×0.25 it sees them (150 px), at ×0.125 they are about its size (19 px), at ×0.0625
    too small (9 px): the estimate is 150 px."""
    from napari_cellseg.events import drain
    from napari_cellseg.inference.diameter import iter_estimate_diameter
    from napari_cellseg.params import PredictParams

    scales = _scripted_passes(monkeypatch, {0.25: 150.0, 0.125: 150.0, 0.062: 150.0})
    image = np.zeros((2048, 2048), np.float32)
    found = drain(iter_estimate_diameter(image, known_model(), PredictParams(axes="YX"), 18.0))
    assert found == 150.0
    assert scales[:3] == [1.0, 0.5, 0.25]


def test_an_empty_image_is_given_up_on_after_the_smaller_scales(monkeypatch) -> None:
    from napari_cellseg.events import drain
    from napari_cellseg.inference.diameter import MAX_PASSES, iter_estimate_diameter
    from napari_cellseg.params import PredictParams

    scales = _scripted_passes(monkeypatch, {})
    image = np.zeros((256, 256), np.float32)
    found = drain(iter_estimate_diameter(image, known_model(), PredictParams(axes="YX"), 18.0))
    assert found is None
    assert scales == [1.0, 0.5] and len(scales) <= MAX_PASSES  # 256 px x 0.25 < 4 x 18 px


def test_the_size_estimate_counts_in_the_runs_time() -> None:
    prediction = predict(discs(30.0), model_with(24.0), replace(CPU, diameter="auto"))
    timings = prediction.timings
    assert timings["diameter"] > 0
    assert timings["total"] >= timings["diameter"] + timings["network"]
    given = predict(discs(30.0), model_with(24.0), replace(CPU, diameter=30))
    assert given.timings["diameter"] < timings["diameter"]


def test_auto_for_a_fine_tuned_model_starts_at_its_images_size(monkeypatch) -> None:
    """Glands 150 px across, which the model (18 px) sees as specks at every scale except
    near ×0.12: started at its fine-tuning images' size (150 px, ×0.12) it finds them in
    one pass and the halving stops at the plane's size; started at ×1 it reports specks."""
    from napari_cellseg.events import drain
    from napari_cellseg.inference.diameter import iter_estimate_diameter

    def seen(scale: float) -> float:
        return 150.0 if 0.1 <= scale <= 0.15 else 5.0 / scale

    scales = _scripted_passes(monkeypatch, seen)
    image, params = np.zeros((600, 800), np.float32), PredictParams(axes="YX")
    start = 18.0 / 150.0
    found = drain(iter_estimate_diameter(image, known_model(), params, 18.0, start=start))
    assert found == 150.0 and scales == [round(start, 3)]  # ×0.06 would be < 4 objects across
    scales.clear()
    assert drain(iter_estimate_diameter(image, known_model(), params, 18.0)) == 5.0
    assert scales[0] == 1.0


def test_auto_with_a_default_diameter_on_the_card_passes_it_as_the_start(monkeypatch) -> None:
    from napari_cellseg.inference import diameter as diameter_module

    starts: list[float] = []

    def fake_estimate(*args, start: float = 1.0, **kwargs):
        starts.append(start)
        yield from ()
        return 96.0

    monkeypatch.setattr(diameter_module, "iter_estimate_diameter", fake_estimate)
    model = model_with(24.0)
    model.card.default_diameter = 96.0
    prediction = predict(discs(96), model, replace(CPU, diameter="auto"))
    assert starts == [0.25] and prediction.diameter == 96.0
