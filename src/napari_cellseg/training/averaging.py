"""An exponential moving average of the weights, validated and saved instead of the raw ones.

A fine-tune of a few minutes takes a few hundred small steps; each short epoch moves the raw
weights enough that the validation score jumps between neighbouring epochs, and picking the
best epoch on one validation image then picks the luckiest jump. Averaging the weights over
the last steps (Polyak averaging, as an exponential moving average) smooths that walk.
torch's :class:`~torch.optim.swa_utils.AveragedModel` keeps the average; BatchNorm buffers are
averaged with the weights (``use_buffers``), so a model whose statistics are frozen keeps them.

>>> import torch
>>> net = torch.nn.Linear(1, 1, bias=False)
>>> _ = torch.nn.init.zeros_(net.weight)
>>> average = weight_average(net, 0.5)
>>> with torch.no_grad():
...     _ = net.weight.fill_(1.0)
>>> update_average(average, net)
>>> averaged_module(net, average).weight.item()
0.5
>>> weight_average(net, 0.0) is None
True
"""

from __future__ import annotations

from typing import Any

import torch
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

__all__ = ["averaged_module", "update_average", "weight_average"]


def weight_average(
    model: torch.nn.Module, decay: float, state: dict[str, Any] | None = None
) -> AveragedModel | None:
    """An EMA of ``model``'s weights with ``decay`` per step, or None when ``decay`` is 0.

    ``state``: a training checkpoint; its ``"average"`` (the average when it was written)
    is put back, so a resumed run goes on with the same average.
    """
    if not decay:
        return None
    average = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=True)
    average.update_parameters(model)  # starts at the model's weights
    if state is not None and state.get("average") is not None:
        average.load_state_dict(state["average"])
    return average


def update_average(average: AveragedModel | None, model: torch.nn.Module) -> None:
    """Fold ``model``'s current weights into ``average`` (nothing when there is none)."""
    if average is not None:
        average.update_parameters(model)


def averaged_module(model: torch.nn.Module, average: AveragedModel | None) -> torch.nn.Module:
    """The module to validate and save: the average's when there is one, else ``model``."""
    return model if average is None else average.module
