"""Data: find the images (scan), decode them once (decode), augment batches on the device (augment)."""
