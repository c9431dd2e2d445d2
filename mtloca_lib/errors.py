"""Errors raised on bad input. Each message names the file and says what to do.

May import: the standard library, third-party packages and ``settings`` (a base module: nothing else of the package).
"""


class DataError(ValueError):
    """Input data is missing, malformed or inconsistent.

    Raised before any output is written, so nothing half-finished is left behind.
    """
