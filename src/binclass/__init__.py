"""binclass: train a binary image classifier from two folders of pictures, with honest metrics."""

__version__ = "0.1.0"
