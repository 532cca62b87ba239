"""Whether a time-budgeted training on the CPU had the cores it asked for.

A fine-tune with a time budget (``TrainParams.minutes``) on a 2-core CPU fits as many steps
as the cores allow. When another program (a test run, a second napari, a browser's video)
takes them meanwhile, the same 5 minutes fit half the steps and the fine-tune learns less:
in ``bench/hitl_strips.py`` (session 28) the same GlaS images, validation image and seed
gave test DSB AP 0.037 in 12 epochs on shared cores and 0.134 in 28 on idle ones. Nothing
failed, so nothing said so. Here the process's CPU time during training is compared with the
wall-clock time the threads had: a clearly lower share means the cores were shared, and the
user is told once, at the end.
"""

from __future__ import annotations

__all__ = ["SHARED_BELOW", "cpu_share", "shared_cores_notice"]

SHARED_BELOW = 0.6
"""CPU share under which a budgeted training is reported as having shared its cores.

On the idle 2-core benchmark machine a one-minute fast-recipe fine-tune of the demo U-Net on
the sample images used 0.93 of its two threads; two of them at once 0.49 and 0.50 each
(session 28). Half is what one other job of as many threads leaves, so the line is above it."""

MIN_SECONDS = 30.0
"""Shorter trainings are not judged: start-up and the first validation dominate them."""


def cpu_share(cpu_seconds: float, wall_seconds: float, threads: int) -> float:
    """The share of ``threads`` busy on average: process CPU time over wall time × threads.

    >>> cpu_share(90.0, 60.0, 2)
    0.75
    >>> cpu_share(5.0, 0.0, 2)
    1.0
    """
    if wall_seconds <= 0 or threads < 1:
        return 1.0
    return cpu_seconds / (wall_seconds * threads)


def shared_cores_notice(cpu_seconds: float, wall_seconds: float, threads: int) -> str | None:
    """One line for the user when a budgeted training ran on cores other programs took.

    ``None`` when the share was at least :data:`SHARED_BELOW` or the training was shorter
    than :data:`MIN_SECONDS`.

    >>> shared_cores_notice(120.0, 300.0, 2)  # doctest: +ELLIPSIS
    'training had 20 % of the 2 CPU threads it ran on: ...'
    >>> shared_cores_notice(500.0, 300.0, 2) is None
    True
    """
    share = cpu_share(cpu_seconds, wall_seconds, threads)
    if wall_seconds < MIN_SECONDS or share >= SHARED_BELOW:
        return None
    return (
        f"training had {share * 100:.0f} % of the {threads} CPU threads it ran on: other "
        "programs used the cores, so the time budget fitted fewer steps and the model learnt "
        "less; close them and train again, or give it more minutes"
    )
