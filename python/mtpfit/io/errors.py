"""The exception every reader raises on a malformed file."""
from __future__ import annotations

import os

__all__ = ["FormatError"]


class FormatError(ValueError):
    """A file that does not follow its format.

    The message always starts with the file name, followed by the line number
    (``"path:LINE: message"``) when the error sits on one line, or by the configuration
    index (``"path, configuration K: message"``, K counted from 0) when it concerns a
    whole entry of a JSON list.

    Parameters
    ----------
    path : str or os.PathLike
        The file being read.
    message : str
        What is wrong.
    line : int, optional
        1-based line number of the offending line.
    index : int, optional
        0-based index of the offending configuration.

    Attributes
    ----------
    path : str
    line : int or None
    index : int or None
    reason : str
        ``message`` without the location prefix.
    """

    def __init__(self, path: str | os.PathLike, message: str, *,
                 line: int | None = None, index: int | None = None):
        self.path = os.fspath(path)
        self.line = line
        self.index = index
        self.reason = message
        if line is not None:
            where = f"{self.path}:{line}"
        elif index is not None:
            where = f"{self.path}, configuration {index}"
        else:
            where = self.path
        super().__init__(f"{where}: {message}")
