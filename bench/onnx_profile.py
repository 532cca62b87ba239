"""Where the default CPU backend's time goes: ONNX Runtime's profiler on one U-Net tile.

The default backend runs a U-Net through ONNX Runtime on the CPU, opening the graph that ONNX
Runtime optimized for this CPU (``inference/onnx_optimized.py``). This script opens that same
graph with profiling on, runs one tile (``--tile``, default 544²: a tile of the even plan of a
1024² image) ``--repeats`` times after ``--warmup`` runs, and adds up the kernel time per
operator type and per node. It shows whether anything but the network's own arithmetic
(convolutions) is left to remove: layout changes (``ReorderInput``/``ReorderOutput``),
concatenations, upsampling.

    .venv/bin/python bench/onnx_profile.py                 # the demo U-Net, one 544² tile
    .venv/bin/python bench/onnx_profile.py --tile 256 --name onnx_profile_cpu_256.json
"""

from __future__ import annotations

import argparse
import collections
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def kernel_times(trace: list[dict]) -> tuple[dict[str, float], dict[str, float]]:
    """Microseconds per operator type and per node from an ONNX Runtime profile trace.

    >>> trace = [{"cat": "Node", "name": "a_kernel_time", "dur": 3, "args": {"op_name": "Conv"}},
    ...          {"cat": "Node", "name": "b_kernel_time", "dur": 1, "args": {"op_name": "Relu"}},
    ...          {"cat": "Session", "name": "model_run", "dur": 9}]
    >>> kernel_times(trace)
    ({'Conv': 3.0, 'Relu': 1.0}, {'a': 3.0, 'b': 1.0})
    """
    by_op: collections.Counter = collections.Counter()
    by_node: collections.Counter = collections.Counter()
    for event in trace:
        name = event.get("name", "")
        if event.get("cat") != "Node" or not name.endswith("_kernel_time"):
            continue
        by_op[event.get("args", {}).get("op_name", "?")] += float(event["dur"])
        by_node[name[: -len("_kernel_time")]] += float(event["dur"])
    return dict(by_op), dict(by_node)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--weights", type=Path, default=ROOT / "sample_data/models/unet_dsb.safetensors"
    )
    parser.add_argument("--tile", type=int, default=544)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--top", type=int, default=12, help="nodes listed (default 12)")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    parser.add_argument("--name", default="onnx_profile_cpu.json")
    args = parser.parse_args()

    import onnxruntime as ort
    import torch

    from napari_cellseg.inference.onnx_backend import onnx_unet, session_options
    from napari_cellseg.inference.onnx_optimized import optimized_path
    from napari_cellseg.models import load_weights

    loaded = load_weights(args.weights)
    channels = loaded.card.input_channels
    runner, notice = onnx_unet(loaded.model, channels)
    if runner is None:
        raise SystemExit(f"ONNX Runtime does not run this model: {notice}")
    graph = optimized_path(runner.path, ort.__version__)  # what the default backend opens
    if not graph.is_file():
        raise SystemExit(f"no optimized graph beside {runner.path} (a read-only cache?)")
    # the default backend's options, with optimization off as it opens the saved graph
    options = session_options(torch.get_num_threads())
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    options.enable_profiling = True
    with tempfile.TemporaryDirectory() as folder:
        options.profile_file_prefix = str(Path(folder) / "profile")
        session = ort.InferenceSession(str(graph), options, providers=["CPUExecutionProvider"])
        name = session.get_inputs()[0].name
        tile = np.random.default_rng(0).random((1, channels, args.tile, args.tile), np.float32)
        for _ in range(args.warmup):
            session.run(None, {name: tile})
        seconds = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            session.run(None, {name: tile})
            seconds.append(round(time.perf_counter() - start, 4))
        trace = json.loads(Path(session.end_profiling()).read_text())
    by_op, by_node = kernel_times(trace)
    total = sum(by_op.values()) or 1.0
    ops = sorted(by_op.items(), key=lambda item: -item[1])
    nodes = sorted(by_node.items(), key=lambda item: -item[1])[: args.top]
    result = {
        "hardware": {
            "cpu": platform.processor() or platform.machine(),
            "threads": torch.get_num_threads(),
        },
        "weights": args.weights.name,
        "graph": graph.name,
        "onnxruntime": ort.__version__,
        "tile": [args.tile, args.tile],
        "seconds_per_run": seconds,
        "note": "kernel time over the warm-up and timed runs; shares of the total",
        "share_by_op": {op: round(t / total, 4) for op, t in ops},
        "share_by_node": {node: round(t / total, 4) for node, t in nodes},
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / args.name).write_text(json.dumps(result, indent=1))
    print(f"one {args.tile}² tile: best {min(seconds):.3f} s ({args.repeats} runs)")
    print("| operator | share of kernel time |\n|---|---|")
    for op, t in ops:
        print(f"| {op} | {100 * t / total:.1f} % |")
    print(f"wrote {args.out / args.name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
