"""From an image and a model to labels: tiling, merging, TTA, blocks, post-processing."""
