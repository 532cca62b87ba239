"""Small pieces the plugin's widgets share (kept free of torch so they import quickly)."""

from __future__ import annotations

from magicgui.widgets import ComboBox

#: Overrides where the widgets keep settings and autosaves (tests point it at a temp folder).
CONFIG_ENV = "NAPARI_CELLSEG_CONFIG_DIR"


def rebuild_choices(combo: ComboBox) -> None:
    """Refill ``combo`` in the order its choices function gives, keeping its value if offered.

    magicgui matches items by their text, so a renamed item would move to the end and lose the
    selection; rebuilding keeps the order of the layer list and the user's choice.
    """
    before = combo.value
    with combo.changed.blocked():
        combo.native.clear()
        combo.reset_choices()
        if before in combo.choices:
            combo.value = before
    if combo.value != before:
        combo.changed.emit(combo.value)
