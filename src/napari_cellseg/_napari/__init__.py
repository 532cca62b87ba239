"""The napari plugin layer: the only code that imports napari, magicgui and qtpy.

One deliberate import-time action: with software OpenGL (Mesa llvmpipe: VMs, remote
desktops, Xvfb), loading ``triton`` after napari has created its OpenGL context crashes
the process (two LLVM copies clash). torchvision imports ``torch._dynamo``, which imports
triton when it is installed (CUDA builds of torch ship it). The dock never asks for
``torch.compile`` (``PredictParams.compile`` stays off there), so it keeps triton from
loading when nothing has loaded it yet.
"""

import sys


def block_triton_import() -> None:
    """Make ``import triton`` fail (torch then reports no triton) unless it is loaded."""
    sys.modules.setdefault("triton", None)  # type: ignore[arg-type]


block_triton_import()
