"""Exceptions that reach users: each names the file and the problem."""

from __future__ import annotations

from pathlib import Path


class L2AError(Exception):
    """Base class of every error l2a raises on purpose."""


class InputError(L2AError, ValueError):
    """A bad input file or product.

    Parameters
    ----------
    path : str or Path
        The file (or product) at fault.
    problem : str
        What is wrong, in plain words, ideally with the fix.
    """

    def __init__(self, path: str | Path, problem: str) -> None:
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")

    def __reduce__(self) -> tuple[type[InputError], tuple[str, str]]:
        # keep the (path, problem) signature across pickling (dask workers send errors back)
        return (type(self), (self.path, self.problem))


class MissingDataError(L2AError, FileNotFoundError):
    """Data needed by a step is absent (DEM coverage, auxiliary tables, sample data)."""
