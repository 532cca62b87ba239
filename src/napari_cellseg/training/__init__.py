"""Training and fine-tuning: folders of pairs, datasets, targets, steps, checkpoints, tuning."""
