"""Comparing labels that may differ only where a watershed broke an exact tie.

skimage's watershed pops its markers (all of one priority) and equal-valued pixels in an
order its heap decides, so flooding the same component within a crop, or next to other
components, may give a contested pixel, and the pixels flooded from it, to the other
neighbour. Labels compared with :func:`assert_same_up_to_ties` must hold the same objects,
agree on all but a small fraction of pixels, and every patch where they differ must have
gone to an object that touches the patch in the reference.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

_FULL = np.ones((3, 3), bool)


def assert_same_up_to_ties(got: np.ndarray, expected: np.ndarray, fraction: float = 0.01):
    """Same object ids, few differing pixels, each differing patch taken by a neighbour."""
    assert got.shape == expected.shape and got.dtype == expected.dtype
    np.testing.assert_array_equal(np.unique(got), np.unique(expected))
    differ = got != expected
    assert differ.mean() <= fraction, f"{differ.sum()} of {differ.size} pixels differ"
    patches, _ = ndi.label(differ, structure=_FULL)
    for index, box in enumerate(ndi.find_objects(patches), start=1):
        grown = tuple(slice(max(s.start - 1, 0), s.stop + 1) for s in box)
        patch = patches[grown] == index
        near = expected[grown][ndi.binary_dilation(patch, _FULL)]
        for label in np.unique(got[grown][patch]):
            assert label == 0 or label in near, f"label {label} does not touch its patch"
