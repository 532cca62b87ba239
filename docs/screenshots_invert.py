"""Take the user guide's screenshots of **Invert**: brightfield nuclei for a fluorescence model.

Run from the repository root (needs a display; Xvfb is enough)::

    xvfb-run -a -s "-screen 0 1600x1000x24" .venv/bin/python docs/screenshots_invert.py \\
        --weights ~/.cache/napari-cellseg/learned/base-fluo.safetensors

``--weights``: a model trained on fluorescence images only, e.g. the base of
``bench/hitl.py`` (``bench/hitl_base.py``; not shipped). It reuses the viewer of
``docs/screenshots.py``, opens the brightfield sample, picks those weights and segments the
sample twice, with *Diameter* ``off`` (as ``bench/invert.py`` scores it): as it is
(``segment_invert_off.png``, with the warning that the image looks the other way round
when the model's card records its training images' polarity) and with the Segment tab's
*Invert* box ticked (``segment_invert_on.png``). The guide's pictures used the copy of that
base that ``bench/polarity.py --save-learned ~/.cache/napari-cellseg/learned`` writes (the
same weights; its card records the polarity, as a model trained today does).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from screenshots import PLUGIN, Guide, finish, pump, work_folder

BRIGHTFIELD = "dsb_brightfield"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--weights", type=Path, required=True)
    parser.add_argument("--work", type=Path, help="keep napari-cellseg's settings here")
    args = parser.parse_args(argv)
    work = work_folder(args.work, "cellseg-invert-")
    guide = Guide(work)
    before = {layer.name for layer in guide.viewer.layers}
    guide.viewer.open_sample(PLUGIN, BRIGHTFIELD)
    image, _truth = [layer.name for layer in guide.viewer.layers if layer.name not in before]
    seg = guide.dock.segment
    seg.weights.value = args.weights.expanduser().resolve()
    seg._diameter.set_spec("off")  # as bench/hitl.py and bench/invert.py score it
    pump(10)
    for invert, name in ((False, "segment_invert_off"), (True, "segment_invert_on")):
        seg.runner._options.invert.value = invert
        guide.dismiss_notifications()
        result = guide.segment(image)
        guide.show_only(image, result)
        guide.layer(result).opacity = 0.6
        guide.viewer.layers.selection.active = guide.layer(result)
        guide.shot(name)
    return finish(guide, work, keep=args.work is not None)


if __name__ == "__main__":
    sys.exit(main())
