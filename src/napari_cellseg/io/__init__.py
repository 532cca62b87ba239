"""Reading and writing: images, labels, atomic writes, pixel sizes, samples, overlays."""
