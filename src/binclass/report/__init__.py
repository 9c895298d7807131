"""Plots and the self-contained HTML report, drawn only from the run folder's files."""
