"""PNG/TIFF ground-truth images through Pillow (imported on use): a mask, never a cube."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from fencli.formats.base import unreadable


def read_image(path: Path) -> np.ndarray:
    """Grey or palette values, or for RGB(A) whether any colour channel is nonzero where alpha is not 0."""
    from PIL import Image  # Pillow comes with matplotlib, a dependency

    try:
        with Image.open(path) as img:
            if img.mode in ("P", "PA"):
                img = img.convert("RGBA")
            mode, arr = img.mode, np.asarray(img)
    except Exception as err:
        raise unreadable(path, err) from None
    if arr.ndim == 2:
        return arr
    if mode in ("LA", "RGBA", "La", "RGBa"):
        return arr[..., :-1].any(axis=-1) & (arr[..., -1] != 0)
    return arr.any(axis=-1)
