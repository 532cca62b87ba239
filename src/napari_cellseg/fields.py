"""Parameter metadata: each field's label, help text and allowed values, in one place.

A parameter dataclass (:mod:`napari_cellseg.params`) declares a field as
``field(default=..., metadata=info("Label", "help", min=0, max=1))``; the CLI help, the
widgets' labels, tooltips and ranges, and the dataclasses' range checks are all made from it
(:func:`field_info`, :func:`described_fields`, :func:`check_fields`).
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Any

from napari_cellseg.errors import CellsegError

_INFO_KEY = "cellseg"


def _number(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _or_list(items: tuple[Any, ...]) -> str:
    words = [str(i) for i in items]
    return words[0] if len(words) == 1 else f"{', '.join(words[:-1])} or {words[-1]}"


@dataclass(frozen=True)
class FieldInfo:
    """What one parameter means and which values it takes.

    Attributes
    ----------
    label : str
        Short name for a form (the widget's label).
    help : str
        One-line explanation (the CLI help and the widget's tooltip).
    min, max : float or None
        Bounds, inclusive unless ``min_exclusive``/``max_exclusive``; ``None``: unbounded.
    min_exclusive, max_exclusive : bool
        The bound itself is refused.
    choices : tuple or None
        The only values allowed.
    family : str or None
        The model family the parameter applies to (``unet``, ``maskrcnn``); ``None``: all.
    error : str or None
        Message template for a refused value (``str.format`` fields: ``name``, ``value``,
        ``min``, ``max``, ``choices``, ``or_choices`` and ``p``, the whole dataclass);
        ``None`` gives ``"<name> must be between <min> and <max>, got <value>"`` and the like.
    name : str
        The field's name (set by :func:`field_info`).
    """

    label: str
    help: str
    min: float | None = None
    max: float | None = None
    min_exclusive: bool = False
    max_exclusive: bool = False
    choices: tuple[Any, ...] | None = None
    family: str | None = None
    error: str | None = None
    name: str = ""

    def refuses(self, value: Any) -> bool:
        """Whether ``value`` is outside the range or choices (``None`` is never refused)."""
        if value is None:
            return False
        if self.choices is not None and value not in self.choices:
            return True
        if self.min is not None and (value <= self.min if self.min_exclusive else value < self.min):
            return True
        return self.max is not None and (
            value >= self.max if self.max_exclusive else value > self.max
        )

    def problem(self, value: Any, owner: Any = None) -> str:
        """The one-line message refusing ``value`` (``owner``: the dataclass, for templates)."""
        lo, hi = _number(self.min), _number(self.max)
        if self.error is not None:
            template = self.error
        elif self.choices is not None:
            template = "{name} must be {or_choices}, got {value!r}"
        elif self.min is not None and self.max is not None:
            if self.min_exclusive or self.max_exclusive:
                left, right = "(["[not self.min_exclusive], ")]"[not self.max_exclusive]
                template = f"{{name}} must be in {left}{{min}}, {{max}}{right}, got {{value}}"
            else:
                template = "{name} must be between {min} and {max}, got {value}"
        elif self.min is not None:
            template = (
                f"{{name}} must be {'>' if self.min_exclusive else '>='} {{min}}, got {{value}}"
            )
        else:
            template = (
                f"{{name}} must be {'<' if self.max_exclusive else '<='} {{max}}, got {{value}}"
            )
        choices = tuple(self.choices or ())
        return template.format(
            name=self.name,
            value=value,
            min=lo,
            max=hi,
            choices=", ".join(map(str, choices)),
            or_choices=_or_list(choices) if choices else "",
            p=owner,
        )

    def widget_options(self) -> dict[str, Any]:
        """``label``, ``tooltip`` and, for inclusive bounds, ``min``/``max`` of a widget."""
        out: dict[str, Any] = {
            "label": self.label,
            "tooltip": self.help[:1].upper() + self.help[1:],
        }
        if self.min is not None and not self.min_exclusive:
            out["min"] = self.min
        if self.max is not None and not self.max_exclusive:
            out["max"] = self.max
        return out


def info(label: str, help: str, **limits: Any) -> dict[str, FieldInfo]:
    """A field's ``metadata``: ``field(default=..., metadata=info("Label", "help", min=0))``."""
    return {_INFO_KEY: FieldInfo(label, help, **limits)}


def field_info(cls: Any, name: str) -> FieldInfo:
    """The label, help and allowed values of the parameter ``name`` of dataclass ``cls``.

    Parameters
    ----------
    cls : type or dataclass instance
        E.g. :class:`PredictParams`.
    name : str
        A field of ``cls`` that has metadata (see :func:`described_fields`).

    Returns
    -------
    FieldInfo

    Raises
    ------
    KeyError
        If ``cls`` has no such field or the field has no metadata.

    Examples
    --------
    >>> from dataclasses import dataclass, field
    >>> @dataclass(frozen=True)
    ... class Knob:
    ...     level: float = field(default=0.5, metadata=info("Level", "how far", min=0, max=1))
    >>> i = field_info(Knob, "level")
    >>> i.label, i.min, i.max
    ('Level', 0, 1)
    >>> i.problem(1.5)
    'level must be between 0 and 1, got 1.5'
    >>> check_fields(Knob(level=2.0))
    Traceback (most recent call last):
    ...
    napari_cellseg.errors.CellsegError: level must be between 0 and 1, got 2.0
    """
    for f in fields(cls):
        if f.name == name and _INFO_KEY in f.metadata:
            return replace(f.metadata[_INFO_KEY], name=name)
    raise KeyError(f"{getattr(cls, '__name__', cls)!s} has no described field {name!r}")


def described_fields(cls: Any) -> list[str]:
    """The names of the fields of ``cls`` that carry a :class:`FieldInfo`, in order."""
    return [f.name for f in fields(cls) if _INFO_KEY in f.metadata]


def check_fields(params: Any) -> None:
    """Refuse a dataclass whose described fields hold a value outside their range.

    Raises
    ------
    CellsegError
        With the first refused field's one-line message (:meth:`FieldInfo.problem`).
    """
    for name in described_fields(params):
        described = field_info(params, name)
        value = getattr(params, name)
        if described.refuses(value):
            raise CellsegError(described.problem(value, params))
