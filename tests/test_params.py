"""Each parameter's label, help and range live once, in its field metadata (params.py).

The CLI help shows every described field's help, and the dataclasses refuse any value
outside a described range with a one-line message made from the same metadata.
"""

from __future__ import annotations

import doctest
import re
from typing import Any

import pytest

from napari_cellseg import params as params_module
from napari_cellseg.cli.app import build_parser
from napari_cellseg.errors import CellsegError
from napari_cellseg.params import (
    FieldInfo,
    PostprocessParams,
    PredictParams,
    TrainParams,
    described_fields,
    field_info,
)

#: Each dataclass, the CLI command whose help shows its fields, and values the other
#: fields need so that only the one under test is out of range.
CLASSES: dict[type, tuple[str, dict[str, Any]]] = {
    PostprocessParams: ("predict", {}),
    PredictParams: ("predict", {"overlap": None}),
    TrainParams: ("train", {"batch_size": 1}),
}
DESCRIBED = [(cls, name) for cls in CLASSES for name in described_fields(cls)]


def _help_text(command: str) -> str:
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    # argparse wraps at hyphens too ("fine-" / "tuned"): join those back
    return re.sub(r"(?<=\w)- (?=\w)", "-", " ".join(sub.choices[command].format_help().split()))


def _outside(info: FieldInfo) -> list[Any]:
    """Values just outside the described range or choices."""
    bad: list[Any] = []
    if info.choices is not None:
        numeric = all(isinstance(c, int) for c in info.choices)
        bad.append(max(info.choices) + 1 if numeric else "no-such-choice")
        if numeric:
            bad.append(3 if 3 not in info.choices else -1)
    step = 1 if isinstance(info.min if info.min is not None else info.max, int) else 0.5
    if info.min is not None:
        bad.append(info.min if info.min_exclusive else info.min - step)
    if info.max is not None:
        bad.append(info.max if info.max_exclusive else info.max + step)
    return bad


def test_doctests() -> None:
    result = doctest.testmod(params_module, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0


def test_every_class_describes_its_user_facing_fields() -> None:
    assert set(described_fields(PostprocessParams)) == {
        f for f in PostprocessParams.__dataclass_fields__
    }
    assert {"tile_size", "overlap", "batch_size", "tta", "device"} <= set(
        described_fields(PredictParams)
    )
    assert {"epochs", "learning_rate", "val_fraction", "loss"} <= set(described_fields(TrainParams))


@pytest.mark.parametrize(("cls", "name"), DESCRIBED, ids=lambda x: getattr(x, "__name__", x))
def test_cli_help_shows_the_field_help(cls: type, name: str) -> None:
    info = field_info(cls, name)
    assert info.label and info.help
    assert " ".join(info.help.split()) in _help_text(CLASSES[cls][0])


@pytest.mark.parametrize(("cls", "name"), DESCRIBED, ids=lambda x: getattr(x, "__name__", x))
def test_range_check_refuses_values_outside_with_one_line(cls: type, name: str) -> None:
    info = field_info(cls, name)
    others = CLASSES[cls][1]
    base = cls(**others)
    for value in _outside(info):
        assert info.refuses(value)
        with pytest.raises(CellsegError) as caught:
            cls(**{**others, name: value})
        message = str(caught.value)
        assert "\n" not in message
        assert message == info.problem(value, replace_unchecked(base, name, value))
    for bound, exclusive in ((info.min, info.min_exclusive), (info.max, info.max_exclusive)):
        if bound is not None and not exclusive:
            assert getattr(cls(**{**others, name: bound}), name) == bound  # bound accepted


def replace_unchecked(obj: Any, name: str, value: Any) -> Any:
    """A copy of ``obj`` with one field changed, skipping validation (for templates)."""
    copy = object.__new__(type(obj))
    for key in obj.__dataclass_fields__:
        object.__setattr__(copy, key, getattr(obj, key))
    object.__setattr__(copy, name, value)
    return copy


def test_messages_tests_and_users_rely_on() -> None:
    cases = [
        (lambda: PostprocessParams(prob_threshold=1.5), "prob_threshold must be between 0 and 1"),
        (lambda: PredictParams(tile_size=5), "tile size 5 is out of range: use 32 to 8192"),
        (lambda: PredictParams(tta=3), "test-time augmentation takes 1, 2, 4, 8 copies"),
        (lambda: PredictParams(batch_size=0), "batch size must be between 1 and 256, got 0"),
        (lambda: TrainParams(epochs=0), "epochs must be at least 1, got 0"),
        (lambda: TrainParams(samples_per_epoch=0), "samples per epoch must be at least 1"),
        (lambda: TrainParams(batch_size=600), "batch size 600 must be >= 1 and <= samples per"),
        (lambda: TrainParams(patch_size=100), "patch size 100 must be a multiple of 32"),
        (lambda: TrainParams(optimizer="adam"), "optimizer must be adamw or sgd, got 'adam'"),
        (lambda: TrainParams(val_fraction=1.0), "validation fraction must be in [0, 1)"),
        (lambda: TrainParams(minutes=0.0), "the time budget must be positive"),
    ]
    for make, words in cases:
        with pytest.raises(CellsegError) as caught:
            make()
        assert str(caught.value).startswith(words)


def test_widget_options_skip_exclusive_bounds() -> None:
    assert field_info(PostprocessParams, "nms_iou").widget_options() == {
        "label": "NMS IoU",
        "tooltip": field_info(PostprocessParams, "nms_iou").help,
        "min": 0.0,
        "max": 1.0,
    }
    lr = field_info(TrainParams, "learning_rate").widget_options()
    assert set(lr) == {"label", "tooltip"}
    assert field_info(TrainParams, "val_fraction").widget_options()["min"] == 0.0


def test_unknown_field_is_a_key_error() -> None:
    with pytest.raises(KeyError, match="no described field 'post'"):
        field_info(PredictParams, "post")


def test_the_thresholds_metadata_and_the_family_table_agree() -> None:
    """Which family a threshold belongs to is said twice (the field's metadata for help and
    tooltips, the family table for the sliders shown): every slider of a family must be a
    field tagged with that family (tagged fields may be more: e.g. min_distance)."""
    from napari_cellseg.families import FAMILIES
    from napari_cellseg.params import PostprocessParams, described_fields, field_info

    for name, spec in FAMILIES.items():
        tagged = {
            f
            for f in described_fields(PostprocessParams)
            if field_info(PostprocessParams, f).family == name
        }
        assert set(spec.thresholds) <= tagged, name
