"""The package version, recorded in every run folder and exported model."""

__version__ = "0.1.0"
