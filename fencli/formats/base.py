"""The reader interface of the array formats: what each array is, and how to load it only when chosen."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fencli.errors import FencliError


@dataclass
class Entry:
    """One array in a file: shape and dtype as the user sees them, and how to get it."""

    shape: tuple[int, ...]
    dtype: np.dtype
    load: Callable[[], Any]

    @property
    def numeric(self) -> bool:
        return self.dtype.kind in "iuf"

    @property
    def size(self) -> int:
        return int(np.prod(self.shape))

    def describe(self) -> str:
        return f"{' x '.join(map(str, self.shape)) or 'scalar'} {self.dtype.name}"


@dataclass
class ArrayFile:
    """The arrays of a file by name, per-array attributes (HDF5) and the handle to close when done."""

    entries: dict[str, Entry]
    format: str
    attrs: Callable[[str], dict] = lambda name: {}
    close: Callable[[], None] = lambda: None


def unreadable(path: Path, err: BaseException) -> FencliError:
    """A library's exception about a bad file as one :class:`FencliError` line."""
    text = str(err).strip()
    reason = text.splitlines()[0] if text else type(err).__name__
    return FencliError(f"cannot read {path}: {reason} (truncated, corrupt or not that format?)")
