"""A warning that many files of a run share, said once and then counted.

Batch and ranking events name their file (``"name: text"``); a hint that holds for every
file of a folder (an image the other way round from what the model learned, say) would
otherwise come once per file.
"""

from __future__ import annotations

from collections.abc import Generator

from napari_cellseg.events import Notice


def repeated_warning(event: Notice, warned: dict[str, list[str]]) -> bool:
    """Record a file's warning (``"name: text"``); True when an earlier file had the same text.

    >>> warned = {}
    >>> [repeated_warning(Notice(f"{n}: too dark", "warning"), warned) for n in "abc"]
    [False, True, True]
    >>> warned
    {'too dark': ['a', 'b', 'c']}
    """
    if event.level != "warning" or ": " not in event.message:
        return False
    name, text = event.message.split(": ", 1)
    warned.setdefault(text, []).append(name)
    return len(warned[text]) > 1


def repeats_summary(warned: dict[str, list[str]]) -> Generator[Notice, None, None]:
    """One line per warning that more files had, instead of the same line for each."""
    for text, names in warned.items():
        if len(names) > 1:
            short = text if len(text) <= 60 else text[:57] + "…"
            yield Notice(
                f"{len(names) - 1} more file(s) had the warning {names[0]} had ({short})",
                level="warning",
            )


__all__ = ["repeated_warning", "repeats_summary"]
