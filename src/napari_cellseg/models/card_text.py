"""A model card in words: the summary that ``cellseg info`` and the Segment tab show."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from napari_cellseg.families import family_spec
from napari_cellseg.params import describe_post

if TYPE_CHECKING:
    from napari_cellseg.models.card import ModelCard

__all__ = ["card_summary", "describe_ancestor", "describe_normalisation"]


def card_summary(card: ModelCard) -> str:
    """A few human-readable lines: family, architecture, inputs, outputs, training, lineage."""
    family = family_spec(card.family).title
    lines = [
        f"{card.name}",
        f"  family:        {family} ({card.architecture})",
        f"  input:         {card.input_channels} channel(s), {card.channel_handling}; "
        f"normalisation {describe_normalisation(card.normalisation)}",
        f"  outputs:       {', '.join(card.outputs)}"
        + (f" ({card.output_activation})" if card.output_activation else ""),
    ]
    prov = card.provenance
    source = prov.get("source", "napari-cellseg")
    lines.append(f"  source:        {source}")
    data = prov.get("data_manifest") or []
    if data:
        datasets = sorted({str(item.get("dataset", "?")) for item in data})
        ways = [f"{n} {w}" for w, n in (card.learned_polarity() or {}).items() if n]
        ways = f"; objects {', '.join(ways)} (training images)" if ways else ""
        lines.append(f"  trained on:    {len(data)} images ({', '.join(datasets)}){ways}")
    if prov.get("epochs") is not None:
        lines.append(f"  epochs:        {prov['epochs']}")
    metrics = prov.get("metrics") or {}
    if metrics:
        shown = ", ".join(
            f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}" for k, v in metrics.items()
        )
        lines.append(f"  metrics:       {shown}")
    if card.postprocess:
        shown = describe_post(card.postprocess)
        tuning = prov.get("postprocess_tuning") or {}
        where = f" (tuned on {tuning['data']})" if tuning.get("data") else ""
        if tuning.get("tta", 1) > 1:
            where += f" for test-time augmentation ×{tuning['tta']}"
        lines.append(f"  thresholds:    {shown}{where}")
    if card.object_diameter is not None:
        size = f"{card.object_diameter:g} px ({card.object_diameter_source or 'given'})"
        if card.default_diameter is not None:
            size += f"; images assumed at {card.default_diameter:g} px unless told"
        lines.append(f"  object size:   {size}")
    lines.append(f"  created:       {card.created}")
    for k, ancestor in enumerate(card.lineage):
        head = "  lineage:       " if k == 0 else " " * 17
        lines.append(f"{head}{k + 1}. {describe_ancestor(ancestor)}")
    return "\n".join(lines)


def describe_ancestor(ancestor: dict[str, Any]) -> str:
    """One line about an ancestor in a card's lineage.

    >>> describe_ancestor({"name": "unet-a", "file": "a.safetensors", "sha256": "0123456789abcdef",
    ...     "history": {"epochs": 12, "metrics": {"dsb_ap": 0.5}},
    ...     "data_manifest": [{"dataset": "set1"}, {"dataset": "set1"}]})
    'unet-a (a.safetensors, sha256 0123456789ab): 12 epochs, data: 2 images (set1), dsb_ap 0.500'
    """
    name = str(ancestor.get("name") or "?")
    where = ", ".join(
        part
        for part in (
            str(ancestor.get("file") or ""),
            f"sha256 {str(ancestor['sha256'])[:12]}" if ancestor.get("sha256") else "",
        )
        if part
    )
    line = f"{name} ({where})" if where else name
    history = ancestor.get("history") or {}
    data = ancestor.get("data_manifest") or []
    facts = []
    if history.get("kept_base"):
        facts.append("kept its base (no epoch beat it)")
    elif history.get("epochs") is not None:
        facts.append(f"{history['epochs']} epochs")
    if data:
        sets = ", ".join(sorted({str(d.get("dataset", "?")) for d in data if isinstance(d, dict)}))
        facts.append(f"data: {len(data)} images ({sets})")
    ap = (history.get("metrics") or {}).get("dsb_ap")
    if isinstance(ap, (int, float)):
        facts.append(f"dsb_ap {ap:.3f}")
    return f"{line}: {', '.join(facts) or 'no training record'}"


def describe_normalisation(norm: dict[str, Any]) -> str:
    """The card summary's words for a normalisation.

    >>> describe_normalisation({"method": "percentile", "low": 1, "high": 99.8, "invert": True})
    'percentile 1–99.8, inverted (dark objects on a bright background)'
    """
    method = norm.get("method", "?")
    words = f"percentile {norm.get('low')}–{norm.get('high')}" if method == "percentile" else method
    inverted = ", inverted (dark objects on a bright background)" if norm.get("invert") else ""
    return str(words) + inverted
