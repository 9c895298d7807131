"""The one exception type the CLI turns into a one-line message (exit status 2) instead of a traceback."""


class BinclassError(Exception):
    """A problem with the user's input: the message names the file and the fix."""
