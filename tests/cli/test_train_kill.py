"""kill -9 a running `cellseg train`, then --resume: it completes and nothing is corrupt."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

from napari_cellseg.io.samples import sample_data_dir
from napari_cellseg.models import load_weights, read_card
from napari_cellseg.training.checkpoints import checkpoint_path_for, load_checkpoint
from tiny_models import TINY_UNET


def test_kill_9_during_training_then_resume(tmp_path) -> None:
    out = tmp_path / "model.safetensors"
    ckpt = checkpoint_path_for(out)
    command = [
        sys.executable, "-m", "napari_cellseg.cli", "train", "--data", str(sample_data_dir()),
        "--model", "unet", "--builder-args", json.dumps(TINY_UNET), "--out", str(out),
        "--epochs", "4", "--batch-size", "2", "--patch-size", "64",
        "--samples-per-epoch", "8", "--device", "cpu", "--val-fraction", "0.34",
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
    )
    seen = []
    try:
        # Kill on what the run prints, not after a sleep: a fast machine would finish first.
        # "epoch 1/4" is printed when the first epoch ends; its checkpoint follows at once.
        for line in process.stdout:
            seen.append(line)
            if line.startswith("epoch 1/4"):
                break
        assert seen and seen[-1].startswith("epoch 1/4"), "".join(seen)
        deadline = time.monotonic() + 60
        while not ckpt.exists() and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        assert ckpt.exists() and process.poll() is None, "".join(seen)
        os.kill(process.pid, signal.SIGKILL)  # in epoch 2 (or writing its checkpoint)
    finally:
        process.kill()
        process.wait(timeout=60)
        process.stdout.close()
    assert process.returncode == -signal.SIGKILL
    killed_at = load_checkpoint(ckpt)["epoch"]  # the last checkpoint is whole and readable
    assert 1 <= killed_at <= 4
    load_weights(out)  # so is the best weight file so far
    assert not list(tmp_path.glob(".*.tmp"))  # nothing half written left behind

    resumed = subprocess.run(
        [sys.executable, "-m", "napari_cellseg.cli", "train", "--resume", str(ckpt)],
        env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "done (epochs) after 4 epochs" in resumed.stdout
    state = load_checkpoint(ckpt)
    assert state["epoch"] == 4
    # the resumed run's history goes on from the killed one: every epoch once, in order
    assert [h["epoch"] for h in state["history"]] == [1, 2, 3, 4]
    # the weight file holds the best epoch's weights; its card, the history up to that epoch
    # (which epoch is best depends on 1e-5 differences in the tiny model's validation Dice)
    best = state["best_epoch"]
    assert 1 <= best <= 4
    card_history = read_card(out).provenance["history"]
    assert card_history == state["history"][:best]
