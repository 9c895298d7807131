"""The doctor: read a training history (ours or another tool's), a script, or live batches, and
explain what is wrong with numbers. Findings share one shape and one set of ids."""
